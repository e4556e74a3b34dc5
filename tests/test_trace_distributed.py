"""`torchrun --nproc_per_node 2 -m mosaic trace`: two CPU processes (Gloo) share the conditions out,
rank 0 alone writes, and the trace equals the one-process trace bitwise."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from mosaic.app.cli import main
from test_trace_cli import one_torch_thread, toy_run

CONDITIONS = "oracle,none,drop:*,only:*,counterfactual:*,learned"
PER_QUERY = ("ap", "inp", "rank1", "first_match_rank", "topk_index", "topk_distance", "gates", "mAP", "mINP", "cmc",
             "filled_routes", "valid")


def test_two_gloo_processes_write_the_one_process_trace(tmp_path):
    from mosaic.tracefile import read_trace_data

    with one_torch_thread():
        _, ckpt = toy_run(tmp_path, seed=1, learned=True)
        single = tmp_path / "single.h5"
        options = ["--ckpt", str(ckpt), "--conditions", CONDITIONS, "--top-k", "3", "--max-rank", "5", "--device", "cpu",
                   "--batch-size", "4", "-q"]
        assert main(["trace", "--out", str(single), *options]) == 0
    sharded = tmp_path / "sharded.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mosaic", "trace",
         "--out", str(sharded), *options],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_trace_data(single), read_trace_data(sharded)
    assert list(two.condition_name) == list(one.condition_name)
    for name in PER_QUERY:
        np.testing.assert_array_equal(getattr(two, name), getattr(one, name), err_msg=name)
    assert one.provenance["world_size"] == 1 and two.provenance["world_size"] == 2
    assert two.provenance["missing_routes"] == one.provenance["missing_routes"]
    ranks = two.provenance["condition_rank"]
    assert set(ranks.values()) == {0, 1}  # both processes traced conditions
    assert all(ranks[f"counterfactual:{g}"] == ranks["oracle"] for g in ("gender", "upcolour", "hat"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".h5") == ["sharded.h5", "single.h5"]  # one writer
