"""``analysis.analyze``: every applicable method on one trace, rolled up into a ranking.

Methods are registered in :data:`METHODS` (name -> function ``(trace, settings) -> {table: frame}``);
each runs in isolation, so a method that cannot run on a trace (no ``subset`` conditions, a
singular design, ...) becomes a row of ``Results.warnings`` instead of stopping the others. The
rankings are computed last, from whatever tables the methods produced.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from analysis.results import WARNING_COLUMNS, Results, empty_warnings
from analysis.settings import AnalysisSettings, MethodNotApplicable
from analysis.stats.status import OK, UNAVAILABLE
from analysis.tables.registry import in_table_units, validate_table
from mosaic.conditions import EMBEDDING_KIND
from mosaic.core.errors import MosaicError

__all__ = ["analyze", "METHODS", "Method", "NO_EXPERTS", "as_trace", "expert_free_baseline", "has_experts",
           "register_method"]


@dataclass(frozen=True)
class Method:
    """One analysis method: the tables it produces and how to compute them."""

    name: str
    run: Callable[[Any, AnalysisSettings], dict[str, pd.DataFrame]]
    tables: tuple[str, ...]
    description: str
    # the method compares routing conditions of mosaic's experts (drop, subset, fixed, ...): a trace
    # without expert-carrying layers (exported features, mosaic trace --features) cannot feed it
    needs_experts: bool = False


def _paired(trace, settings):
    from analysis.methods.paired import paired_tables

    return paired_tables(trace, settings)


def _configuration(trace, settings):
    from analysis.methods.configuration.level import configuration_level

    return configuration_level(trace, settings)


def _explanatory(trace, settings):
    from analysis.methods.query.explanatory import query_level_explanatory

    return query_level_explanatory(trace, settings)


def _decomposition(trace, settings):
    from analysis.methods.decomposition import decomposition_tables

    return decomposition_tables(trace, settings)


def _confusion(trace, settings):
    from analysis.methods.audit.embedding import attribute_confusion

    return {"attribute_confusion": attribute_confusion(trace, settings)}


def _sharing(trace, settings):
    from analysis.methods.audit.embedding import distance_sharing

    return {"distance_sharing": distance_sharing(trace, settings)}


def _comparison(trace, settings):
    from analysis.methods.audit.comparison import model_comparison

    return {"model_comparison": model_comparison(trace, settings)}


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("paired", _paired, ("paired_mcnemar", "paired_wilcoxon", "paired_identity"),
               "paired query-level tests of oracle against drop / counterfactual conditions", needs_experts=True),
        Method("configuration", _configuration,
               ("config_glm_binomial", "config_glm_gaussian", "config_surrogate", "config_ttest"),
               "configuration-level GLMs, surrogates and t-tests (the paper's analysis)", needs_experts=True),
        Method("explanatory", _explanatory, ("query_glm", "query_surrogate", "query_surrogate_fit"),
               "query-level binomial GLM and XGBoost surrogate of the AP change"),
        Method("decomposition", _decomposition, ("decomposition", "decomposition_code"),
               "per group: information, capacity, misrouting and semantics from fixed / drop / counterfactual / "
               "relabel against oracle; per trace: the share of the oracle's gain the attribute code reaches",
               needs_experts=True),
        # the embedding audit needs no experts: it runs on a checkpoint's baseline and on exported features
        Method("attribute_confusion", _confusion, ("attribute_confusion",),
               "per group, how often the negatives ranked above a query's first true match share its "
               "state, against chance"),
        Method("distance_sharing", _sharing, ("distance_sharing",),
               "per group, the fall in different-identity embedding distance when the state is shared"),
        Method("model_comparison", _comparison, ("model_comparison",),
               "paired identity-valid tests of the models a trace of exported features holds"),
    )
}

def register_method(method: Method, *specs, replace: bool = False) -> Method:
    """Offer ``method`` to :func:`analyze`, with the :class:`analysis.tables.registry.TableSpec` of each table
    it produces (one spec per name in ``method.tables``), from user code: reports show its tables
    as the specs describe them."""
    from analysis.tables.registry import register_table

    named = {spec.name for spec in specs}
    if named != set(method.tables):
        raise ValueError(f"method {method.name!r} produces tables {sorted(method.tables)} but specs were given "
                         f"for {sorted(named)}: pass one TableSpec per table")
    if method.name in METHODS and not replace and METHODS[method.name] != method:
        raise ValueError(f"an analysis method called {method.name!r} is already registered")
    for spec in specs:
        register_table(spec, replace=replace)
    METHODS[method.name] = method
    return method


# Views of the trace copied into the results so that a report needs nothing else.
VIEWS: dict[str, Callable[[Any], pd.DataFrame]] = {
    "conditions": lambda trace: trace.conditions,
    "cmc": lambda trace: trace.cmc_table(),
    "gates": lambda trace: trace.gates_mean(),
}


NO_EXPERTS = ("it compares routings of a mosaic model's experts, and this trace holds an external model's exported "
              "features (no experts)")


def has_experts(trace) -> bool:
    """Whether the trace comes from a model with experts (it has expert-carrying layers)."""
    return int(trace.sizes.get("layer", 0)) > 0


def expert_free_baseline(trace, baseline: str) -> str:
    """The baseline of a trace of exported features: its first ``embedding`` condition when the default
    ``oracle`` was asked for and the trace has none (any other choice is kept as given)."""
    if baseline != "oracle" or "oracle" in trace.condition_names():
        return baseline
    embedded = trace.condition_names(EMBEDDING_KIND)
    return embedded[0] if embedded else baseline


def as_trace(trace):
    """A :class:`analysis.trace.Trace` from a Trace, a path, or a :class:`mosaic.tracefile.TraceData`."""
    from analysis.trace import Trace, read_trace
    from mosaic.tracefile import TraceData

    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, TraceData):
        return Trace(trace)
    if isinstance(trace, (str, os.PathLike)):
        return read_trace(trace)
    raise MosaicError(f"analyze() needs a trace path or an analysis.Trace, got {type(trace).__name__}")


def _resolve_methods(methods: Iterable[str] | None) -> tuple[str, ...]:
    if methods is None:
        return tuple(METHODS)
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise MosaicError(f"unknown analysis method(s) {unknown}: choose from {list(METHODS)}")
    return tuple(m for m in METHODS if m in methods)


def _status_warnings(name: str, table: pd.DataFrame) -> list[dict[str, str]]:
    """One warning per test row that is not ok."""
    if "status" not in table.columns:
        return []
    # "unavailable" rows (a quantity whose conditions the trace lacks) are listed once per quantity
    # by the report, not once per group and metric here
    bad = table[~table["status"].astype(str).isin((OK, UNAVAILABLE))]
    rows = []
    for _, row in bad.iterrows():
        rows.append({
            "method": name,
            "group": str(row.get("group", "") or ""),
            "comparison": str(row.get("comparison", row.get("model", "")) or ""),
            "reason": f"{row['status']}: {row.get('reason', '')}",
        })
    return rows


def _trace_info(trace) -> dict[str, Any]:
    return {
        "path": str(trace.path) if trace.path is not None else None,
        "sha256": trace.sha256,
        "schema_version": trace.schema_version,
        "provenance": trace.provenance,
        "dataset": trace.dataset,
        "sizes": trace.sizes,
        "attribute_schema": trace.schema.name,
        "groups": list(trace.group_names),
        "families": {f: list(g) for f, g in trace.schema.families.items()},
    }


def analyze(
    trace,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    n_permutations: int = 2000,
    seed: int = 0,
    methods: Iterable[str] | str | None = None,
    ci_level: float = 0.95,
    baseline: str = "oracle",
    comparisons: Iterable[str] = ("drop", "counterfactual"),
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Results:
    """Run every applicable analysis method on ``trace`` and rank the attribute groups.

    Parameters
    ----------
    trace : an :class:`analysis.Trace`, or the path of an HDF5 trace.
    alpha : significance level of the ``reject_*`` columns.
    n_bootstrap, n_permutations : identity-cluster bootstrap resamples and sign-flip permutations.
    seed : the one seed of every resampling and model fit; the same seed gives identical results
        (``to_json()`` equal byte for byte).
    methods : which of :data:`METHODS` to run (``"paired"``, ``"configuration"``,
        ``"explanatory"``, ``"decomposition"``); ``None`` runs all. The ranking always runs on what they produce.
    ci_level : coverage of bootstrap intervals.
    baseline, comparisons : the condition every ``drop`` / ``counterfactual`` condition is paired with.
    options : method-specific knobs, ``{method: {option: value}}``.
    progress : called with each stage's name before it runs (e.g. to drive a progress bar).

    Returns
    -------
    Results
        Tables (see :mod:`analysis.results` for every name and column), the settings, the warnings
        (one row per untested/unestimable test and per method that could not run), the trace's
        provenance, and ``timings`` (seconds per stage, not serialised).
    """
    # settings are checked before the trace is read, so a wrong option is named before any I/O
    settings = AnalysisSettings(
        alpha=alpha, n_bootstrap=n_bootstrap, n_permutations=n_permutations, seed=seed,
        ci_level=ci_level, baseline=baseline, comparisons=tuple(comparisons),
        methods=_resolve_methods(methods), options=dict(options or {}),
    )
    trace = as_trace(trace)
    settings = replace(settings, baseline=expert_free_baseline(trace, settings.baseline))
    tables: dict[str, pd.DataFrame] = {}
    warnings: list[dict[str, str]] = []
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        if progress is not None:
            progress(name)
        start = time.perf_counter()
        try:
            return fn()
        except MethodNotApplicable as exc:
            warnings.append({"method": name, "group": "", "comparison": "", "reason": f"not run: {exc}"})
        except MosaicError:
            raise
        except ModuleNotFoundError as exc:
            # every package the methods import is a declared dependency: a broken install, not a trace problem
            raise MosaicError(
                f"the {name} analysis needs the package {(exc.name or str(exc)).split('.')[0]!r}, which is not installed: "
                f"reinstall mosaic with its dependencies (pip install -e .)"
            ) from None
        except Exception as exc:  # a degenerate trace must not take the other methods down
            warnings.append({"method": name, "group": "", "comparison": "",
                             "reason": f"failed: {type(exc).__name__}: {exc}"})
        finally:
            timings[name] = time.perf_counter() - start
        return None

    for name, view in VIEWS.items():
        frame = stage(f"view:{name}", lambda view=view: view(trace))
        if frame is not None:
            tables[name] = validate_table(name, frame, method="view")

    for name in settings.methods:
        if METHODS[name].needs_experts and not has_experts(trace):
            warnings.append({"method": name, "group": "", "comparison": "", "reason": f"left out: {NO_EXPERTS}"})
            continue
        produced = stage(name, lambda method=METHODS[name]: method.run(trace, settings))
        for table_name, frame in (produced or {}).items():
            tables[table_name] = validate_table(table_name, frame, method=name)
            warnings.extend(_status_warnings(table_name, frame))

    def rank():
        from analysis.methods.ranking import ranking_tables

        return ranking_tables(trace, tables, settings)

    ranked = stage("ranking", rank)
    if ranked is not None:
        produced, rank_warnings = ranked
        tables.update({t: validate_table(t, frame, method="ranking") for t, frame in produced.items()})
        warnings.extend(rank_warnings)
        for table_name in ("ranking_families", "agreement"):
            if table_name in produced:
                warnings.extend(_status_warnings(table_name, produced[table_name]))

    from mosaic import __version__

    recorded = settings.to_dict()
    recorded["mosaic_version"] = __version__
    warning_frame = pd.DataFrame(warnings, columns=list(WARNING_COLUMNS)) if warnings else empty_warnings()
    # the methods (and the ranking, which reads their tables) work in fractions; the results hold
    # retrieval rates in percent and their changes in percentage points, as the specs say
    tables = {name: in_table_units(name, frame) for name, frame in tables.items()}
    return Results(tables=tables, settings=recorded, warnings=warning_frame,
                   trace_info=_trace_info(trace), timings=timings)
