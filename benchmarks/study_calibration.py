"""Calibration of the study statistics (``analysis.study``): seeds as replicates, identities as the unit.

Two checks, each against a truth the simulation plants::

    python -m benchmarks.study_calibration            # about 2-4 minutes on a 2-core CPU
    python -m benchmarks.study_calibration --quick    # fewer replications

1. **Between-seed variance interval** (Q-profile of :func:`analysis.stats.metaanalysis.between_seed_variance`).
   Per replication, ``k`` runs of one label are evaluated on identity-level data: identity ``i``
   of run ``r`` has effect ``mu + u_r + d_i + d_ir`` (``u_r ~ N(0, tau^2)`` the seed's deviation,
   ``d_i`` shared by every run when the test set is shared, ``d_ir`` the run's own identity
   deviation) and each query adds noise. The estimand of run ``r`` is ``mu + u_r`` (the mean over
   new identities), so ``tau^2`` is the truth the interval must cover. Runs are resampled exactly
   as the study resamples them (:mod:`analysis.stats.resampling`, one identity-weight matrix per test
   set). Coverage must lie in 92–98 %; the pooled-effect interval's coverage of ``mu`` is shown too.
2. **Label contrasts on simulated traces** (:func:`analysis.simulation.study.simulate_study`, the whole
   ``analysis.study`` path): two labels with the same planted effects except one group; the share of
   equal groups whose contrast is rejected (raw and Holm family-wise) and the power on the planted one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.stats.metaanalysis import between_seed_variance, combination
from analysis.stats.resampling import identity_sums, identity_weights

SETTINGS = (
    # (k seeds, tau, shared test set)
    (3, 0.02, True),
    (5, 0.02, True),
    (3, 0.02, False),
    (5, 0.01, False),
)


def one_label(rng, *, k: int, tau: float, shared: bool, mu: float = -0.05, n_ids: int = 150, queries: int = 4,
              identity_sd: float = 0.03, run_identity_sd: float = 0.01, query_sd: float = 0.1, n_bootstrap: int = 400):
    """Run estimates, their identity covariance and the truth of one simulated label."""
    u = rng.normal(0.0, tau, size=k)
    pid = np.repeat(np.arange(n_ids), queries)
    shared_d = rng.normal(0.0, identity_sd, size=n_ids)
    theta, replicates = [], []
    weights = identity_weights(n_ids, n_bootstrap, int(rng.integers(1 << 30)))
    for r in range(k):
        d = shared_d if shared else rng.normal(0.0, identity_sd, size=n_ids)
        own = rng.normal(0.0, run_identity_sd, size=n_ids)
        delta = mu + u[r] + (d + own)[pid] + rng.normal(0.0, query_sd, size=pid.size)
        sums = identity_sums(delta, pid)
        w = weights if shared else identity_weights(n_ids, n_bootstrap, int(rng.integers(1 << 30)))
        theta.append(sums.estimate[0])
        replicates.append(sums.resample(w)[:, 0])
    theta = np.asarray(theta)
    stacked = np.stack(replicates, axis=1)
    cov = np.cov(stacked, rowvar=False) if shared else np.diag(stacked.var(0, ddof=1))
    return theta, cov, n_ids


def variance_coverage(reps: int, seed: int = 0) -> list[dict]:
    rows = []
    for k, tau, shared in SETTINGS:
        rng = np.random.default_rng([seed, k, int(tau * 1e4), int(shared)])
        cover_tau = cover_mu = cover_conservative = 0
        start = time.perf_counter()
        for _ in range(reps):
            theta, cov, n_ids = one_label(rng, k=k, tau=tau, shared=shared)
            t = between_seed_variance(theta, cov, 0.95)
            cover_tau += t["tau2_low"] <= tau * tau <= t["tau2_high"]
            c = combination(theta, cov, np.zeros(k, int), {0: 1.0}, n_ids, 0.95)
            cover_mu += c["ci_low"] <= -0.05 <= c["ci_high"]
            c = combination(theta, cov, np.zeros(k, int), {0: 1.0}, n_ids, 0.95, df_method="conservative")
            cover_conservative += c["ci_low"] <= -0.05 <= c["ci_high"]
        rows.append({"k": k, "tau": tau, "shared_test_set": shared, "reps": reps,
                     "tau2_coverage": cover_tau / reps, "mu_coverage": cover_mu / reps,
                     "mu_coverage_conservative": cover_conservative / reps,
                     "seconds": time.perf_counter() - start})
    return rows


def contrast_calibration(reps: int, seed: int = 0) -> dict:
    from analysis.simulation.study import simulate_study
    from analysis.studies.study import study

    equal = dict(gender=0.6, upcolour=0.8, hat=0.2)
    raw = fw = power = tested = 0
    start = time.perf_counter()
    for rep in range(reps):
        traces = simulate_study({"A": {**equal, "downcolour": 1.2}, "B": {**equal, "downcolour": 0.2}}, n_seeds=3,
                                seed_sd=0.1, effect_sd=0.3, n_ids=100, kinds=("oracle", "drop"), seed=seed + rep)
        c = study(traces, n_bootstrap=300, seed=rep).table("contrasts")
        c = c[(c.level == "group") & (c.quantity == "drop")]
        null = c[c["item"] != "downcolour"]
        raw += int((null["p"] < 0.05).sum())
        tested += len(null)
        fw += int(null["reject_holm"].any())
        power += int(c.loc[c["item"] == "downcolour", "reject_holm"].iloc[0]
                     and c.loc[c["item"] == "downcolour", "estimate"].iloc[0] < 0)
    return {"reps": reps, "null_tests": tested, "raw_rejection": raw / tested, "holm_familywise": fw / reps,
            "power_sign_right": power / reps, "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer replications (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    reps, study_reps = (200, 10) if args.quick else (1000, 60)
    ok = True
    print("between-seed variance (Q-profile) and pooled-effect coverage, nominal 95 %")
    print("| k seeds | tau | shared test set | reps | tau² coverage | pooled-effect coverage (Satterthwaite df) "
          "| pooled-effect coverage (conservative df) | seconds |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in variance_coverage(reps, args.seed):
        print(f"| {r['k']} | {r['tau']} | {r['shared_test_set']} | {r['reps']} | {100 * r['tau2_coverage']:.1f} % | "
              f"{100 * r['mu_coverage']:.1f} % | {100 * r['mu_coverage_conservative']:.1f} % | {r['seconds']:.1f} |")
        ok &= 0.92 <= r["tau2_coverage"] <= 0.98 or args.quick
    c = contrast_calibration(study_reps, args.seed)
    print("\nlabel contrasts on simulated traces (3 seeds per label, identity- and seed-varying effects)")
    print(f"equal groups: raw rejection {100 * c['raw_rejection']:.1f} % of {c['null_tests']} tests at α = 0.05; "
          f"Holm family-wise {100 * c['holm_familywise']:.1f} % of {c['reps']} studies; "
          f"planted group rejected with the right sign in {100 * c['power_sign_right']:.1f} %; {c['seconds']:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
