"""The findings that open a report: a few sentences generated from the results, each with its numbers
and a link to the table behind it, beside one figure (the groups by consensus rank).

Sentences are a registry, :data:`FINDING_BUILDERS`: a builder reads the
:class:`reports.context.BuildContext` and returns a :class:`Finding` or ``None`` (nothing to say on
this trace). An analysis method added from outside registers its own sentence::

    from reports.numbers import interval_text
    from reports.sections.findings import Finding, register_finding

    def my_finding(ctx):
        frame = ctx.table("my_table")
        if frame is None:
            return None
        row = frame.iloc[0]
        return Finding("my_method", f"... {interval_text(row.estimate, row.ci_low, row.ci_high, unit='pp')} ...",
                       table="table-my-table", numbers={"estimate": row.estimate})

    register_finding("my_method", my_finding, before="warnings")

The order of the registry is the order of the sentences; ``before`` places a new one ahead of a
built-in (the warnings sentence stays last). The population-null rule holds for every sentence:
when no group's effect is distinguishable from zero (:func:`analysis.methods.ranking.distinguishable_groups`),
the first sentence says so and no sentence calls the order a ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from analysis.methods.decomposition import unavailable_quantities
from analysis.analyze import METHODS
from analysis.methods.ranking import SCORE_SOURCES, distinguishable_groups
from analysis.methods.ranking import is_population_null as population_null  # the context-taking one is below
from analysis.stats.status import OK
from reports.numbers import interval_text, level_text, number_text

if TYPE_CHECKING:
    from reports.context import BuildContext

__all__ = ["FINDING_BUILDERS", "Finding", "build_findings", "is_population_null", "register_finding"]


@dataclass
class Finding:
    """One sentence: its text (``**bold**`` allowed), the id of the table behind it, and the
    full-precision numbers it rounds (the JSON keeps them beside the text)."""

    key: str
    text: str
    table: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)


FindingBuilder = Callable[["BuildContext"], "Finding | None"]
FINDING_BUILDERS: dict[str, FindingBuilder] = {}


def register_finding(key: str, builder: FindingBuilder, *, before: str | None = None, replace: bool = False) -> None:
    """Add a sentence builder (after the others, or ahead of ``before``)."""
    if key in FINDING_BUILDERS and not replace:
        raise ValueError(f"a finding called {key!r} is already registered")
    items = [(k, b) for k, b in FINDING_BUILDERS.items() if k != key]
    at = next((i for i, (k, _) in enumerate(items) if k == before), len(items))
    items.insert(at, (key, builder))
    FINDING_BUILDERS.clear()
    FINDING_BUILDERS.update(items)


def is_population_null(ctx: BuildContext) -> bool:
    """True when an identity-valid test exists and no group's effect is distinguishable from zero."""
    return population_null(ctx.results.tables)


def build_findings(ctx: BuildContext) -> list[Finding]:
    found = []
    for key, builder in FINDING_BUILDERS.items():
        finding = builder(ctx)
        if finding is not None:
            found.append(finding)
    return found


# --------------------------------------------------------------------------------- helpers
def _pp(row: Any, estimate: str = "delta_map") -> str:
    return interval_text(row[estimate], row["ci_low"], row["ci_high"], unit="pp") or "–"


def _level(ctx: BuildContext) -> str:
    return level_text(ctx.settings.get("ci_level", 0.95))


def holm_floor(ctx: BuildContext) -> float | None:
    """The smallest Holm-adjusted p the sign-flip tests can reach with the permutations used (None: exact)."""
    paired = ctx.table("paired_identity")
    n_perm = ctx.settings.get("n_permutations")
    if paired is None or not n_perm or "exact" not in paired or paired["exact"].fillna(False).astype(bool).any():
        return None
    m = int((paired["comparison"] == "drop").sum()) or len(paired)
    return m / (int(n_perm) + 1)


def _paired_rows(ctx: BuildContext, comparison: str = "drop") -> pd.DataFrame | None:
    paired = ctx.table("paired_identity")
    if paired is None:
        return None
    rows = paired[(paired["comparison"] == comparison) & (paired["status"].astype(str) != "not estimable")]
    return rows.set_index("group") if len(rows) else None


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _unavailable(ctx: BuildContext, table: str, quantities: tuple[str, ...]) -> dict[str, str]:
    found = unavailable_quantities(ctx.raw_table(table))
    return {q: r for q, r in found.items() if q in quantities}


# ------------------------------------------------------------------------------- built-ins
def reliance(ctx: BuildContext) -> Finding | None:
    """The groups relied on most with ΔmAP and its interval; or that no group differs from zero."""
    ranking = ctx.table("ranking_groups")
    if ranking is None:
        return None
    order = [g for g in ctx.group_order if g in set(ranking["group"].astype(str))]
    groups, decided_by = distinguishable_groups(ctx.results.tables)
    comparison = "drop"
    paired = _paired_rows(ctx)
    if paired is None:
        comparison = "counterfactual"
        paired = _paired_rows(ctx, comparison)
    how = "identity-level sign-flip test, Holm-adjusted" if decided_by == "paired_identity" else \
        "identity-resampled GLM t test, Holm-adjusted"
    if decided_by and not groups:
        text = (f"**No group's effect is distinguishable from zero**: for none of the {len(order)} groups does the "
                f"{how.replace(', Holm-adjusted', '')} reject after Holm's correction, so the order of the groups "
                "below is noise, not a ranking.")
        floor = holm_floor(ctx)
        if floor is not None and floor > float(ctx.settings.get("alpha", 0.05)):
            text += " Too few permutations were run for any test to reject (see the warning)."
        numbers: dict[str, Any] = {"distinguishable": 0, "groups": len(order)}
        if paired is not None:
            largest = paired["delta_map"].astype(float).idxmin()
            row = paired.loc[largest]
            text += f" The largest estimated loss is {largest}'s, ΔmAP {_pp(row)} ({_level(ctx)} CI)."
            numbers.update({"group": largest, "delta_map": row["delta_map"], "ci_low": row["ci_low"],
                            "ci_high": row["ci_high"]})
        return Finding("reliance", text, table="summary-groups", numbers=numbers)
    top = [g for g in order if g in groups][:3] if decided_by else order[:3]
    numbers = {"distinguishable": len(groups), "groups": len(order), "top": {}}
    effects = []
    for group in top:
        if paired is not None and group in paired.index:
            row = paired.loc[group]
            effects.append(_pp(row))
            numbers["top"][group] = {k: row[k] for k in ("delta_map", "ci_low", "ci_high")}
    text = f"The model relies most on {_and([f'**{g}**' for g in top])}"
    if len(effects) == len(top):
        what = "dropping" if comparison == "drop" else "misrouting"
        whose = "its" if len(top) == 1 else "their"
        text += f": {what} {whose} experts changes mAP by {_and(effects)} ({_level(ctx)} CI)"
    if decided_by:
        text += f"; {len(groups)} of {len(order)} groups differ from zero ({how})."
    else:
        text += "."
    return Finding("reliance", text, table="summary-groups", numbers=numbers)


def families(ctx: BuildContext) -> Finding | None:
    """Intrinsic against extrinsic groups: the mean ΔmAP of each with its interval."""
    frame = ctx.table("ranking_families")
    if frame is None:
        return None
    rows = frame[(frame["level"] == "coarse") & (frame["comparison"] == "drop") & (frame["status"] == OK)]
    rows = rows.set_index("family")
    if not {"intrinsic", "extrinsic"} <= set(rows.index):
        return None
    a, b = rows.loc["intrinsic"], rows.loc["extrinsic"]
    overlap = not (a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"])
    verdict = ("the intervals overlap, so neither family is shown to matter more" if overlap else
               f"the intervals do not overlap: {'intrinsic' if a['effect'] < b['effect'] else 'extrinsic'} "
               "groups cost more")
    text = (f"On average over their groups, dropping **intrinsic** experts changes mAP by {_pp(a, 'effect')} and "
            f"dropping **extrinsic** ones by {_pp(b, 'effect')}; {verdict}.")
    return Finding("families", text, table="summary-families",
                   numbers={f: {k: rows.loc[f, k] for k in ("effect", "ci_low", "ci_high")}
                            for f in ("intrinsic", "extrinsic")})


DECOMPOSITION_PARTS = (("information", "fixed − oracle"), ("capacity", "drop − fixed"),
                       ("misrouting", "counterfactual − oracle"))


def decomposition(ctx: BuildContext) -> Finding | None:
    """What the first group's loss is made of: information, capacity, misrouting."""
    table = ctx.raw_table("decomposition")
    if table is None or not len(table):
        return None
    mAP = table[(table["metric"] == "mAP") & (table["status"].astype(str) == OK)]
    groups, _ = distinguishable_groups(ctx.results.tables)
    candidates = [g for g in ctx.group_order if g in set(mAP["group"])]
    if not candidates:
        return None
    group = next((g for g in candidates if g in groups), candidates[0])
    rows = mAP[mAP["group"] == group].set_index("quantity")
    parts, numbers = [], {"group": group}
    for quantity, how in DECOMPOSITION_PARTS:
        if quantity in rows.index:
            row = rows.loc[quantity]
            parts.append(f"{quantity} ({how}) {_pp(row, 'estimate')}")
            numbers[quantity] = {k: row[k] for k in ("estimate", "ci_low", "ci_high")}
    if not parts:
        return None
    present = [q for q, _ in DECOMPOSITION_PARTS if q in rows.index]
    largest = min(present, key=lambda q: rows.loc[q, "estimate"])
    text = f"For **{group}**, the decomposition of ΔmAP gives " + "; ".join(parts)
    if len(present) > 1:
        text += f": the largest loss is **{largest}**" + (
            ", what a wrong route costs, not what the attribute's information is worth" if largest == "misrouting"
            else "")
    missing = _unavailable(ctx, "decomposition", tuple(q for q, _ in DECOMPOSITION_PARTS if q not in present))
    if missing:
        text += f"; {_and(sorted(missing))} cannot be measured on this trace ({next(iter(missing.values()))})"
    text += "."
    return Finding("decomposition", text, table="summary-decomposition", numbers=numbers)


def code_share(ctx: BuildContext) -> Finding | None:
    """The caveat on every other number: how much of the oracle's gain the attribute code alone reaches."""
    code = ctx.raw_table("decomposition_code")
    if code is None or not len(code):
        return None
    rows = code[(code["metric"] == "mAP") & (code["status"].astype(str) == OK)]
    if not len(rows):
        reason = _unavailable(ctx, "decomposition_code", ("code_share",)).get("code_share")
        if not reason:
            return None
        return Finding("code_share", "**Caveat**: how much of the oracle's gain retrieval by the attribute codes "
                       f"alone reaches is unknown on this trace ({reason}), so an expert's effect cannot be told from "
                       "an identity code.", table="method-decomposition")
    row = rows.iloc[0]
    share = interval_text(100 * row["estimate"], 100 * row["ci_low"], 100 * row["ci_high"], unit="%")
    text = (f"**Caveat**: retrieval by the attribute codes alone, with no model, reaches {share} of the oracle's "
            "mAP gain over no experts (code − none over oracle − none), so much of what the experts add may be an "
            "identity code rather than what the attributes look like.")
    return Finding("code_share", text, table="summary-code-share",
                   numbers={k: row[k] for k in ("estimate", "ci_low", "ci_high", "code_gain", "oracle_gain")})


def agreement(ctx: BuildContext) -> Finding | None:
    """How far the methods agree: Kendall's W with its interval."""
    frame = ctx.table("agreement")
    if frame is None:
        return None
    rows = frame[(frame["statistic"] == "kendall_w") & (frame["status"].astype(str) == OK)]
    if not len(rows):
        return None
    row = rows.iloc[0]
    w = row["value"]
    degree = "strongly" if w >= 0.7 else "moderately" if w >= 0.4 else "weakly"
    interval = interval_text(w, row["ci_low"], row["ci_high"]) or number_text(w)
    object_ = "on the groups' order" if is_population_null(ctx) else "on the ranking"
    text = (f"The {int(row['n_methods'])} identity-valid methods agree {degree} {object_}: Kendall's W = {interval} "
            f"({_level(ctx)} interval over identity resamples).")
    return Finding("agreement", text, table="table-agreement",
                   numbers={k: row[k] for k in ("value", "ci_low", "ci_high", "n_methods")})


def _consensus_methods() -> set[str]:
    """The analysis methods whose tables the consensus ranking reads."""
    read = {source.table for source in SCORE_SOURCES}
    return {name for name, method in METHODS.items() if read & set(method.tables)}


def warnings(ctx: BuildContext) -> Finding | None:
    """The warnings that change the reading: methods that did not run, and tests that cannot reject."""
    parts, numbers = [], {}
    frame = getattr(ctx.results, "warnings", None)
    if frame is not None and len(frame) and "reason" in frame:
        reasons = frame["reason"].astype(str)
        # a method that failed always changes the reading; one that could not run only where its
        # tables feed the consensus (an audit method on a trace it does not apply to does not)
        whole = frame[(frame["group"].fillna("").astype(str) == "")
                      & (reasons.str.startswith("failed")
                         | (reasons.str.startswith("not run") & frame["method"].isin(_consensus_methods())))]
        if len(whole):
            names = list(dict.fromkeys(whole["method"].astype(str)))
            parts.append(f"{', '.join(names)} did not run on this trace, so the consensus lacks {'its' if len(names) == 1 else 'their'} evidence")
            numbers["methods_not_run"] = names
    settings = ctx.settings
    floor = holm_floor(ctx)
    if floor is not None and floor > float(settings.get("alpha", 0.05)):
        parts.append(f"with {int(settings['n_permutations'])} permutations no Holm-adjusted p-value can fall below "
                     f"{number_text(floor)} (> alpha = {settings.get('alpha', 0.05)}), so no test can reject: "
                     "rerun with more permutations")
        numbers["holm_floor"] = floor
    if not parts:
        return None
    return Finding("warnings", "**Warning**: " + "; ".join(parts) + ".", table="table-warnings", numbers=numbers)


for _key, _builder in (("reliance", reliance), ("families", families), ("decomposition", decomposition),
                       ("code_share", code_share), ("agreement", agreement), ("warnings", warnings)):
    register_finding(_key, _builder)
