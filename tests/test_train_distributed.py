"""Two CPU processes (Gloo) through torchrun and the real command line: DDP keeps the ranks'
weights identical, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

from mosaic.train.checkpoint import read_checkpoint

CONFIG = "synthetic_micro"  # a shipped config

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    from mosaic.train import loop
    from mosaic.train.checkpoint import unwrap_model

    out = Path(sys.argv[1])
    fit = loop.Trainer.fit

    def fit_and_dump(self, *args, **kwargs):
        result = fit(self, *args, **kwargs)
        torch.save(unwrap_model(self.model).state_dict(), out / f"weights-rank{self.dist.rank}.pt")
        return result

    loop.Trainer.fit = fit_and_dump
    from mosaic.app.cli import main

    sys.exit(main(sys.argv[2:]))
    """
)


def test_two_gloo_processes_train_in_lockstep(tiny_world, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    run = tmp_path / "run"
    settings = {
        "data.root": tiny_world,
        "sampler.p": 3,  # per process: 2 x 3 = 6 of the 12 identities per step
        "sampler.k": 2,
        "optim.steps": 4,
        "optim.warmup_steps": 1,
        "run.device": "cpu",
        "run.threads": 1,
        "run.log_every": 2,
        "eval.routers": "[oracle]",
        "eval.every": 0,  # every training identity is needed for 2 x 3 distinct ones per step
        "eval.val_ids": 0,
    }
    args = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker), str(tmp_path),
         "train", "--config", str(CONFIG), "--out", str(run), "--no-progress", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    w0 = torch.load(tmp_path / "weights-rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "weights-rank1.pt", weights_only=True)
    tensors = [k for k in w0 if isinstance(w0[k], torch.Tensor)]
    # BatchNorm running statistics are per process in DDP (each rank's last forward updates
    # them from its own batch; rank 0's are saved); every learned parameter must agree exactly.
    params = [k for k in tensors if "running_" not in k and "num_batches_tracked" not in k]
    assert len(params) > 10 and all(torch.equal(w0[k], w1[k]) for k in params)

    ckpt = read_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 4 and ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert all(torch.equal(ckpt["model"][k], w0[k]) for k in tensors)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert steps == [2, 4]  # one writer: no line twice
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "images", "metrics.jsonl"]
