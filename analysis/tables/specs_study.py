"""Specs of the study tables (:func:`analysis.study`): several runs, seeds as replicates, labels compared.

A study's rows are built per run, label and quantity; a row whose runs lack the conditions is
``unavailable`` and carries only its keys, so the numbers are optional columns.
"""

from __future__ import annotations

from analysis.tables.registry import ColumnSpec as C
from analysis.tables.registry import TableSpec, register_table
from analysis.tables.specs import GROUP_KEYS, PERCENT, PP, _p

POOLED_UNIT = "identity × seed"
PP2 = dict(unit="pp²", scale=1e4)  # variances of effects held in percentage points


def _opt(name: str, dtype: str, description: str, **kw) -> C:
    return C(name, dtype, description, required=False, **kw)


_KEYS = (
    C("level", "str", "group, family or decomposition", role="key"),
    C("item", "str", "the group or family", role="key"),
    C("quantity", "str", "the compared quantity (drop, counterfactual, information, ...)", role="key"),
)
_ESTIMATE = (
    _opt("estimate", "float", "ΔmAP (condition − reference over valid queries)", label="ΔmAP", **PP, role="estimate"),
    _opt("se", "float", "standard error", **PP),
    _opt("ci_low", "float", "lower end of the ci_level interval", **PP, role="interval"),
    _opt("ci_high", "float", "upper end of the ci_level interval", **PP, role="interval"),
)
_STATUS = (C("status", "str", "ok, unavailable or not estimable", role="status"),)

register_table(TableSpec(
    "runs", "study", "One row per trace of the study.",
    (
        C("run", "int", "run index", role="key"),
        C("label", "str", "the run's label (dataset, backbone, ...)", role="key"),
        C("seed", "str", "the run's training seed"),
        C("path", "str", "trace file"),
        C("checkpoint", "str", "checkpoint hash (first 12 hex digits)"),
        C("test_set", "str", "fingerprint of the test set: runs sharing it are resampled jointly"),
        C("n_ids", "int", "identities", role="count"),
        C("n_queries", "int", "valid queries", role="count"),
        C("oracle_map", "float", "mAP under oracle routing", label="oracle mAP", **PERCENT),
    ),
))
register_table(TableSpec(
    "run_effects", "study", "One row per run × level × item × quantity: the run's own estimate.",
    (
        C("label", "str", "the run's label", role="key"), C("seed", "str", "the run's seed", role="key"),
        C("run", "int", "run index", role="key"), *_KEYS, *_ESTIMATE,
        C("n_ids", "int", "identities resampled", role="count"),
        C("unit", "str", "the resampled unit (identity)"), *_STATUS,
    ),
    resamples="identity",
))
register_table(TableSpec(
    "pooled", "study", "One row per label × level × item × quantity: the runs of a label pooled with a between-seed "
                       "variance component (random-effects meta-analysis over runs).",
    (
        C("label", "str", "the label", role="key"), *_KEYS,
        C("k", "int", "runs pooled", role="count"),
        C("unit", "str", "the resampled units (identity × seed)"),
        *_ESTIMATE,
        _opt("df", "float", "degrees of freedom of the t interval"),
        _opt("var_seed", "float", "variance from the seeds' scatter", **PP2),
        _opt("var_identity", "float", "variance shared through the test set's identities", **PP2),
        _opt("seed_valid", "bool", "two or more runs: the seed variance is estimated"),
        _opt("seed_sd", "float", "sd of the run estimates", **PP),
        _opt("tau2", "float", "Paule–Mandel between-seed variance", **PP2),
        _opt("tau2_low", "float", "lower end of its Q-profile interval", **PP2),
        _opt("tau2_high", "float", "upper end of its Q-profile interval", **PP2),
        *_STATUS,
    ),
    resamples=POOLED_UNIT,
))
register_table(TableSpec(
    "rank_stability", "study", "One row per label × group: how stable the group's rank is over the seeds.",
    (
        C("label", "str", "the label", role="key"), *GROUP_KEYS, C("quantity", "str", "the ranked quantity"),
        C("pooled_rank", "float", "rank of the pooled effect, 1 = largest loss", role="estimate"),
        C("rank_low", "float", "best rank over the seeds"), C("rank_high", "float", "worst rank over the seeds"),
        C("median_rank", "float", "median rank over the seeds"),
        C("top3_share", "float", "share of seeds ranking the group in the top 3", unit="fraction"),
        C("k", "int", "seeds", role="count"),
    ),
))
register_table(TableSpec(
    "concordance", "study", "One row per label: agreement of the seeds' rankings.",
    (
        C("label", "str", "the label", role="key"),
        _opt("kendall_w", "float", "Kendall's W of the seeds' rankings, ties corrected (1 = every seed ranks alike)",
             role="estimate"),
        _opt("chi2", "float", "Friedman chi-square", role="test"), _opt("df", "float", "its degrees of freedom"),
        _opt("p", "float", "p of no agreement", role="test"),
        C("k", "int", "seeds", role="count"), C("n_groups", "int", "groups ranked", role="count"), *_STATUS,
    ),
    test="Friedman chi-square of Kendall's W",
))
register_table(TableSpec(
    "contrasts", "study", "One row per label pair × level × item × quantity: the pooled effect on label A minus on "
                          "label B (the label × group interaction).",
    (
        C("label_a", "str", "first label", role="key"), C("label_b", "str", "second label", role="key"), *_KEYS,
        C("unit", "str", "the resampled units (identity × seed)"), *_ESTIMATE,
        _opt("df", "float", "degrees of freedom"), _opt("statistic", "float", "t statistic", role="test"),
        *(c if c.name != "p" else C("p", "float", c.description, role="test") for c in _p("t test of the contrast")),
        _opt("seed_valid", "bool", "both labels have two or more runs"), *_STATUS,
    ),
    resamples=POOLED_UNIT, test="t on the pooled contrast", family_keys=("label_a", "label_b", "level", "quantity"),
))
