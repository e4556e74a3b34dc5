"""benchmarks/gpu_check.py runs its real code on the CPU with a micro model (its --smoke mode)."""

from __future__ import annotations

import json

import pytest


def check_result(result: dict, table: str) -> None:
    from benchmarks.gpu_check import TRACE_ROWS
    from mosaic.tracing.settings import TraceSettings

    assert result["mode"] == "smoke" and result["environment"]["device"] == "cpu"
    rows = result["train"]
    # the CPU runs the eager rows (compiling takes minutes there); every one is measured
    assert [(r["adapter"], r["mode"], r["pk"]) for r in rows] == [
        (a, "eager", pk) for a in ("experts", "none") for pk in ("4x2", "8x2")]
    assert all(r["images_per_s"] > 0 and r["step_ms"] > 0 for r in rows)
    assert "skipped" in result["syncs"]["eager"]  # counted by the GPU itself; on the CPU by tests/test_train_step.py
    # one entry per trace row, in order: measured, or skipped saying why
    assert [r["name"] for r in result["trace"]] == [r["name"] for r in TRACE_ROWS]
    known = set(TraceSettings.__dataclass_fields__)
    for spec, row in zip(TRACE_ROWS, result["trace"]):
        runs_here = set(spec["settings"]) <= known
        assert ("seconds" in row) == runs_here, row
        if runs_here:
            assert (row["queries"], row["gallery"]) == (24, 96) and row["seconds"] > 0 and len(row["condition_names"]) >= 1
    assert [r["conditions"] for r in result["trace"]] == [2, 2, 1, 1, 1, 1]  # of 40 -> of the smoke size's 2
    assert "skipped" in result["parity"]  # needs CUDA
    # targets are stated, measured where possible, and judged only on a full CUDA run
    assert set(result["targets"]) == {"train_images_per_s_bf16", "trace_40_conditions_s"}
    assert all(v["met"] is None for v in result["targets"].values())
    assert result["targets"]["train_images_per_s_bf16"]["measured"] == max(r["images_per_s"] for r in rows if r["adapter"] == "experts" and r["pk"] == "4x2")
    assert (result["targets"]["trace_40_conditions_s"]["measured"] is None) == ("skipped" in result["trace"][0])
    assert result["trace"][0]["precision"] == "bf16" and result["trace"][0]["reuse"] is True
    for needle in ("experts  eager", "trace bf16, reuse: 2 conditions", "target train_images_per_s_bf16: 3000", "not judged"):
        assert needle in table


def test_card_names_become_file_names():
    from benchmarks.gpu_check import card_slug

    assert card_slug({"environment": {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3"}}) == "nvidia-h100-80gb-hbm3"
    assert card_slug({"environment": {"device": "cpu"}}) == "cpu"


def test_fp32_rows_sample_every_kind_of_condition():
    from types import SimpleNamespace

    from benchmarks.gpu_check import _sample

    names = ["oracle", "none"] + [f"{k}:{g}" for k in ("drop", "only", "counterfactual") for g in "abc"] + ["subset:0"]
    picked = [c.name for c in _sample([SimpleNamespace(name=n) for n in names], 6)]
    assert picked == ["oracle", "none", "drop:a", "only:a", "counterfactual:a", "subset:0"]
    assert len(_sample([SimpleNamespace(name=n) for n in names], 40)) == len(names)


def test_smoke_mode_runs_every_single_process_check_and_writes_one_json(tmp_path, capsys):
    from benchmarks.gpu_check import main

    out = tmp_path / "gpu_check.json"
    result = main(["--smoke", "--no-ddp", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=float))
    check_result(result, capsys.readouterr().out)
    assert result["ddp"] == result["trace_sharded"] == {"skipped": "--no-ddp"}


@pytest.mark.slow
def test_smoke_mode_with_ddp_over_two_cpu_processes(tmp_path, capsys):
    from benchmarks.gpu_check import main

    result = main(["--smoke", "--out", str(tmp_path / "gpu_check.json")])
    check_result(result, capsys.readouterr().out)
    assert result["ddp"]["backend"] == "gloo" and result["ddp"]["world_size"] == 2
    assert all(r["images_per_s"] > 0 for r in result["ddp"]["per_rank"])
    # the target trace row over two processes: rank 0 gathers every condition, with the one-process result
    sharded, alone = result["trace_sharded"], result["trace"][0]
    assert (sharded["backend"], sharded["world_size"], sharded["conditions"]) == ("gloo", 2, alone["conditions"])
    assert sharded["mAP_mean"] == pytest.approx(alone["mAP_mean"], abs=1e-6)
