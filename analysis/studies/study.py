"""``analysis.study``: several runs side by side -- seeds as replicates, labels (datasets, backbones) compared.

    >>> import analysis
    >>> results = analysis.study(["market/s0/trace.h5", "market/s1/trace.h5",
    ...                           "duke/s0/trace.h5", "duke/s1/trace.h5"])
    >>> results.table("contrasts").query("reject_holm")

A ranking from one training run is one draw: another seed can lean on other attributes. A study
pools each group's effect over the seeds of a label with a between-seed variance component
(random-effects meta-analysis over runs, :mod:`analysis.stats.metaanalysis`), each run's standard error
identity-valid (identity-cluster bootstrap, joint across runs on one test set), and asks whether
an effect differs between labels (label × group interaction) with Holm's correction.

Tables (``StudyResults.tables``)
--------------------------------
``runs``  one row per trace: ``run``, ``label``, ``seed``, ``path``, ``checkpoint``, ``test_set``
    (fingerprint: runs sharing it were resampled jointly), ``n_ids``, ``n_queries``, ``oracle_map``.
``run_effects``  one row per run × level × item × quantity: ``estimate`` (ΔmAP, condition −
    reference over valid queries), ``se``, ``ci_low``, ``ci_high`` (identity-cluster percentile
    bootstrap), ``unit`` (``identity``), ``status``.
``pooled``  one row per label × level × item × quantity: ``k`` (runs), ``estimate`` (mean over the
    label's runs), ``se``, ``df``, ``ci_low``, ``ci_high`` (t interval, variance from the seeds'
    scatter plus the shared identity covariance), ``seed_sd`` (sd of the run estimates), ``tau2``
    (Paule–Mandel between-seed variance), ``tau2_low``, ``tau2_high`` (Q-profile), ``var_seed``,
    ``var_identity``, ``seed_valid`` (two or more runs), ``unit`` (``identity × seed``), ``status``.
``rank_stability``  one row per label × group (quantity ``rank_by``): ``pooled_rank`` (rank of the
    pooled effect, 1 = largest loss), ``rank_low``, ``rank_high`` (best and worst rank over the
    seeds), ``median_rank``, ``top3_share`` (share of seeds ranking the group in the top 3), ``k``.
``concordance``  one row per label: ``kendall_w`` (Kendall's W of the seeds' rankings, ties
    corrected; 1 = every seed ranks alike), ``chi2``, ``df``, ``p`` (Friedman chi-square test of
    no agreement), ``k`` (seeds), ``n_groups``.
``contrasts``  one row per label pair × level × item × quantity: ``label_a``, ``label_b``,
    ``estimate`` (pooled effect on A − on B: the label × group interaction), ``se``, ``df``,
    ``ci_low``, ``ci_high``, ``p``, ``p_holm``, ``reject_holm`` (Holm within each family: one
    label pair × level × quantity), ``p_bh``, ``reject_bh``, ``seed_valid``, ``unit``, ``status``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.display import Display, Displayable
from analysis.stats.concordance import kendalls_w
from analysis.stats.corrections import add_corrections
from analysis.stats.metaanalysis import DF_METHODS, between_seed_variance, combination
from analysis.stats.status import NOT_ESTIMABLE, OK, UNAVAILABLE
from analysis.studies.runs import STUDY_QUANTITIES, Quantity, collect_runs, run_estimates, shared_schema
from analysis.tables.registry import in_table_units, validate_table
from mosaic.core.jsonsafe import jsonable

__all__ = ["study", "StudyResults", "STUDY_QUANTITIES"]

UNIT_RUN = "identity"
UNIT_POOLED = "identity × seed"
TOP = 3


@dataclass(repr=False)
class StudyResults(Displayable):
    """Tables of a study, the settings that made them, notes on the schema, provenance per run.

    In a notebook it shows its settings, runs, the most relied-on groups per label with their
    pooled intervals, the seeds' agreement, its notes, and the shapes of its tables.
    """

    tables: dict[str, pd.DataFrame]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    runs_info: list[dict[str, Any]] = field(default_factory=list)

    def table(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tables as lists of records, NaN as None (columns: :mod:`analysis.tables.specs_study`)."""
        return jsonable({"settings": self.settings, "notes": list(self.notes), "runs": self.runs_info,
                         "tables": {name: frame.to_dict("records") for name, frame in self.tables.items()}},
                        finite=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False)

    def _display(self) -> Display:
        s = self.settings
        labels = s.get("labels", [])
        display = Display("StudyResults", f"{len(self.runs_info)} runs, {len(labels)} label(s): {', '.join(labels)}")
        display.fields({"ranked by": s.get("rank_by"), "alpha": s.get("alpha"), "ci level": s.get("ci_level"),
                        "bootstrap resamples": s.get("n_bootstrap"), "seed": s.get("seed"),
                        "degrees of freedom": s.get("df_method")}, "settings")
        pooled, concordance = self.tables.get("pooled"), self.tables.get("concordance")
        if pooled is not None and len(pooled):
            rows = pooled[(pooled["level"] == "group") & (pooled["quantity"] == s.get("rank_by", "drop"))]
            top = rows.sort_values(["label", "estimate"]).groupby("label", sort=False).head(TOP)
            top = top.assign(**{f"ΔmAP (pp) [{100 * s.get('ci_level', 0.95):g}% CI]": [
                f"{e:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                for e, lo, hi in zip(top["estimate"], top["ci_low"], top["ci_high"])]})
            display.table(top[["label", "item", "k", top.columns[-1]]].rename(columns={"item": "group", "k": "runs"}),
                          f"most relied-on groups per label ({s.get('rank_by', 'drop')}, pooled over seeds)",
                          max_rows=3 * TOP, note="units resampled: identity × seed")
        if concordance is not None and len(concordance):
            display.text("seeds' agreement (Kendall's W): " + ", ".join(
                f"{row.label} {row.kendall_w:.2f}" if row.kendall_w == row.kendall_w else f"{row.label} n/a"
                for row in concordance.itertuples()))
        display.lines("notes", list(self.notes), empty="none")
        display.fields({name: f"{len(frame)} rows × {frame.shape[1]} columns" for name, frame in self.tables.items()},
                       "tables (results.table(name))")
        return display


def _rank_loss(values: np.ndarray) -> np.ndarray:
    """Ranks with 1 = the most negative Δ (largest loss), ties averaged."""
    return stats.rankdata(values, method="average")


def study(
    traces: Sequence[Any],
    *,
    labels: Sequence[str] | Mapping[str, str] | None = None,
    quantities: Mapping[str, Quantity] | None = None,
    rank_by: str = "drop",
    alpha: float = 0.05,
    ci_level: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
    df_method: str = "satterthwaite",
    progress: Callable[[str], None] | None = None,
) -> StudyResults:
    """Pool, rank and compare attribute-group effects over several runs.

    Parameters
    ----------
    traces : trace paths or :class:`analysis.Trace` objects, at least two; each is one trained run.
    labels : ``["NAME=GLOB", ...]`` (or ``{name: glob}``) assigning traces to labels by path; default:
        ``provenance["label"]``, else the provenance's dataset / backbone / config where they differ.
    quantities : per-group quantities (default :data:`STUDY_QUANTITIES`: drop and the
        decomposition); a quantity whose conditions a trace lacks is ``unavailable``.
    rank_by : the quantity whose effects are ranked for the stability tables.
    alpha, ci_level : Holm / BH decisions; interval coverage.
    n_bootstrap, seed : identity-cluster bootstrap resamples per run, and their seed.
    df_method : degrees of freedom of the pooled and contrast t intervals,
        :data:`analysis.stats.metaanalysis.DF_METHODS` (``"satterthwaite"`` or ``"conservative"``).
    progress : called with each slow stage's name before it runs, once the runs are read and
        checked (so a bad input fails before any progress is shown).
    """
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must lie strictly between 0 and 1, got {ci_level}")
    if df_method not in DF_METHODS:
        raise ValueError(f"df_method must be one of {DF_METHODS}, got {df_method!r}")
    quantities = dict(quantities or STUDY_QUANTITIES)
    if rank_by not in quantities:
        raise ValueError(f"rank_by={rank_by!r} is not a study quantity: choose from {list(quantities)}")
    runs = collect_runs(traces, labels)
    schema = shared_schema(runs)
    if progress is not None:
        progress(f"identity bootstrap of {len(runs)} runs")
    est = run_estimates(runs, schema, quantities, n_bootstrap=n_bootstrap, seed=seed)
    label_names = list(dict.fromkeys(r.label for r in runs))
    label_of_run = np.array([label_names.index(r.label) for r in runs])

    if progress is not None:
        progress("pooling over seeds, ranks and contrasts")
    tables = {
        "runs": _runs_table(runs, est),
        "run_effects": _run_effects(runs, est, ci_level),
        "pooled": _pooled(est, label_names, label_of_run, ci_level, df_method),
        "contrasts": _contrasts(est, label_names, label_of_run, ci_level, alpha, df_method),
    }
    tables["rank_stability"], tables["concordance"] = _rank_tables(tables["pooled"], est, schema, label_names,
                                                                   label_of_run, rank_by)
    # computed in fractions; held, like analyze()'s tables, in % and percentage points (the specs' units)
    tables = {name: in_table_units(name, validate_table(name, frame, method="study")) for name, frame in tables.items()}
    notes = list(schema.notes)
    for label in label_names:
        if int((label_of_run == label_names.index(label)).sum()) < 2:
            notes.append(f"label {label} has one run: its intervals hold for new identities, not for a new training seed")
    settings = {"alpha": alpha, "ci_level": ci_level, "n_bootstrap": n_bootstrap, "seed": seed, "rank_by": rank_by,
                "df_method": df_method,
                "labels": label_names, "groups": list(schema.groups), "families": {k: list(v) for k, v in schema.families.items()},
                "quantities": {q.name: q.meaning for q in quantities.values()}}
    runs_info = [{"run": i, "label": r.label, "seed": r.seed, "path": r.path, "checkpoint": r.checkpoint,
                  "sha256": r.trace.sha256, "schema_version": r.trace.schema_version,
                  "dataset": r.trace.dataset, "attribute_schema": r.trace.schema.name} for i, r in enumerate(runs)]
    return StudyResults(tables, settings, notes, runs_info)


def _runs_table(runs, est) -> pd.DataFrame:
    rows = []
    for i, run in enumerate(runs):
        d = run.trace.data
        names = d.condition_name.tolist()
        oracle = float(d.mAP[names.index("oracle")]) if "oracle" in names else np.nan
        rows.append({"run": i, "label": run.label, "seed": str(run.seed), "path": run.path,
                     "checkpoint": run.checkpoint[:12], "test_set": run.fingerprint, "n_ids": int(est.n_ids[i]),
                     "n_queries": run.n_valid, "oracle_map": oracle})
    return pd.DataFrame(rows)


def _run_effects(runs, est, ci_level) -> pd.DataFrame:
    import warnings

    from analysis.stats.resampling import percentile_interval

    rows = []
    for i, run in enumerate(runs):
        with warnings.catch_warnings():  # unavailable columns are all NaN by design
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = percentile_interval(est.replicates[i], ci_level)
            se = np.nanstd(est.replicates[i], axis=0, ddof=1)
        for k, (level, item, quantity) in enumerate(est.keys):
            ok = bool(est.available[i, k])
            rows.append({"label": run.label, "seed": str(run.seed), "run": i, "level": level, "item": item,
                         "quantity": quantity, "estimate": est.estimate[i, k] if ok else np.nan,
                         "se": se[k] if ok else np.nan, "ci_low": low[k] if ok else np.nan,
                         "ci_high": high[k] if ok else np.nan, "n_ids": int(est.n_ids[i]), "unit": UNIT_RUN,
                         "status": OK if ok else UNAVAILABLE})
    return pd.DataFrame(rows)


def _pooled(est, label_names, label_of_run, ci_level, df_method) -> pd.DataFrame:
    rows = []
    for k, (level, item, quantity) in enumerate(est.keys):
        cov = est.covariance(k)
        for li, label in enumerate(label_names):
            runs = np.flatnonzero((label_of_run == li) & est.available[:, k])
            base = {"label": label, "level": level, "item": item, "quantity": quantity, "k": int(runs.size),
                    "unit": UNIT_POOLED}
            if runs.size == 0:
                rows.append({**base, "status": UNAVAILABLE})
                continue
            theta, sub = est.estimate[runs, k], cov[np.ix_(runs, runs)]
            combined = combination(theta, sub, np.zeros(runs.size, int), {0: 1.0}, int(est.n_ids[runs].min()), ci_level,
                                   df_method)
            tau = between_seed_variance(theta, sub, ci_level)
            rows.append({**base, **{c: combined[c] for c in ("estimate", "se", "df", "ci_low", "ci_high",
                                                               "var_seed", "var_identity", "seed_valid")},
                         "seed_sd": float(np.std(theta, ddof=1)) if runs.size > 1 else np.nan,
                         "tau2": tau["tau2"], "tau2_low": tau["tau2_low"], "tau2_high": tau["tau2_high"],
                         "status": OK if np.isfinite(combined["se"]) else NOT_ESTIMABLE})
    return pd.DataFrame(rows)


def _contrasts(est, label_names, label_of_run, ci_level, alpha, df_method) -> pd.DataFrame:
    rows = []
    for a, b in combinations(range(len(label_names)), 2):
        for k, (level, item, quantity) in enumerate(est.keys):
            base = {"label_a": label_names[a], "label_b": label_names[b], "level": level, "item": item,
                    "quantity": quantity, "unit": UNIT_POOLED}
            runs = np.flatnonzero(np.isin(label_of_run, [a, b]) & est.available[:, k])
            labels_present = set(label_of_run[runs].tolist())
            if labels_present != {a, b}:
                rows.append({**base, "p": np.nan, "status": UNAVAILABLE})
                continue
            cov = est.covariance(k)[np.ix_(runs, runs)]
            result = combination(est.estimate[runs, k], cov, label_of_run[runs], {a: 1.0, b: -1.0},
                                 int(est.n_ids[runs].min()), ci_level, df_method)
            rows.append({**base, **{c: result[c] for c in ("estimate", "se", "df", "ci_low", "ci_high", "statistic",
                                                           "p", "seed_valid")},
                         "status": OK if np.isfinite(result["p"]) else NOT_ESTIMABLE})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return add_corrections(frame, alpha, by=["label_a", "label_b", "level", "quantity"])


def _rank_tables(pooled, est, schema, label_names, label_of_run, rank_by):
    columns = [k for k, key in enumerate(est.keys) if key[0] == "group" and key[2] == rank_by]
    groups = [est.keys[k][1] for k in columns]
    stability, concordance = [], []
    for li, label in enumerate(label_names):
        runs = np.flatnonzero(label_of_run == li)
        values = est.estimate[np.ix_(runs, columns)]
        if not np.all(np.isfinite(values)):
            concordance.append({"label": label, "k": int(runs.size), "n_groups": len(groups), "status": UNAVAILABLE})
            continue
        ranks = np.stack([_rank_loss(v) for v in values])
        mine = pooled[(pooled["label"] == label) & (pooled["level"] == "group") & (pooled["quantity"] == rank_by)]
        pooled_rank = _rank_loss(mine.set_index("item").loc[groups, "estimate"].to_numpy(dtype=float))
        for j, g in enumerate(groups):
            stability.append({"label": label, "group": g, "family": schema.family_of[g], "quantity": rank_by,
                              "pooled_rank": pooled_rank[j], "rank_low": ranks[:, j].min(), "rank_high": ranks[:, j].max(),
                              "median_rank": float(np.median(ranks[:, j])), "top3_share": float(np.mean(ranks[:, j] <= TOP)),
                              "k": int(runs.size)})
        w = kendalls_w(ranks)
        concordance.append({"label": label, "kendall_w": w["w"], "chi2": w["chi2"], "df": w["df"], "p": w["p"],
                            "k": int(runs.size), "n_groups": len(groups),
                            "status": OK if np.isfinite(w["w"]) else NOT_ESTIMABLE})
    stability_frame = pd.DataFrame(stability)
    if not stability_frame.empty:
        stability_frame = stability_frame.sort_values(["label", "pooled_rank"], kind="stable").reset_index(drop=True)
    return stability_frame, pd.DataFrame(concordance)
