"""Specs of the tables of the embedding audit (:mod:`analysis.methods.audit.embedding`,
:mod:`analysis.methods.audit.comparison`), registered as the package loads; the methods that produce them
are listed in :data:`analysis.analyze.METHODS`.

They need no experts: they run on any trace, a checkpoint's (on its baseline) as well as one made
from an external model's features with ``mosaic trace --features``.
"""

from __future__ import annotations

from analysis.tables.registry import ColumnSpec as C
from analysis.tables.registry import TableSpec, register_table
from analysis.tables.specs import GROUP_KEYS, IDENTITY, PERCENT, PP, _interval, _p, _status

__all__ = ["AUDIT_TABLES", "COMPARISON", "CONFUSION", "SHARING"]

KEYS = (
    C("condition", "str", "the model (an embedding condition) or the baseline condition audited", label="model",
      role="key"),
    *GROUP_KEYS,
)
RESAMPLED = C("resampled", "str", "the unit the interval resamples (identities)", label="unit resampled")

CONFUSION = TableSpec(
    "attribute_confusion", "attribute_confusion",
    "Per model and group: the share of a query's negatives ranked above its first true match that share the "
    "query's state, against the chance share from the gallery's state frequencies.",
    KEYS + (
        C("negatives", "str", "which negatives count: above_first_match (within the top-k lists) or top_k",
          hidden=True),
        C("observed_share", "float", "share of the counted negatives (annotated for the group) in the query's state",
          label="observed share", unit="fraction", role="estimate"),
        C("chance_share", "float", "share expected by chance: the frequency of the query's state among annotated "
          "gallery images of other identities, weighted by each query's counted negatives", label="chance share",
          unit="fraction"),
        C("ratio", "float", "observed_share / chance_share: 1 = errors ignore the group, above 1 = the model "
          "confuses people who share the state", label="ratio", unit="×", role="estimate"),
        *_interval("ratio", "pigeonhole bootstrap: identities resampled, each counted negative weighted by the "
                   "product of its query's and its own identity's multiplicities", "ratio CI low",
                   "ratio CI high", unit="×"),
        C("n_negatives", "int", "negatives counted (annotated for the group)", label="negatives", role="count"),
        C("n_ids", "int", "query identities with a counted negative", label="identities", role="count"),
        C("n_queries", "int", "valid queries with a counted negative", label="queries", role="count"),
        RESAMPLED, *_status("ok or not estimable"),
    ),
    resamples=IDENTITY,
    shown_first=("condition", "group", "observed_share", "chance_share", "ratio", "ci_low", "ci_high", "n_ids",
                 "n_queries"),
    caption="Attribute confusion: do the negatives ranked above a query's first true match share its state more "
            "often than chance? (unit resampled: identity)",
)

SHARING = TableSpec(
    "distance_sharing", "distance_sharing",
    "Per model and group: how much the distance between images of different identities falls when they share "
    "the group's state, adjusted for every other group, on the trace's sampled pairs.",
    KEYS + (
        C("distance_fall", "float", "minus the share coefficient of a least-squares fit of the pair distance on every "
          "group's known and share indicators: the fall when the state is shared", label="distance fall",
          unit="distance", role="estimate"),
        *_interval("distance_fall", "pigeonhole bootstrap: identities resampled, each pair weighted by the product "
                   "of its two identities' multiplicities", unit="distance"),
        C("relative_fall", "float", "distance_fall / mean_distance", label="relative fall", unit="fraction"),
        C("mean_distance", "float", "mean distance of the sampled different-identity pairs", label="mean distance",
          unit="distance", hidden=True),
        C("n_pairs", "int", "sampled pairs", label="pairs", role="count"),
        C("n_pairs_sharing", "int", "sampled pairs whose images share the group's state", label="pairs sharing",
          role="count"),
        C("n_ids", "int", "identities in the sampled pairs", label="identities", role="count"),
        RESAMPLED, *_status("ok or not estimable"),
    ),
    resamples=IDENTITY,
    shown_first=("condition", "group", "distance_fall", "ci_low", "ci_high", "relative_fall", "n_pairs_sharing",
                 "n_ids"),
    caption="Distance sharing: the fall in different-identity distance when two people share the state "
            "(unit resampled: identity)",
)

COMPARISON = TableSpec(
    "model_comparison", "model_comparison",
    "Each model against the first on the same queries: ΔmAP and Δrank-1 with identity-valid tests.",
    (
        C("condition", "str", "the model compared", label="model", role="key"),
        C("baseline", "str", "the first model of the trace", label="against", role="key"),
        C("unit", "str", "the independent unit of the tests (identity)"),
        C("n", "int", "valid queries", label="queries", role="count"),
        C("n_ids", "int", "identities of the valid queries", label="identities", role="count"),
        C("map_baseline", "float", "mAP of the first model", label="mAP against", **PERCENT),
        C("map_condition", "float", "mAP of the model", label="mAP model", **PERCENT),
        C("delta_map", "float", "map_condition - map_baseline", label="ΔmAP", **PP, role="estimate"),
        *_interval("delta_map", "identity-cluster percentile bootstrap", **PP),
        C("rank1_baseline", "float", "rank-1 rate of the first model", label="R-1 against", **PERCENT),
        C("rank1_condition", "float", "rank-1 rate of the model", label="R-1 model", **PERCENT),
        C("delta_rank1", "float", "rank1_condition - rank1_baseline", label="ΔR-1", **PP, role="estimate"),
        *_interval("delta_rank1", "Tango's score interval divided by the identity design effect", "ΔR-1 CI low",
                   "ΔR-1 CI high", prefix="rank1_", **PP),
        C("p_mcnemar", "float", "p of the clustered McNemar test on rank-1 hits (Durkalski)", label="p McNemar",
          role="test"),
        C("p_signed_rank", "float", "p of the clustered signed-rank test on AP (Datta–Satten)", label="p signed-rank",
          role="test"),
        *_p("identity sign-flip test of ΔmAP"), *_status(),
    ),
    resamples=IDENTITY, test="identity sign-flip test of ΔmAP",
    shown_first=("condition", "baseline", "delta_map", "ci_low", "ci_high", "delta_rank1", "rank1_ci_low",
                 "rank1_ci_high", "p_mcnemar", "p_signed_rank", "p", "p_holm"),
    caption="Models compared query by query (unit: identity)",
)

for _spec in (CONFUSION, SHARING, COMPARISON):
    register_table(_spec)

AUDIT_TABLES = (CONFUSION.name, SHARING.name, COMPARISON.name)
