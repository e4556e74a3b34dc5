"""benchmarks/gpu_check.py runs its real code on the CPU with a micro model (its --smoke mode)."""

from __future__ import annotations

import json

import pytest


def check_result(result: dict, table: str) -> None:
    assert result["mode"] == "smoke" and result["environment"]["device"] == "cpu"
    rows = result["train"]
    assert {(r["adapter"], r["pk"]) for r in rows} == {(a, pk) for a in ("experts", "none") for pk in ("4x2", "8x2")}
    assert all(r["images_per_s"] > 0 and r["step_ms"] > 0 for r in rows)
    trace = result["trace"]
    assert (trace["conditions"], trace["queries"], trace["gallery"]) == (4, 24, 96) and trace["seconds"] > 0
    assert "skipped" in result["parity"]  # needs CUDA
    # targets are stated, measured where possible, and judged only on a full CUDA run
    assert set(result["targets"]) == {"train_images_per_s_bf16", "trace_40_conditions_s"}
    assert all(v["met"] is None and v["measured"] is not None for v in result["targets"].values())
    for needle in ("experts", "trace: 4 conditions", "target train_images_per_s_bf16: 3000", "not judged"):
        assert needle in table


def test_smoke_mode_runs_every_single_process_check_and_writes_one_json(tmp_path, capsys):
    from benchmarks.gpu_check import main

    out = tmp_path / "gpu_check.json"
    result = main(["--smoke", "--no-ddp", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=float))
    check_result(result, capsys.readouterr().out)
    assert result["ddp"] == {"skipped": "--no-ddp"}


@pytest.mark.slow
def test_smoke_mode_with_ddp_over_two_cpu_processes(tmp_path, capsys):
    from benchmarks.gpu_check import main

    result = main(["--smoke", "--out", str(tmp_path / "gpu_check.json")])
    check_result(result, capsys.readouterr().out)
    assert result["ddp"]["backend"] == "gloo" and result["ddp"]["world_size"] == 2
    assert all(r["images_per_s"] > 0 for r in result["ddp"]["per_rank"])
