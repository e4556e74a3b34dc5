"""The audit's findings in words, among the sentences that open the report, and the expert-only
sections a trace of exported features leaves out.

:func:`confusion_sentence` and :func:`distance_sentence` build the finding from the tables of
:mod:`analysis.methods.audit.embedding` (e.g. "errors share upcolour 2.80× [2.30, 3.40] more often than chance; bag
1.00× [0.90, 1.10] no more than chance"); they are registered in :data:`reports.sections.findings.FINDING_BUILDERS`
with the line that says which sections a trace without experts leaves out, and
:func:`leave_out_expert_sections` drops those sections. The audit's tables themselves are shown, as
their specs describe them, by the sections of methods registered from outside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from analysis.analyze import has_experts
from reports.document import Section
from reports.sections.findings import Finding, register_finding

if TYPE_CHECKING:
    from reports.context import BuildContext

__all__ = ["EXPERT_SECTIONS", "confusion_sentence", "distance_sentence", "leave_out_expert_sections"]

# report sections whose methods compare routings of a mosaic model's experts (drop, subset, fixed, ...)
EXPERT_SECTIONS = {
    "method-config-glm": "configuration-level GLMs", "method-config-surrogate": "configuration-level surrogates",
    "method-config-ttest": "configuration-level t-tests", "method-paired": "paired tests against drop / counterfactual",
    "method-query-surrogate": "the query-level surrogate of drop changes",
    "method-decomposition": "the decomposition", "method-ranking": "the ranking across those methods",
}
MAX_NAMED = 3  # groups named on each side of the finding


def _ok(frame: pd.DataFrame | None, condition: str | None = None) -> pd.DataFrame:
    if frame is None or not len(frame):
        return pd.DataFrame()
    rows = frame[frame["status"].astype(str) == "ok"]
    if condition is not None:
        rows = rows[rows["condition"] == condition]
    return rows


def _interval(value: float, low: float, high: float, digits: int, suffix: str = "") -> str:
    return f"{value:.{digits}f}{suffix} [{low:.{digits}f}, {high:.{digits}f}]"


def confusion_sentence(confusion: pd.DataFrame | None, condition: str) -> str | None:
    """"errors share upcolour 2.80× [2.30, 3.40] ... more often than chance; bag 1.00× [0.90, 1.10] ..." for one model."""
    rows = _ok(confusion, condition)
    if not len(rows):
        return None
    rows = rows.sort_values("ratio", ascending=False)
    above = rows[rows["ci_low"] > 1].head(MAX_NAMED)
    plain = rows[(rows["ci_low"] <= 1) & (rows["ci_high"] >= 1)]
    plain = plain.reindex((plain["ratio"] - 1).abs().sort_values().index).head(MAX_NAMED)
    where = ("ranked above a query's first true match" if rows["negatives"].iloc[0] == "above_first_match"
             else "among a query's top-k neighbours")
    parts = []
    if len(above):
        named = ", ".join(f"{r.group} {_interval(r.ratio, r.ci_low, r.ci_high, 2, '×')}" for r in above.itertuples())
        parts.append(f"errors share {named} more often than chance")
    else:
        parts.append("errors share no group's state more often than chance")
    if len(plain):
        parts.append("; " + ", ".join(f"{r.group} {_interval(r.ratio, r.ci_low, r.ci_high, 2, '×')}"
                                      for r in plain.itertuples()) + " no more than chance")
    return (f"**{condition}**: " + "".join(parts) + f" (the wrong images {where}; ratio of observed to chance share, "
            f"{int(rows['n_ids'].max())} identities resampled).")


def distance_sentence(sharing: pd.DataFrame | None, condition: str) -> str | None:
    """How far two different people's distance falls when they share a state, largest first."""
    rows = _ok(sharing, condition)
    if not len(rows):
        return None
    rows = rows.sort_values("distance_fall", ascending=False)
    rows = rows[rows["ci_low"] > 0].head(MAX_NAMED)
    if not len(rows):
        return f"Two different people's embedding distance falls for no shared state ({condition})."
    named = ", ".join(f"{r.group} by {100 * r.relative_fall:.0f}% "
                      f"[{100 * r.ci_low / r.mean_distance:.0f}, {100 * r.ci_high / r.mean_distance:.0f}]"
                      for r in rows.itertuples())
    return (f"Two different people's embedding distance falls most when they share {named} of the mean distance "
            f"(adjusted for the other groups; identities resampled).")


def _models(ctx: BuildContext) -> list[str]:
    confusion = ctx.raw_table("attribute_confusion")
    return list(dict.fromkeys(confusion["condition"].astype(str))) if confusion is not None and len(confusion) else []


def _each_model(ctx: BuildContext, table: str, sentence, estimate: str) -> Finding | None:
    # on a trace with experts the routing findings answer the question in their 4-6 sentences; the
    # audit's tables stay in their section
    if has_experts(ctx.trace):
        return None
    frame = ctx.raw_table(table)
    texts = [t for t in (sentence(frame, model) for model in _models(ctx)) if t]
    if not texts:
        return None
    rows = _ok(frame)
    numbers = {f"{r.condition}/{r.group}": {k: getattr(r, k) for k in ("ci_low", "ci_high")}
               | {"estimate": getattr(r, estimate)}
               for r in rows.itertuples()}
    return Finding(table, " ".join(texts), table=f"table-{table.replace('_', '-')}", numbers=numbers)


def confusion_finding(ctx: BuildContext) -> Finding | None:
    """Per model: the groups its errors share more often than chance, and those they do not."""
    return _each_model(ctx, "attribute_confusion", confusion_sentence, "ratio")


def distance_finding(ctx: BuildContext) -> Finding | None:
    """Per model: the shared states that bring two different people closest."""
    return _each_model(ctx, "distance_sharing", distance_sentence, "distance_fall")


def left_out_finding(ctx: BuildContext) -> Finding | None:
    """On a trace without experts, the one line that says which sections are left out and why."""
    if has_experts(ctx.trace):
        return None
    left_out = ", ".join(EXPERT_SECTIONS.values())
    return Finding("expert_sections", f"Left out of this report: {left_out}. They need a mosaic model's experts "
                   f"(routing conditions), and this trace holds an external model's exported features.")


def leave_out_expert_sections(ctx: BuildContext, sections: list[Section]) -> list[Section]:
    """``sections`` without those of expert-only methods when the trace has no experts."""
    if has_experts(ctx.trace):
        return sections
    return [s for s in sections if s.id not in EXPERT_SECTIONS]


register_finding("attribute_confusion", confusion_finding, before="warnings")
register_finding("distance_sharing", distance_finding, before="warnings")
register_finding("expert_sections", left_out_finding, before="warnings")
