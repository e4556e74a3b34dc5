"""``mosaic demo``: the whole mission on a synthetic world, one run (:mod:`.demo_stages`) or a
study of several seeds and worlds (:mod:`.demo_study`), behind :func:`mosaic.api.demo`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from mosaic.core.errors import MosaicError

__all__ = ["DemoResult", "demo"]

_PathLike = str | os.PathLike


@dataclass(repr=False)
class DemoResult:
    """The demo's outputs: its folder, the stages that ran (the others were reused) and the analysis.

    A one-run demo fills ``report_html`` / ``report_json`` and ``results`` (:class:`analysis.Results`);
    a study demo (several seeds or worlds) fills ``study_html`` / ``study_json`` and ``results``
    (the study's results).
    """

    out: Path
    stages_run: list[str]
    minutes: float
    results: Any
    report_html: Optional[Path] = None
    report_json: Optional[Path] = None
    study_html: Optional[Path] = None
    study_json: Optional[Path] = None

    def _display(self):
        """In a notebook: the files, the stages that ran, then the analysis' own display where it has one."""
        from mosaic.app.reporting import file_display

        files = [p for p in (self.report_html, self.report_json, self.study_html, self.study_json) if p is not None]
        display = file_display("DemoResult", files)
        display.fields({"folder": self.out, "minutes": round(self.minutes, 1),
                        "stages run": ", ".join(self.stages_run) or "none (every stage up to date)"}, "run")
        if hasattr(self.results, "_display"):
            display.blocks += self.results._display().blocks
        return display

    def _repr_html_(self) -> str:
        return self._display().to_html()

    def __repr__(self) -> str:
        return self._display().to_text()


def demo(
    out: _PathLike = "runs/demo",
    *,
    seed: int = 0,
    config: Optional[_PathLike] = None,
    layout: Optional[str] = None,
    ids: Optional[int] = None,
    images_per_id: Optional[int] = None,
    world_config=None,
    fresh: bool = False,
    progress: bool = True,
    seeds: int = 1,
    worlds: int = 1,
    announce: Callable[[str], None] | None = None,
) -> DemoResult:
    """The whole mission on a synthetic world: world -> training run -> trace -> HTML and JSON report.

    Stages whose settings, inputs and outputs are unchanged are reused (``fresh=True`` redoes all).
    ``world_config`` (a :class:`mosaic.synth.WorldConfig`) replaces the layout's default world;
    ``ids`` / ``images_per_id`` resize it. ``announce`` receives one line per stage. With
    ``seeds > 1`` or ``worlds == 2`` the demo is a study (:mod:`mosaic.app.demo_study`): every seed
    trains and traces on every world, and ``OUT/study.html`` / ``OUT/study.json`` compare them.
    """
    import json

    from analysis import Results
    from mosaic.configs import config_path
    from mosaic.app.demo_stages import build_stages, check_config_reads_layout
    from mosaic.app.demo_study import MAX_WORLDS, build_study_stages
    from mosaic.core.fileio import ensure_writable_dir
    from mosaic.app.pipeline import Ledger, run_stages
    from mosaic.synth import WorldConfig
    from mosaic.synth.layouts import DEFAULT_LAYOUT, get_layout

    if seeds < 1 or not 1 <= worlds <= MAX_WORLDS:
        raise MosaicError(f"--seeds must be at least 1 and --worlds 1 or {MAX_WORLDS}, got --seeds {seeds} --worlds {worlds}")
    world_layout = get_layout(layout or (world_config.layout if world_config is not None else DEFAULT_LAYOUT))
    config = config_path(config if config is not None else world_layout.demo_config)
    check_config_reads_layout(config, world_layout)
    out = ensure_writable_dir(Path(out), create=True)
    if world_config is None:
        size = {k: v for k, v in (("n_ids", ids), ("images_per_id", images_per_id)) if v is not None}
        world_config = WorldConfig(seed=seed, layout=world_layout.name, **size)
    say = announce or (lambda line: None)
    is_study = seeds > 1 or worlds > 1
    if is_study:
        stages = build_study_stages(out, config=config, seed=seed, n_seeds=seeds, n_worlds=worlds, progress=progress,
                                    world_config=world_config, announce=say)
    else:
        stages = build_stages(out, config=config, seed=seed, progress=progress, world_config=world_config, announce=say)
    started = time.perf_counter()
    ran = run_stages(stages, Ledger(out), fresh=fresh, announce=say)
    minutes = (time.perf_counter() - started) / 60
    if is_study:
        study_json = out / "study.json"
        results = json.loads(study_json.read_text(encoding="utf-8"))["analysis"]
        return DemoResult(out=out, stages_run=ran, minutes=minutes, results=results, study_html=out / "study.html",
                          study_json=study_json)
    report_json = out / "report.json"
    results = Results.from_dict(json.loads(report_json.read_text(encoding="utf-8"))["analysis"])
    return DemoResult(out=out, stages_run=ran, minutes=minutes, results=results, report_html=out / "report.html",
                      report_json=report_json)
