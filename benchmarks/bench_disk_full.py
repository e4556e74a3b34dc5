"""A full disk: how soon `mosaic trace` refuses, how close its size estimate is, what the in-memory writer costs.

1. Refusal against a normal trace on the same inputs: a synthetic Market-1501-layout world, a micro
   ViT checkpoint (random weights, visible experts) and the default conditions, traced with
   :func:`mosaic.api.trace` into a folder with room (the baseline) and into a nearly full one (a
   160 KiB tmpfs when the process may mount one, else the same folder with its free space reported
   as 40 KiB). The trunk runs and image decodes of the refused run are counted: both must be 0.
2. The trace size estimate (:mod:`mosaic.tracefile.size`) against the written file: the traced world,
   and Market-1501-sized simulated traces (3,000 queries, 14,250 gallery images, the 12 groups and
   39 experts, 4 expert layers).
3. The trace writer on the largest simulated trace: HDF5 writing the file on disk itself (the writer
   before the full-disk work) against building it in memory and writing its bytes once.

    .venv/bin/python -m benchmarks.bench_disk_full [--ids 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch


def make_checkpoint(world: Path, out: Path) -> Path:
    from mosaic.data import load_dataset
    from mosaic.model import ModelConfig, build_model
    from mosaic.train.checkpoint import save_checkpoint
    from mosaic.train.config import TrainConfig

    dataset = load_dataset(world)
    torch.manual_seed(0)
    model_config = ModelConfig(backbone="vit_micro", expert_blocks=2, learned_router=True)
    n_classes = int(dataset.split("train")["pid"].nunique())
    model = build_model(model_config, dataset.schema, num_classes=n_classes)
    with torch.no_grad():  # fresh LoRA B is zero: make the experts visible
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    config = TrainConfig.from_dict({"data": {"root": str(world)}, "model": model_config.to_dict()})
    return save_checkpoint(out, {
        "model": model.state_dict(), "step": 1, "epoch": 1, "finished": True, "config": config.to_dict(),
        "schema": dataset.schema.to_dict(), "schema_fingerprint": dataset.schema.fingerprint(),
        "num_classes": n_classes, "class_pids": list(range(1, n_classes + 1)),
    })


@contextmanager
def nearly_full_folder(scratch: Path, leave: int = 40 * 2**10):
    """A folder with ``leave`` bytes free: a real tmpfs if this process may mount one, else reported so."""
    import mosaic.core.diskspace as diskspace

    folder = scratch / "full"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(folder)], capture_output=True).returncode == 0
    real_usage = diskspace.shutil.disk_usage
    try:
        if mounted:
            (folder / "filler").write_bytes(b"\0" * (shutil.disk_usage(folder).free - leave))
        else:
            def usage(path):
                found = real_usage(path)
                return found._replace(free=leave) if Path(path).resolve() == folder.resolve() else found
            diskspace.shutil.disk_usage = usage
        yield folder, "tmpfs" if mounted else "reported"
    finally:
        diskspace.shutil.disk_usage = real_usage
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def counted(module, name: str, counts: dict):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return real(*args, **kwargs)

    setattr(module, name, wrapper)
    return real


def refusal_against_trace(ids: int, rounds: int, scratch: Path) -> Path:
    from mosaic import api
    from mosaic.core.errors import MosaicError
    from mosaic.data import images
    from mosaic.synth import WorldConfig, synthesize
    from mosaic.tracing import checkpoint as trace_checkpoint
    from mosaic.tracing import engine as trace

    world = synthesize(scratch / "world", WorldConfig(n_ids=ids, images_per_id=8, seed=7))
    ckpt = make_checkpoint(world, scratch / "run" / "checkpoints" / "last.pt")
    counts: dict[str, int] = {}
    counted(trace, "compute_trunk", counts)
    counted(images, "decode_images", counts)
    real_needs = trace_checkpoint.space_needs
    check_seconds: list[float] = []

    def timed_needs(*args):
        start = time.perf_counter()
        try:
            return real_needs(*args)
        finally:
            check_seconds.append(time.perf_counter() - start)

    trace_checkpoint.space_needs = timed_needs
    best = {"refused": float("inf"), "traced": float("inf")}
    out = scratch / "trace.h5"
    with nearly_full_folder(scratch) as (full, how):
        for _ in range(rounds):
            counts.clear()
            start = time.perf_counter()
            try:
                api.trace(ckpt, full / "trace.h5", device="cpu", progress=False)
                raise AssertionError("the trace was not refused")
            except MosaicError as refused:
                message = str(refused)
            best["refused"] = min(best["refused"], time.perf_counter() - start)
            refused_counts = dict(counts)
            start = time.perf_counter()
            result = api.trace(ckpt, out, device="cpu", progress=False)
            best["traced"] = min(best["traced"], time.perf_counter() - start)
    data = result.data
    print(f"world: {ids} ids; trace {data.n_conditions} conditions x {data.n_queries} queries x {data.n_gallery} gallery; "
          f"full folder: {how}; best of {rounds}, 1 torch thread")
    print(f"  refused:  {best['refused']:6.2f} s   trunk runs {refused_counts.get('compute_trunk', 0)}, "
          f"image decodes {refused_counts.get('decode_images', 0)}")
    print(f"  traced:   {best['traced']:6.2f} s   (the space check itself: {min(check_seconds) * 1e3:.1f} ms)")
    print(f"  refusal at {100 * best['refused'] / best['traced']:.0f}% of a trace's time: {message}")
    return out


def estimate_ratios(traced: Path, scratch: Path) -> list:
    from analysis.simulation.trace import simulate_data
    from mosaic.tracefile import read_trace_data, write_trace
    from mosaic.tracefile.size import estimate_trace_bytes
    from mosaic.tracefile.write import attribute_json

    def estimate(data) -> int:
        routed = sum(1 for kind, on in zip(data.condition_kind, data.enabled_groups) if on.any() and kind != "code")
        return estimate_trace_bytes(data.sizes, query_paths=list(data.query_path), gallery_paths=list(data.gallery_path),
                                    condition_names=list(data.condition_name), routed_conditions=routed,
                                    metadata_bytes=len(attribute_json(data.provenance)) + len(data.schema.to_json()))

    rows = [("traced world (micro ViT)", read_trace_data(traced), traced)]
    market = dict(n_ids=750, queries_per_id=4, gallery_per_id=17, n_layers=4)
    for subsets in (16, 88):
        data = simulate_data(n_subsets=subsets, seed=1, **market)
        path = write_trace(data, scratch / f"market_{subsets}.h5")
        rows.append((f"Market-sized simulated, {data.n_conditions} conditions", data, path))
    print(f"\n{'trace':42s} {'file (MB)':>10s} {'estimate (MB)':>14s} {'ratio':>6s}")
    for name, data, path in rows:
        real = path.stat().st_size
        print(f"{name:42s} {real / 1e6:10.2f} {estimate(data) / 1e6:14.2f} {estimate(data) / real:6.2f}")
    return rows


def writer_cost(data, scratch: Path, rounds: int) -> None:
    import h5py

    from mosaic.core.fileio import atomic_path
    from mosaic.tracefile.write import _write_contents, write_trace

    best = {"direct": float("inf"), "memory": float("inf")}
    for _ in range(rounds):
        start = time.perf_counter()
        with atomic_path(scratch / "direct.h5") as tmp, h5py.File(tmp, "w", track_order=True) as h5:
            _write_contents(h5, data)
        best["direct"] = min(best["direct"], time.perf_counter() - start)
        start = time.perf_counter()
        write_trace(data, scratch / "memory.h5")
        best["memory"] = min(best["memory"], time.perf_counter() - start)
    size = (scratch / "memory.h5").stat().st_size / 1e6
    print(f"\nwriter, {data.n_conditions} conditions ({size:.1f} MB), best of {rounds}:")
    print(f"  HDF5 writing the file (baseline): {best['direct']:.2f} s")
    print(f"  in memory, then one write:       {best['memory']:.2f} s  ({best['memory'] / best['direct']:.2f}x)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        traced = refusal_against_trace(args.ids, args.rounds, scratch)
        rows = estimate_ratios(traced, scratch)
        writer_cost(rows[-1][1], scratch, args.rounds)


if __name__ == "__main__":
    main()
