"""A bf16 trace of a briefly trained checkpoint against its fp32 trace (benchmarks/trace_precision.py
on the CPU): the per-query and per-group differences stay within bounds, and routing is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from mosaic.app.cli import main


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    run = tmp_path_factory.mktemp("precision") / "run"
    settings = {"data.root": tiny_world, "sampler.p": 4, "sampler.k": 2, "optim.steps": 40, "optim.warmup_steps": 4,
                "run.device": "cpu", "run.threads": 1, "eval.every": 0, "eval.val_ids": 0, "eval.routers": "[oracle]"}
    args = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    assert main(["train", "--config", "synthetic_micro", "--out", str(run), "--no-progress", *args]) == 0
    return run


def test_bf16_trace_of_a_trained_checkpoint_is_close_to_fp32(trained):
    import torch

    from benchmarks.trace_precision import compare_traces, format_table, trace_at

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        conditions = "oracle,none,drop:*,counterfactual:*,fixed:*,learned"
        fp32, _ = trace_at(trained, "fp32", "cpu", conditions, None)
        bf16, _ = trace_at(trained, "bf16", "cpu", conditions, None)
    finally:
        torch.set_num_threads(before)
    comparison = compare_traces(fp32, bf16, n_resamples=200)
    print(format_table(comparison, "bf16"))
    assert fp32.provenance["precision"] == "fp32" and bf16.provenance["precision"] == "bf16"
    # routing is a float32 decision: identical gates and filled routes under bf16
    np.testing.assert_array_equal(bf16.gates, fp32.gates)
    np.testing.assert_array_equal(bf16.filled_routes, fp32.filled_routes)
    assert comparison["groups"] and all(np.isfinite(g["se"]) for g in comparison["groups"])
    # bounds from the measurement in docs/validation.md, with room for the platform's bf16 kernels
    assert comparison["max_abs_delta_mAP"] < 0.02
    assert comparison["abs_delta_ap"]["p50"] < 0.01
    assert comparison["first_match_same"] > 0.9
    assert max(abs(g["shift"]) for g in comparison["groups"]) < 0.03
    # the comparison is not vacuous: bf16 does change the features
    assert comparison["abs_delta_ap"]["max"] > 0 or not np.array_equal(bf16.topk_distance, fp32.topk_distance)
