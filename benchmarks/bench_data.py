"""Loading a Market-1501-sized folder tree with its attributes: ``load_dataset`` against the classic loop.

The tree has Market-1501's file counts (12,936 train, 3,368 query, 19,732 gallery files of which
3,819 junk and 2,798 distractors) as empty ``.jpg`` files named after the real identities of
``market_attribute.mat``; nothing reads pixels, so only listing, parsing and the attribute join
are measured. The baseline, measured in the same run, is what the public toolkits do: ``glob`` +
one regular-expression search per file, then a per-image dictionary lookup of the identity's
attributes (the attribute file is read by the same reader in both, so the ratio isolates the
image table).

    .venv/bin/python -m benchmarks.bench_data [--repeats 5] [--attributes market_attribute.mat]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from mosaic.data import DataReport, load_dataset, read_attribute_file

TRAIN, QUERY, GALLERY, JUNK, DISTRACTORS = 12936, 3368, 19732, 3819, 2798
DEFAULT_ATTRIBUTES = Path(__file__).resolve().parents[2] / "shared" / "data" / "market_attribute" / "market_attribute.mat"


def build_market_sized_tree(root: Path, attributes: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    table = read_attribute_file(attributes)
    train_ids, test_ids = table.states["train"].index.to_numpy(), table.states["test"].index.to_numpy()

    def write(folder: str, pids: np.ndarray) -> None:
        directory = root / folder
        directory.mkdir(parents=True)
        cams = rng.integers(1, 7, pids.size)
        for i, (pid, cam) in enumerate(zip(pids, cams)):
            pid_text = "-1" if pid < 0 else f"{pid:04d}"
            (directory / f"{pid_text}_c{cam}s{1 + i % 6}_{i:06d}_{i % 7:02d}.jpg").touch()

    write("bounding_box_train", rng.choice(train_ids, TRAIN))
    write("query", rng.choice(test_ids, QUERY))
    identity_images = GALLERY - JUNK - DISTRACTORS
    write("bounding_box_test", np.concatenate([rng.choice(test_ids, identity_images), np.zeros(DISTRACTORS, int), -np.ones(JUNK, int)]))
    return root


def classic_loop(root: Path, attributes: Path) -> list[tuple]:
    """glob + per-file regex + per-image attribute lookup, as in the public toolkits."""
    table = read_attribute_file(attributes)
    by_struct = {s: {pid: row for pid, row in zip(t.index, t.to_numpy().tolist())} for s, t in table.states.items()}
    pattern = re.compile(r"([-\d]+)_c(\d)")
    rows = []
    for folder, split in (("bounding_box_train", "train"), ("query", "query"), ("bounding_box_test", "gallery")):
        lookup = by_struct[table.struct_for(split)]
        for path in sorted(glob.glob(os.path.join(root, folder, "*.jpg"))):
            pid, camid = map(int, pattern.search(path).groups())
            if pid == -1:
                continue
            states = lookup.get(pid, [-1] * len(table.schema.groups)) if pid != 0 else [-1] * len(table.schema.groups)
            rows.append((path, pid, camid, split, *states))
    return rows


def _best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--attributes", type=Path, default=DEFAULT_ATTRIBUTES)
    args = parser.parse_args()
    if not args.attributes.is_file():
        raise SystemExit(f"market_attribute.mat not found at {args.attributes}: pass --attributes")

    with tempfile.TemporaryDirectory() as tmp:
        root = build_market_sized_tree(Path(tmp) / "market", args.attributes)
        t_base, rows = _best_of(lambda: classic_loop(root, args.attributes), args.repeats)
        t_ours, ds = _best_of(lambda: load_dataset(root, attributes=args.attributes), args.repeats)
        t_check, _ = _best_of(lambda: DataReport.from_dataset(ds), args.repeats)

    # same images, same states: the comparison is between equal results
    ours = ds.images
    assert len(rows) == len(ours) == TRAIN + QUERY + GALLERY - JUNK
    base_states = np.array(sorted((r[0], *r[4:]) for r in rows), dtype=object)[:, 1:].astype(np.int16)
    ours_sorted = ours.sort_values("path")
    assert np.array_equal(base_states, ours_sorted[list(ds.schema.group_names)].to_numpy())

    n = len(ours)
    print(f"Market-1501-sized tree: {n:,} images after junk, {ds.num_ids('train')} train ids, best of {args.repeats}")
    print(f"{'step':<42}{'seconds':>9}{'images/s':>12}{'vs baseline':>13}")
    print(f"{'baseline: glob + regex + dict lookup':<42}{t_base:>9.3f}{n / t_base:>12,.0f}{1.0:>12.2f}x")
    print(f"{'load_dataset (scan, parse, join, checks)':<42}{t_ours:>9.3f}{n / t_ours:>12,.0f}{t_base / t_ours:>12.2f}x")
    print(f"{'DataReport.from_dataset (data check)':<42}{t_check:>9.3f}{n / t_check:>12,.0f}{'':>13}")


if __name__ == "__main__":
    main()
