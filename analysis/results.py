"""The outcome of :func:`analysis.analyze`: tidy tables, the settings that made them, warnings.

Sign convention, everywhere: a *delta* is ``condition - baseline`` (the baseline is the
``oracle`` condition), so a group the model relies on has a **negative** ``delta_map`` /
``delta_rank1`` when it is dropped or routed counterfactually. Rankings put the group with the
largest loss first (rank 1).

Every row of a test table carries ``status`` (``"ok"`` | ``"not tested"`` | ``"not estimable"``,
and ``"unavailable"`` where the trace lacks the conditions a decomposition needs) and ``reason``
(empty when ok). A row that is not ok keeps NaN in its p-value, and NaN p-values
never enter the multiple-testing corrections (:mod:`analysis.corrections`).

Tables (``Results.tables``; a table is absent when its method did not run)
-------------------------------------------------------------------------

Common key columns of the paired tables: ``group``, ``family`` (fine family of the group),
``comparison`` (``"drop"`` | ``"counterfactual"``), ``condition`` (e.g. ``"drop:hat"``),
``baseline`` (``"oracle"``). A *family of tests* for the corrections is one table x one
comparison, across groups: ``p_holm`` / ``p_bh`` are adjusted within it, ``reject_holm`` /
``reject_bh`` compare them with ``alpha`` (False where not tested).

Every paired table treats the **identity** as the independent unit (``unit = "identity"``):
queries of one identity share its attribute states, so their outcomes are not independent trials.

``paired_mcnemar``  clustered McNemar test on rank-1 hits (:func:`analysis.clustered.clustered_mcnemar`)
    key columns, ``unit``, ``n`` (valid queries), ``n_ids``, ``n_ids_discordant`` (identities whose
    hits lost and gained do not cancel), ``rank1_baseline``, ``rank1_condition``, ``delta_rank1``,
    ``ci_low``, ``ci_high`` (interval of ``delta_rank1``: Tango's score interval on the counts
    divided by ``design_effect``, the identity-clustered over query-level variance of Δrank-1,
    at least 1), ``b`` (hits lost: baseline hit, condition miss), ``c`` (hits gained), ``chi2``
    (Durkalski et al. 2003), ``exact`` (p from every sign pattern of the discordant identities),
    ``p``, ``p_holm``, ``p_bh``, ``reject_holm``, ``reject_bh``, ``status``, ``reason``.
``paired_wilcoxon``  clustered signed-rank test on per-query AP (:func:`analysis.clustered.clustered_signed_rank`)
    key columns, ``unit``, ``n``, ``n_ids``, ``n_zero`` (queries whose AP did not change),
    ``mean_delta_ap`` (ΔmAP), ``ci_low``, ``ci_high`` (identity-cluster percentile bootstrap,
    the resamples of ``paired_identity``), ``median_delta_ap``, ``rbc`` (matched-pairs
    rank-biserial correlation over queries, Kerby 2014, positive = condition higher), ``cles``
    (Vargha–Delaney common-language effect size over all pairs, as pingouin computes it),
    ``cles_paired`` (share of queries whose AP rose, ties counted half) -- the last four describe
    the queries and carry no inference --, ``statistic`` (Datta & Satten 2008 ``T``), ``z``,
    ``p``, ``p_holm``, ``p_bh``, ``reject_holm``, ``reject_bh``, ``status``, ``reason``.
``paired_identity``  identity-level test (queries of one identity are not independent)
    key columns, ``unit``, ``n_ids``, ``n_queries``, ``delta_map`` (ΔmAP over valid queries),
    ``mean_identity_delta`` (mean over identities of each identity's mean ΔAP, the permutation
    statistic), ``ci_low``, ``ci_high`` (identity-cluster percentile bootstrap of ``delta_map``),
    ``n_bootstrap``, ``n_permutations`` (sign patterns used), ``exact`` (True when every sign
    pattern was enumerated, at most 12 identities), ``p`` (sign-flip permutation over identities), ``p_holm``, ``p_bh``, ``reject_holm``,
    ``reject_bh``, ``status``, ``reason``.

``ranking_groups``  one row per group, most relied-on first
    ``group``, ``family``, ``coarse_family``, ``consensus_rank`` (1 = most relied on; ties
    averaged; the mean rank over the identity-valid methods only, those whose score is
    recomputed on identity resamples), ``rank_low``, ``rank_high`` (``ci_level`` interval of the
    consensus rank over identity resamples, every consensus method recomputed on each),
    ``consensus_score`` (1 = first in every method, 0 = last in every method), ``mean_rank``,
    ``n_methods`` (methods in the consensus that ranked the group), ``resampled``
    (``"identities"``), ``n_resamples``, then ``rank:<method>`` and ``score:<method>`` per method,
    consensus or not (score: larger = more relied on; see :data:`analysis.ranking.SCORE_SOURCES`
    for what each method's score is and whether it is identity-valid).
``ranking_families``  one row per family x level x comparison
    ``family``, ``level`` (``"coarse"``: intrinsic | extrinsic; ``"fine"``: intrinsic,
    extrinsic-colour, extrinsic-shape, extrinsic-accessory), ``comparison``, ``effect`` (mean over
    the family's groups of ΔmAP under that comparison), ``ci_low``, ``ci_high`` (identity-cluster
    bootstrap), ``n_groups``, ``groups`` (comma-separated), ``rank`` (within level and comparison,
    1 = largest loss), ``rank_low``, ``rank_high`` (its ``ci_level`` interval over the same
    identity resamples), ``resampled``, ``n_resamples``, ``status``, ``reason``.
``agreement``  agreement between the methods' rankings (long form)
    ``statistic`` (``"kendall_w"`` for the one all-method row, ``"spearman"`` for each pair of
    methods), ``method_a``, ``method_b`` (empty for Kendall's W), ``value`` (W or rho), ``p``
    (chi-square p of W with the tie correction; Spearman's p), ``chi2``, ``df`` (NaN for
    Spearman rows), ``n_methods``, ``n_groups``, ``ci_low``, ``ci_high`` (W only: its
    ``ci_level`` interval over identity resamples of the consensus methods' scores),
    ``status``, ``reason``. Kendall's W runs over the consensus (identity-valid) methods.

``config_glm_binomial``, ``config_glm_gaussian``, ``config_surrogate``, ``config_ttest``
    configuration-level tables (the paper's analysis) from :mod:`analysis.configuration`;
    their columns are documented there. Decision columns resample identities; the paper's own
    numbers, conditional on the test set's identities, are the ``*_conditional`` columns.
``query_glm``, ``query_surrogate``, ``query_surrogate_fit``
    query-level explanatory tables from :mod:`analysis.explanatory`; columns documented there
    (the query GLM's errors are identity-clustered CR2 with Satterthwaite degrees of freedom).
``decomposition``, ``decomposition_code``
    information, capacity, misrouting and semantics per group, and the code share per trace, from
    :mod:`analysis.decomposition`; columns documented there.

``conditions``  the trace's condition table (``analysis.trace.Trace.conditions``): ``condition``,
    ``kind``, ``group``, ``n_enabled``, ``mAP``, ``mINP``, ``rank1`` ..., ``n_valid``,
    ``enabled:<group>``.
``cmc``  long CMC curves (``Trace.cmc_table()``): ``condition``, ``rank``, ``cmc`` (and whatever
    extra columns the trace view provides).
``gates``  long mean gate weights (``Trace.gates_mean()``).

``Results.warnings`` has columns ``method``, ``group``, ``comparison``, ``reason``: one row per
test row that is not ok, and one per method that could not run at all.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mosaic.errors import MosaicError

__all__ = ["Results", "WARNING_COLUMNS", "TABLE_NAMES", "FLOAT_DIGITS"]

FORMAT_NAME = "mosaic-results"
FORMAT_VERSION = 1
FLOAT_DIGITS = 12  # significant digits kept in JSON: stable across platforms, far below any CI width
WARNING_COLUMNS = ("method", "group", "comparison", "reason")

TABLE_NAMES = (
    "ranking_groups",
    "ranking_families",
    "agreement",
    "paired_mcnemar",
    "paired_wilcoxon",
    "paired_identity",
    "config_glm_binomial",
    "config_glm_gaussian",
    "config_surrogate",
    "config_ttest",
    "query_glm",
    "query_surrogate",
    "query_surrogate_fit",
    "decomposition",
    "decomposition_code",
    "conditions",
    "cmc",
    "gates",
)


def empty_warnings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in WARNING_COLUMNS})


@dataclass
class Results:
    """Tables, settings and warnings of one analysis run.

    ``to_json()`` is deterministic (sorted keys, NaN -> null, floats rounded to
    :data:`FLOAT_DIGITS` significant digits), so two runs with the same seed give the same text.
    ``timings`` (seconds per stage) is kept for benchmarks and is not serialised.
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: pd.DataFrame = field(default_factory=empty_warnings)
    trace_info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def table(self, name: str) -> pd.DataFrame:
        """The table called ``name``; a clear error lists what exists when it is absent."""
        try:
            return self.tables[name]
        except KeyError:
            raise MosaicError(
                f"no table {name!r} in these results: available are {sorted(self.tables)}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready structure (floats rounded, NaN -> None)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "settings": _plain(self.settings),
            "trace_info": _plain(self.trace_info),
            "warnings": _frame_to_dict(self.warnings),
            "tables": {name: _frame_to_dict(frame) for name, frame in self.tables.items()},
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Results":
        if data.get("format") != FORMAT_NAME:
            raise MosaicError("not a mosaic results file: expected the JSON written by Results.to_json()")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise MosaicError(
                f"results format version {data['version']} is newer than this mosaic reads ({FORMAT_VERSION}): upgrade mosaic"
            )
        warnings = _frame_from_dict(data["warnings"]) if data.get("warnings") else empty_warnings()
        return cls(
            tables={name: _frame_from_dict(t) for name, t in data.get("tables", {}).items()},
            settings=data.get("settings", {}),
            warnings=warnings,
            trace_info=data.get("trace_info", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> "Results":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MosaicError(f"results JSON is malformed ({exc}): regenerate it with Results.to_json()") from None
        return cls.from_dict(data)

    def summary(self) -> str:
        """A few lines for a terminal: the consensus ranking and the warning count."""
        lines = []
        if "ranking_groups" in self.tables and len(self.tables["ranking_groups"]):
            ranking = self.tables["ranking_groups"].sort_values("consensus_rank")
            lines.append("groups, most relied on first: " + ", ".join(ranking["group"].astype(str)))
        lines.append(f"{len(self.tables)} tables, {len(self.warnings)} warnings")
        return "\n".join(lines)


# ---------------------------------------------------------------------- helpers
def _round(x: float) -> float | None:
    if not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.{FLOAT_DIGITS}g}")


def _plain(value: Any) -> Any:
    """Convert numpy / pandas scalars and containers into JSON-ready Python values."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _round(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray, pd.Series, pd.Index)):
        return [_plain(v) for v in list(value)]
    if hasattr(value, "item"):  # zero-dimensional numpy values
        return _plain(value.item())
    return str(value)


def _frame_to_dict(frame: pd.DataFrame) -> dict[str, Any]:
    columns = [str(c) for c in frame.columns]
    data = [[_plain(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return {"columns": columns, "dtypes": [str(t) for t in frame.dtypes], "data": data}


def _frame_from_dict(table: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    for column, dtype in zip(table["columns"], table.get("dtypes", [])):
        try:
            if dtype.startswith(("float", "int", "bool")) and frame[column].isna().any():
                # nulls came from NaN: ints/bools with gaps cannot keep their numpy dtype
                frame[column] = frame[column].astype("float64") if not dtype.startswith("bool") else frame[column]
            else:
                frame[column] = frame[column].astype(dtype)
        except (TypeError, ValueError):
            pass  # keep pandas' own inference for dtypes that do not round-trip by name
    return frame
