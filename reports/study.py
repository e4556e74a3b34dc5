"""The study report: several runs side by side, in the same document model as ``mosaic report``.

:func:`build_study_report` turns :class:`analysis.studies.study.StudyResults` into a
:class:`reports.document.Report`, so every format of :data:`reports.FORMATS` (html, md, json)
writes it with the same numbers. Sections: summary, pooled effects per label (with the seeds'
spread), the decomposition, ranking stability, label contrasts (groups and families), runs,
methods, notes and provenance.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd

from analysis.tables.registry import table_spec
from reports.document import BulletList, Figure, KeyValues, Paragraph, Report, Section, Table
from reports.figures.charts import ForestPanel, forest_plot
from reports.figures.study import SpreadPanel, spread_plot
from reports.figures.svg import PALETTE
from reports.formats.columns import spec_columns
from reports.provenance import mosaic_version, package_versions, source_commit

__all__ = ["build_study_report"]

POOLED_COLUMNS = ("label", "item", "quantity", "k", "estimate", "ci_low", "ci_high", "se", "df", "seed_sd", "tau2",
                  "tau2_low", "tau2_high", "seed_valid", "status")
CONTRAST_COLUMNS = ("label_a", "label_b", "item", "quantity", "estimate", "ci_low", "ci_high", "se", "df", "p", "p_holm",
                    "reject_holm", "seed_valid", "status")
DECOMPOSITION = ("information", "capacity", "misrouting", "semantics")


def _available(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] != "unavailable"] if "status" in frame else frame


def _effects_figure(results, quantity: str, groups: list[str]) -> Figure | None:
    pooled = results.table("pooled")
    runs = results.table("run_effects")
    panels = []
    for j, label in enumerate(results.settings["labels"]):
        mine = pooled[(pooled.label == label) & (pooled.level == "group") & (pooled.quantity == quantity)].set_index("item")
        theirs = runs[(runs.label == label) & (runs.level == "group") & (runs.quantity == quantity)]
        if mine.empty or mine["status"].eq("unavailable").all():
            continue
        panels.append(SpreadPanel(
            label,
            [float(mine.loc[g, "estimate"]) if g in mine.index else None for g in groups],
            [float(mine.loc[g, "ci_low"]) if g in mine.index else None for g in groups],
            [float(mine.loc[g, "ci_high"]) if g in mine.index else None for g in groups],
            [[float(v) for v in theirs[theirs.item == g]["estimate"].dropna()] for g in groups],
            PALETTE[j % len(PALETTE)]))
    if not panels:
        return None
    svg = spread_plot(groups, panels, title=f"ΔmAP ({quantity}) per label: pooled (◇), interval (bar), each seed (○)",
                      xlabel="ΔmAP (points)")
    return Figure(f"figure-effects-{quantity}", f"Effect of each group ({quantity}) per label: the pooled effect over seeds "
                  "with its identity × seed interval, and each seed's own estimate.", svg)


def _rank_figure(results) -> Figure | None:
    stability = results.table("rank_stability")
    runs = results.table("run_effects")
    quantity = results.settings["rank_by"]
    if stability.empty:
        return None
    first = results.settings["labels"][0]
    groups = stability[stability.label == first]["group"].tolist() or list(results.settings["groups"])
    panels = []
    for j, label in enumerate(results.settings["labels"]):
        mine = stability[stability.label == label].set_index("group")
        if mine.empty:
            continue
        theirs = runs[(runs.label == label) & (runs.level == "group") & (runs.quantity == quantity)]
        seed_ranks = {g: [] for g in groups}
        for _, per_run in theirs.groupby("run"):
            ranks = per_run.set_index("item")["estimate"].rank(method="average")
            for g in groups:
                if g in ranks.index:
                    seed_ranks[g].append(float(ranks[g]))
        panels.append(SpreadPanel(label, [float(mine.loc[g, "pooled_rank"]) for g in groups],
                                  [float(mine.loc[g, "rank_low"]) for g in groups],
                                  [float(mine.loc[g, "rank_high"]) for g in groups],
                                  [seed_ranks[g] for g in groups], PALETTE[j % len(PALETTE)]))
    svg = spread_plot(groups, panels, title=f"Rank of each group ({quantity}; 1 = largest loss) across seeds",
                      xlabel="rank", reference=None)
    return Figure("figure-rank-stability", "Rank stability: the rank of the pooled effect (◇), the range of the "
                  "seeds' ranks (bar) and each seed's rank (○).", svg)


def _contrast_figure(results, level: str, quantity: str) -> Figure | None:
    contrasts = results.table("contrasts")
    if contrasts.empty:
        return None
    mine = _available(contrasts[(contrasts.level == level) & (contrasts.quantity == quantity)])
    if mine.empty:
        return None
    items = list(dict.fromkeys(mine["item"]))
    panels = []
    for j, ((a, b), pair) in enumerate(mine.groupby(["label_a", "label_b"], sort=False)):
        pair = pair.set_index("item")
        panels.append(ForestPanel(f"{a} − {b}", [float(pair.loc[i, "estimate"]) if i in pair.index else None for i in items],
                                  [float(pair.loc[i, "ci_low"]) if i in pair.index else None for i in items],
                                  [float(pair.loc[i, "ci_high"]) if i in pair.index else None for i in items],
                                  xlabel="difference in ΔmAP (points)", colour=PALETTE[j % len(PALETTE)]))
    svg = forest_plot(items, panels, title=f"Label contrasts of ΔmAP ({quantity}, {level}s)")
    return Figure(f"figure-contrasts-{level}-{quantity}", f"Label × {level} interaction ({quantity}): the pooled ΔmAP on "
                  "one label minus the other, with its identity × seed interval; a filled marker excludes 0.", svg)


def _table(frame, *, id, caption, columns, table, note="", max_rows=None) -> Table:
    """``columns`` of the study table ``table`` as its spec describes them: words and units in the headers,
    each estimate with its interval in one cell (bookkeeping columns stay in the CSV and the JSON)."""
    keep = [c for c in dict.fromkeys((*columns, "status", "reason")) if c in frame.columns]
    frame = frame[keep]
    return Table.from_frame(frame, id=id, caption=caption, columns=spec_columns(table_spec(table), frame), note=note,
                            max_rows=max_rows)


def build_study_report(results, *, command: str = "", created: str | None = None) -> Report:
    """The study report document, rendered by any of :data:`reports.FORMATS`."""
    created = created or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    s = results.settings
    labels, rank_by = s["labels"], s["rank_by"]
    groups = list(s["groups"])
    pooled = results.table("pooled")
    contrasts = results.table("contrasts")
    runs = results.table("runs")
    level = lambda f, lv: f[f.level == lv] if not f.empty else f  # noqa: E731
    sig = _available(level(contrasts, "group"))
    sig = sig[sig.get("reject_holm", False) == True] if not sig.empty else sig  # noqa: E712
    per_label = runs.groupby("label", sort=False).size()

    summary = Section("summary", "Summary", origin="extension").add(Paragraph(
        f"{len(runs)} runs in {len(labels)} label(s): " + ", ".join(f"**{k}** ({v} seed{'s' if v > 1 else ''})"
                                                                   for k, v in per_label.items())
        + f"; {len(groups)} shared groups. Effects are ΔmAP in points (condition − reference, negative = the model relies "
          f"on the group), pooled over the seeds of a label; intervals resample identities and seeds (level {s['ci_level']})."))
    if not sig.empty:
        summary.add(BulletList([f"**{r.item}** ({r.quantity}): {r.label_a} − {r.label_b} = {r.estimate:+.2f} points "
                                f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}], Holm p = {r.p_holm:.3g}" for r in sig.itertuples()]))
    else:
        summary.add(Paragraph("No label × group contrast is significant after Holm's correction."
                              if len(labels) > 1 else "One label: no contrasts."))
    concordance = results.table("concordance")
    if not concordance.empty:
        summary.add(_table(concordance, id="concordance", table="concordance", caption=f"Agreement of the seeds' rankings ({rank_by}): Kendall's W",
                           columns=("label", "kendall_w", "chi2", "df", "p", "k", "n_groups", "status")))

    effects = Section("effects", "Effects per label, pooled over seeds", origin="extension")
    fig = _effects_figure(results, rank_by, groups)
    if fig:
        effects.add(fig)
    effects.add(_table(_available(level(pooled, "group"))[lambda f: f.quantity == rank_by], id="pooled-groups", table="pooled",
                       caption=f"Pooled ΔmAP ({rank_by}) per label and group; τ² = between-seed variance (points²)",
                       columns=POOLED_COLUMNS,
                       note=f"Unit: identity × seed. Interval: t with {s['df_method']} df; τ²: Paule–Mandel with "
                            "Q-profile interval, both on the identity-bootstrap covariance of the runs."))

    decomposition = Section("decomposition", "Decomposition per group: information, capacity, misrouting, semantics",
                            origin="extension")
    dec = _available(level(pooled, "group"))
    dec = dec[dec.quantity.isin(DECOMPOSITION)] if not dec.empty else dec
    if dec.empty:
        decomposition.add(Paragraph("The traces hold no fixed, counterfactual or relabel conditions: nothing to decompose."))
    else:
        for q in DECOMPOSITION:
            if (dec.quantity == q).any():
                fig = _effects_figure(results, q, groups)
                if fig:
                    decomposition.add(fig)
        decomposition.add(_table(dec, id="pooled-decomposition", table="pooled", caption="Pooled decomposition quantities per label and group",
                                 columns=POOLED_COLUMNS, note="; ".join(f"{k}: {v}" for k, v in s["quantities"].items())))

    ranking = Section("ranking", "Ranking stability across seeds", origin="extension")
    fig = _rank_figure(results)
    if fig:
        ranking.add(fig)
    ranking.add(_table(results.table("rank_stability"), id="rank-stability", table="rank_stability",
                       caption=f"Rank of each group ({rank_by}; 1 = largest loss): pooled, range over seeds, share in the top 3",
                       columns=("label", "group", "family", "pooled_rank", "rank_low", "rank_high", "median_rank",
                                "top3_share", "k")))

    contrast = Section("contrasts", "Label contrasts (label × group interaction)", origin="extension")
    if contrasts.empty:
        contrast.add(Paragraph("One label: no contrasts."))
    else:
        for lv in ("group", "family"):
            for q in [rank_by] + [q for q in DECOMPOSITION if q != rank_by]:
                fig = _contrast_figure(results, lv, q)
                if fig:
                    contrast.add(fig)
            contrast.add(_table(_available(level(contrasts, lv)), id=f"contrasts-{lv}", table="contrasts",
                                caption=f"Label contrasts per {lv}: pooled ΔmAP on label_a − on label_b (points)",
                                columns=CONTRAST_COLUMNS,
                                note="Unit: identity × seed. Holm and BH within each label pair × level × quantity."))

    families = Section("families", "Families", origin="extension").add(
        _table(_available(level(pooled, "family")), id="pooled-families", table="pooled",
               caption="Pooled ΔmAP per attribute family (mean of its groups) and label", columns=POOLED_COLUMNS))

    run_section = Section("runs", "Runs").add(
        _table(runs, id="runs", table="runs", caption="The runs (traces) of the study",
               columns=("run", "label", "seed", "path", "checkpoint", "test_set", "n_ids", "n_queries", "oracle_map")),
        _table(_available(level(results.table("run_effects"), "group")), id="run-effects", table="run_effects",
               caption="Each run's ΔmAP per group and quantity (points), identity-cluster bootstrap interval",
               columns=("label", "seed", "item", "quantity", "estimate", "ci_low", "ci_high", "se", "n_ids", "unit"),
               max_rows=400))

    methods = Section("methods", "Methods").add(Paragraph(_methods_text(s)))
    notes = Section("notes", "Notes").add(BulletList(list(results.notes) or ["None."]))
    provenance = Section("provenance", "Provenance").add(KeyValues("provenance", "", [
        ("report created", created), ("report command", command or "(library call)"),
        ("mosaic version", mosaic_version()), ("git commit", source_commit() or "(not a git checkout)"),
        ("package versions", ", ".join(f"{k} {v}" for k, v in package_versions().items())),
        *[(f"run {r['run']} ({r['label']}, seed {r['seed']})", f"{r['path']} sha256 {r['sha256'] or '(in memory)'} "
           f"checkpoint {r['checkpoint']}") for r in results.runs_info]]))
    sections = [summary, effects, decomposition, ranking, contrast, families, run_section, methods, notes, provenance]
    metadata = {"created": created, "command": command, "mosaic_version": mosaic_version(), "git_commit": source_commit(),
                "package_versions": package_versions(), "study_settings": json.loads(json.dumps(s, default=str))}
    return Report(title="mosaic study: attribute reliance across runs",
                  subtitle=f"{len(runs)} runs · labels: {', '.join(labels)} · groups compared on the shared schema",
                  sections=sections, metadata=metadata, analysis_json=results.to_json())


def _methods_text(s) -> str:
    return (
        f"Each trace is one trained run; runs of one label are seeds. Per run, each quantity is the mean ΔAP over valid "
        f"queries, with an identity-cluster bootstrap ({s['n_bootstrap']} resamples, seed {s['seed']}); runs traced on "
        "the same test set share the resampled identities, which gives the covariance of their errors. Per label the "
        "effect is the equal-weight mean of the seeds (random-effects model: run = label mean + seed deviation + "
        "identity-sampling error). Its variance is the seeds' sample variance over k plus the identity covariance the "
        f"seeds share, with a t interval on {s.get('df_method', 'satterthwaite')} degrees of freedom (Welch–Satterthwaite, "
        "or conservatively the smallest seeds − 1; a Hartung–Knapp-type interval that does not rely on a τ² estimated "
        "from few seeds). The between-seed variance τ² is the Paule–Mandel estimate "
        "of the generalised Q on the runs' full identity covariance, with a Q-profile interval. Contrasts (label × group "
        "interaction) are differences of pooled effects with the same variance; Holm and Benjamini–Hochberg adjust "
        f"within each label pair × level × quantity; α = {s['alpha']}. Ranking stability ranks the groups by "
        f"{s['rank_by']} ΔmAP within each seed (1 = largest loss); Kendall's W measures the seeds' agreement "
        "(Friedman χ² test). A label with one run has no seed replication: its intervals hold for new identities only."
    )
