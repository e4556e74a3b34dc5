"""How much a trace in bf16 (or TF32) differs from the fp32 trace of the same trained checkpoint.

Traces one checkpoint twice (``--precision`` each) on its own dataset and compares, per condition
and per query:

- ΔmAP per condition (other − fp32), and the per-query |ΔAP| distribution (p50 / p99 / max over
  every valid query of every condition);
- agreement of the first-match rank and of the top-k lists;
- each group's Δ of the analysis (``drop:<g>``, ``counterfactual:<g>``, ``fixed:<g>`` minus
  ``oracle``, in mean AP over queries) in both traces, and how far it moved against its
  identity-bootstrap standard error (``analysis.stats.resampling.cluster_bootstrap``, resampling
  identities) in the fp32 trace: ``|Δ_other − Δ_fp32| / SE``;
- the consensus ranking of the groups (mean of each group's rank by Δ over the drop and
  counterfactual kinds) in both traces, and whether it changed.

The rule for a default (issue 25, docs/validation.md): bf16 may become the CUDA default only if
every group's Δ moves by less than a quarter of its SE and the ranking is unchanged.

    .venv/bin/python -m benchmarks.trace_precision --ckpt runs/demo/checkpoints/last.pt [--other bf16] [--device cpu]

On a GPU with a CLIP ViT-B/16 checkpoint trained on a Market-sized synthetic world, run it with
``--device cuda --other bf16`` and again with ``--other tf32``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

KINDS = ("drop", "counterfactual", "fixed")
RANKED_KINDS = ("drop", "counterfactual")


def group_deltas(data, n_resamples: int = 1000, seed: int = 0) -> dict[tuple[str, str], tuple[float, float]]:
    """``(kind, group) -> (Δ, identity-bootstrap SE)``: mean AP of the condition minus the oracle's
    over the valid queries, the SE over resamples of the query identities."""
    from analysis.stats.resampling import cluster_bootstrap

    names = list(data.condition_name)
    oracle = data.ap[names.index("oracle")]
    valid = data.valid & np.isfinite(oracle)
    out = {}
    for c, name in enumerate(names):
        kind, _, group = name.partition(":")
        if kind not in KINDS or not group:
            continue
        delta = (data.ap[c] - oracle)[valid]
        boot = cluster_bootstrap(delta, data.query_pid[valid], n_resamples=n_resamples, seed=seed)
        out[(kind, group)] = (float(np.mean(delta)), float(np.std(boot.replicates[:, 0], ddof=1)))
    return out


def consensus_ranking(deltas: dict[tuple[str, str], tuple[float, float]]) -> list[str]:
    """Groups from most to least relied on: mean over the ranked kinds of each group's rank by Δ
    (most negative Δ = rank 1); groups missing a kind are left out."""
    from scipy.stats import rankdata

    groups = sorted({g for (k, g) in deltas if k in RANKED_KINDS})
    groups = [g for g in groups if all((k, g) in deltas for k in RANKED_KINDS)]
    if not groups:
        return []
    ranks = np.mean([rankdata([deltas[(k, g)][0] for g in groups]) for k in RANKED_KINDS], axis=0)
    return [groups[i] for i in np.lexsort((np.arange(len(groups)), ranks))]


def compare_traces(reference, other, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The comparison of two traces of the same conditions and queries (see the module docstring)."""
    if list(reference.condition_name) != list(other.condition_name):
        raise ValueError("the traces hold different conditions")
    valid = reference.valid
    d_ap = np.abs(other.ap[:, valid] - reference.ap[:, valid]).ravel()
    d_ap = d_ap[np.isfinite(d_ap)]
    ref_d, other_d = group_deltas(reference, n_resamples, seed), group_deltas(other, n_resamples, seed)
    groups = []
    for key, (delta, se) in ref_d.items():
        moved = other_d[key][0] - delta
        # a Δ that is exactly zero in every resample (a group the condition leaves as it was) has
        # no SE; it counts as unmoved when it stays zero
        ratio = abs(moved) / se if se > 0 else (0.0 if moved == 0 else float("inf"))
        groups.append({"kind": key[0], "group": key[1], "delta_fp32": delta, "delta_other": other_d[key][0],
                       "shift": moved, "se": se, "shift_over_se": ratio})
    ref_rank, other_rank = consensus_ranking(ref_d), consensus_ranking(other_d)
    return {
        "conditions": list(reference.condition_name),
        "delta_mAP": (other.mAP - reference.mAP).tolist(),
        "max_abs_delta_mAP": float(np.max(np.abs(other.mAP - reference.mAP))),
        "abs_delta_ap": {"p50": float(np.percentile(d_ap, 50)), "p99": float(np.percentile(d_ap, 99)),
                         "max": float(d_ap.max()), "queries": int(valid.sum()), "conditions": len(reference.mAP)},
        "first_match_same": float(np.mean(other.first_match_rank[:, valid] == reference.first_match_rank[:, valid])),
        "topk_same": float(np.mean(np.all(other.topk_index[:, valid] == reference.topk_index[:, valid], axis=-1))),
        "groups": groups,
        "max_shift_over_se": max((g["shift_over_se"] for g in groups), default=0.0),
        "ranking_fp32": ref_rank,
        "ranking_other": other_rank,
        "ranking_unchanged": ref_rank == other_rank,
    }


def bf16_default_allowed(comparison: dict[str, Any]) -> bool:
    """The issue's rule: every group's Δ moved by under a quarter of its SE, the ranking unchanged."""
    return comparison["max_shift_over_se"] < 0.25 and comparison["ranking_unchanged"]


def trace_at(ckpt, precision: str, device: str, conditions: str | None, batch_size: int | None):
    from mosaic import api
    from mosaic.tracing.settings import TraceSettings

    settings = TraceSettings(feature=None, precision=precision, batch_size=batch_size, progress=False)
    started = time.perf_counter()
    result = api.trace(ckpt, None, conditions=conditions, settings=settings, device=device, progress=False)
    return result.data, time.perf_counter() - started


def format_table(comparison: dict[str, Any], other: str) -> str:
    lines = [f"{other} vs fp32: {comparison['abs_delta_ap']['conditions']} conditions x "
             f"{comparison['abs_delta_ap']['queries']} valid queries",
             f"max |ΔmAP| {comparison['max_abs_delta_mAP']:.2e}; per-query |ΔAP| p50 {comparison['abs_delta_ap']['p50']:.2e} "
             f"p99 {comparison['abs_delta_ap']['p99']:.2e} max {comparison['abs_delta_ap']['max']:.2e}",
             f"first-match rank identical {100 * comparison['first_match_same']:.2f} %, top-k identical "
             f"{100 * comparison['topk_same']:.2f} %",
             f"{'kind':15s} {'group':12s} {'Δ fp32':>9s} {'Δ ' + other:>9s} {'shift':>9s} {'SE':>8s} {'|shift|/SE':>10s}"]
    for g in comparison["groups"]:
        lines.append(f"{g['kind']:15s} {g['group']:12s} {g['delta_fp32']:9.4f} {g['delta_other']:9.4f} "
                     f"{g['shift']:9.1e} {g['se']:8.4f} {g['shift_over_se']:10.3f}")
    lines.append(f"max |shift|/SE {comparison['max_shift_over_se']:.3f}; consensus ranking "
                 f"{'unchanged' if comparison['ranking_unchanged'] else 'CHANGED'}: {', '.join(comparison['ranking_fp32'])}")
    lines.append(f"rule (every |shift|/SE < 0.25 and the ranking unchanged): "
                 f"{'met' if bf16_default_allowed(comparison) else 'not met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint (.pt) or run folder")
    parser.add_argument("--other", default="bf16", choices=("bf16", "tf32"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--conditions", default=None, help="condition patterns (default: all the default kinds)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the comparison as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    reference, t_ref = trace_at(args.ckpt, "fp32", args.device, args.conditions, args.batch_size)
    other, t_other = trace_at(args.ckpt, args.other, args.device, args.conditions, args.batch_size)
    comparison = compare_traces(reference, other)
    comparison.update({"precision": args.other, "device": args.device, "seconds_fp32": t_ref, f"seconds_{args.other}": t_other})
    print(format_table(comparison, args.other))
    print(f"trace time: fp32 {t_ref:.1f} s, {args.other} {t_other:.1f} s", file=sys.stderr)
    if args.out:
        from mosaic.core.fileio import write_text_atomic

        write_text_atomic(args.out, json.dumps(comparison, indent=1))
    return comparison


if __name__ == "__main__":
    main()
