"""Market-sized report: size of each format and wall time of `mosaic report` from a cold start.

A simulated trace with Market-1501's query set (3,368 queries, 750 identities), the 12 Market
attribute groups and 62 conditions (oracle, none, 12 x drop / only / counterfactual, 24 subsets)
is written once. Then ``mosaic report TRACE --no-images`` runs for html, md and json, each in a
fresh interpreter (cold imports, as a user runs it). The baseline is the analysis inside the
same run: the command reports each stage's seconds on stderr, and reading the trace plus
``analysis.analyze`` is what any report needs; the rest (interpreter start, building, rendering,
writing) is the report's own cost. Targets: HTML <= 3 MB without thumbnails, ``mosaic report``
<= 60 s on 2 cores with every resampling on (the defaults); the planted effects vary by identity
(``effect_sd``), as identity-valid inference assumes. Seconds per stage of the HTML run are listed.

    .venv/bin/python -m benchmarks.bench_report [--bootstrap 1000] [--permutations 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_IDS, N_QUERIES, N_SUBSETS = 750, 3368, 24
SIZE_LIMIT_MB, TIME_LIMIT_S = 3.0, 60.0
EFFECT_SD = 0.5


def market_sized_trace(path: Path, seed: int = 0) -> Path:
    from analysis import simulate

    effects = {"downcolour": 1.2, "upcolour": 0.9, "gender": 0.7, "age": 0.5, "hair": 0.4, "down": 0.3,
               "clothes": 0.2, "backpack": 0.15, "up": 0.1, "bag": 0.1, "hat": 0.05, "handbag": 0.02}
    simulate(path, n_ids=N_IDS, n_queries=N_QUERIES, groups="market1501", effects=effects, n_subsets=N_SUBSETS,
             effect_sd=EFFECT_SD, drop_cost=0.2, n_layers=4, seed=seed)
    return path


def _timed(args: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(args)}\n{done.stderr}")
    return elapsed, done


STAGE = re.compile(r"^  (.+?) \.\.\. ([0-9.]+) s$", re.M)


def stage_seconds(stderr: str) -> dict[str, float]:
    """Seconds per stage from the progress lines of `mosaic report` (``  name ... 1.2 s``)."""
    return {name: float(seconds) for name, seconds in STAGE.findall(stderr)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--permutations", type=int, default=2000)
    args = parser.parse_args(argv)

    # Modest threading: the machine is shared; the analysis itself is seeded and single-threaded.
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    settings = ["--bootstrap", str(args.bootstrap), "--permutations", str(args.permutations)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        trace = market_sized_trace(tmp / "trace.h5")
        print(f"simulated trace: {trace.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
        from analysis import read_trace

        print("trace sizes:", read_trace(trace).sizes)

        rows = []
        for fmt in ("html", "md", "json"):
            out = tmp / f"report.{fmt}"
            cmd = [sys.executable, "-m", "mosaic", "report", str(trace), "--format", fmt, "--out", str(out),
                   "--no-images", *settings]
            wall, done = _timed(cmd, env)
            stages = stage_seconds(done.stderr)
            analysis_s = sum(v for k, v in stages.items() if k == "reading trace" or k.startswith("analysis:"))
            rows.append((fmt, out.stat().st_size / 1e6, wall, analysis_s))
            if fmt == "html":
                html_stages = stages

    print()
    print("| output | size (MB) | `mosaic report` wall (s) | of which analysis (s) | report's own (s) | analysis share |")
    print("|---|---:|---:|---:|---:|---:|")
    for fmt, size, wall, analysis_s in rows:
        print(f"| {fmt} | {size:.2f} | {wall:.1f} | {analysis_s:.1f} | {wall - analysis_s:.1f} | {analysis_s / wall:.0%} |")
    print("\nseconds per stage of the html run (`mosaic report` progress lines):\n")
    print("| stage | seconds |\n|---|---:|")
    for name, seconds in html_stages.items():
        print(f"| {name} | {seconds:.2f} |")
    html_size = rows[0][1]
    print()
    print(f"HTML size {html_size:.2f} MB (limit {SIZE_LIMIT_MB} MB): {'ok' if html_size <= SIZE_LIMIT_MB else 'OVER'}")
    worst = max(r[2] for r in rows)
    print(f"slowest `mosaic report` {worst:.1f} s (limit {TIME_LIMIT_S:.0f} s): {'ok' if worst <= TIME_LIMIT_S else 'OVER'}")


if __name__ == "__main__":
    main()
