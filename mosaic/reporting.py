"""Analysing a trace and writing its report: the work behind ``mosaic report`` and :func:`mosaic.api.report`.

Torch-free on purpose: this module imports only ``analysis`` and ``reports`` (lazily), so reports
run on a laptop without the training stack.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Optional

__all__ = ["StageProgress", "analyse_trace", "canonical_command", "render_report", "resolve_output", "write_study"]


class StageProgress:
    """One line per slow stage on stderr, with its duration, so long runs show where they are."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._name: str | None = None
        self._start = 0.0

    def __call__(self, name: str) -> None:
        self.finish()
        self._name, self._start = name, time.perf_counter()
        if self.enabled:
            print(f"  {name} ...", end="", file=sys.stderr, flush=True)

    def finish(self, failed: bool = False) -> None:
        if self._name is not None and self.enabled:
            print(" failed" if failed else f" {time.perf_counter() - self._start:.1f} s", file=sys.stderr, flush=True)
        self._name = None


def resolve_output(trace: Path, out: Optional[Path], format: Optional[str]):
    """(format, output path) from the options; raises MosaicError for an unknown format or a missing folder."""
    from mosaic.fileio import ensure_writable_dir
    from reports import FORMATS, get_format

    if format is not None:
        fmt = get_format(format)
    else:
        by_suffix = {f.suffix: f for f in FORMATS.values()}
        fmt = by_suffix.get(out.suffix.lower(), FORMATS["html"]) if out is not None and not out.is_dir() else FORMATS["html"]
    if out is None:
        path = trace.parent / f"report{fmt.suffix}"
    elif out.is_dir():
        path = out / f"report{fmt.suffix}"
    else:
        path = out
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return fmt, path


def canonical_command(trace: Path, fmt: str, out: Path, images: bool, alpha: float, bootstrap: int,
                      permutations: int, seed: int, ci_level: float = 0.95) -> str:
    """The command as it would reproduce this report (recorded in the provenance)."""
    args = ["mosaic", "report", str(trace), "--format", fmt, "--out", str(out), "--alpha", repr(alpha),
            "--ci-level", repr(ci_level), "--bootstrap", str(bootstrap), "--permutations", str(permutations),
            "--seed", str(seed)]
    if not images:
        args.append("--no-images")
    return shlex.join(args)


def analyse_trace(trace: Path, progress: Callable[[str], None], *, images: bool = True, command: str = "", **settings):
    """Read a trace, analyse it and build the report document (rendered by any format).

    ``settings`` go to :func:`analysis.analyze` (alpha, ci_level, n_bootstrap, n_permutations, seed).
    Returns ``(results, document)``.
    """
    progress("reading trace")
    import analysis
    from reports import ReportOptions, build_report

    data = analysis.read_trace(trace)
    results = analysis.analyze(data, progress=lambda stage: progress(f"analysis: {stage}"), **settings)
    progress("building report" + (" with thumbnails" if images else ""))
    return results, build_report(results, data, ReportOptions(images=images, command=command))


def render_report(document, fmt, path: Path, progress: Callable[[str], None]) -> None:
    """Render ``document`` in ``fmt`` and write it to ``path`` atomically."""
    from mosaic.diskspace import OUT_FIX
    from mosaic.fileio import write_text_atomic

    progress(f"rendering {fmt.name}")
    text = fmt.render(document)
    progress(f"writing {path.name}")
    write_text_atomic(path, text, fix=OUT_FIX)


def write_study(traces: list, outputs, *, fmt_name: Optional[str] = None, labels=None, command: str = "",
                **settings):
    """Run :func:`analysis.study` on ``traces`` once and write the report to each of ``outputs`` atomically.

    Each output's format is ``fmt_name``, else its suffix (html, md, json), else html. Returns
    ``(results, paths)``.
    """
    import analysis
    from mosaic.diskspace import OUT_FIX
    from mosaic.fileio import write_text_atomic
    from reports import FORMATS, get_format
    from reports.study import build_study_report

    outputs = [Path(outputs)] if isinstance(outputs, (str, Path)) else [Path(o) for o in outputs]
    by_suffix = {f.suffix: f for f in FORMATS.values()}
    formats = [get_format(fmt_name) if fmt_name else by_suffix.get(o.suffix.lower(), FORMATS["html"]) for o in outputs]
    results = analysis.study(traces, labels=labels, **settings)
    document = build_study_report(results, command=command)
    for out, fmt in zip(outputs, formats):
        write_text_atomic(out, fmt.render(document), fix=OUT_FIX)
    return results, outputs

