"""CR2 cluster-robust errors and their degrees of freedom against reference computations.

The references below build the full ``N x N`` hat matrix and the matrix of each quadratic form
explicitly (Bell & McCaffrey 2002; Imbens & Kolesar 2016; Pustejovsky & Tipton 2018), on designs
small enough for that; the module under test never forms them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, stats
from scipy.special import expit

from analysis.methods.query.glm import cr2_inference
from analysis.stats.cluster_robust import cr2, glm_working_parts
from analysis.stats.glm import fit_glm

SIZES = [1, 2, 3, 3, 4, 5, 2]          # seven unequal identities


def _design(seed: int = 0):
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(len(SIZES)), SIZES)
    n = clusters.size
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    y = X @ [1.0, 0.5, -0.3] + rng.normal(size=n) + rng.normal(size=len(SIZES))[clusters]
    return X, y, clusters


def _reference(Xw: np.ndarray, e: np.ndarray, clusters: np.ndarray):
    """Explicit CR2 covariance and each coefficient's quadratic-form matrix ``G`` (N x clusters)."""
    n, p = Xw.shape
    M = np.linalg.inv(Xw.T @ Xw)
    H = Xw @ M @ Xw.T
    I = np.eye(n)
    labels = np.unique(clusters)
    A = {g: np.real(linalg.sqrtm(np.linalg.inv(I[np.ix_(clusters == g, clusters == g)] -
                                               H[np.ix_(clusters == g, clusters == g)]))) for g in labels}
    meat = np.zeros((p, p))
    for g in labels:
        r = clusters == g
        u = Xw[r].T @ A[g] @ e[r]
        meat += np.outer(u, u)
    G = []
    for c in np.eye(p):
        cols = np.zeros((n, len(labels)))
        for k, g in enumerate(labels):
            r = clusters == g
            block = np.zeros(n)
            block[r] = A[g] @ Xw[r] @ M @ c
            cols[:, k] = (I - H) @ block
        G.append(cols)
    return M @ meat @ M, G


def test_cr2_of_ols_equals_the_explicit_formula_with_satterthwaite_df():
    X, y, clusters = _design()
    e = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    robust = cr2(X, e, clusters)
    cov, G = _reference(X, e, clusters)
    np.testing.assert_allclose(robust.cov, cov, rtol=1e-10, atol=1e-14)
    for j, Gj in enumerate(G):
        lam = np.linalg.eigvalsh(Gj.T @ Gj)
        assert robust.satterthwaite_df(np.eye(3)[j]) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-10)
        assert 1 < robust.satterthwaite_df(np.eye(3)[j]) < len(SIZES)


def test_cr2_with_one_query_per_identity_is_statsmodels_hc2():
    import statsmodels.api as sm

    X, y, _ = _design(1)
    fit = sm.OLS(y, X).fit(cov_type="HC2")
    robust = cr2(X, fit.resid, np.arange(len(y)))
    np.testing.assert_allclose(robust.cov, fit.cov_params(), rtol=1e-10)


def _response_scale_reference(X: np.ndarray, e: np.ndarray, phi: np.ndarray, dmu: np.ndarray, clusters: np.ndarray):
    """CR2 of a GLM written on the response scale (Pustejovsky & Tipton 2018, clubSandwich's ``glm``
    form): ``U = (dmu/deta) X``, weights ``W = Phi^-1``, response residuals ``e``,
    ``A_g = Phi^1/2 [Phi^1/2 (Phi - U M U') Phi^1/2]^-1/2 Phi^1/2``; and each coefficient's
    quadratic-form matrix in standard normal errors ``z`` (``epsilon = Phi^1/2 z``)."""
    n, p = X.shape
    U = dmu[:, None] * X
    W = np.diag(1.0 / phi)
    M = np.linalg.inv(U.T @ W @ U)
    labels = np.unique(clusters)
    E = {}
    for g in labels:
        r = clusters == g
        root = np.diag(np.sqrt(phi[r]))
        inner = root @ (np.diag(phi[r]) - U[r] @ M @ U[r].T) @ root
        A = root @ np.real(linalg.sqrtm(np.linalg.inv(inner))) @ root
        E[g] = U[r].T @ W[np.ix_(r, r)] @ A                              # (p, n_g)
    meat = sum(np.outer(E[g] @ e[clusters == g], E[g] @ e[clusters == g]) for g in labels)
    residual_maker = np.eye(n) - U @ M @ U.T @ W                        # e = (I - U M U' W) epsilon
    G = []
    for c in np.eye(p):
        cols = np.zeros((n, len(labels)))
        for k, g in enumerate(labels):
            row = np.zeros(n)
            row[clusters == g] = c @ M @ E[g]
            cols[:, k] = np.sqrt(phi) * (residual_maker.T @ row)
        G.append(cols)
    return M @ meat @ M, G


def test_cr2_of_a_logistic_glm_takes_the_adjustment_on_the_response_scale():
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(8), [3, 5, 2, 6, 4, 4, 7, 3])
    X = pd.DataFrame({"a": rng.integers(0, 2, clusters.size).astype(float), "b": rng.normal(size=clusters.size)})
    y = (rng.random(clusters.size) < expit(0.3 + 0.8 * X["a"] - 0.5 * X["b"]
                                           + rng.normal(0, 0.7, 8)[clusters])).astype(float)
    result = fit_glm(y, X, family="binomial", clusters=clusters, min_clusters=2)
    Xa = np.column_stack([np.ones(len(y)), X.to_numpy()])
    mu = expit(Xa @ np.asarray(result.fit.params))
    variance = mu * (1 - mu)
    cov, G = _response_scale_reference(Xa, y - mu, variance, variance, clusters)
    inference = cr2_inference(result, clusters, 0.95)
    np.testing.assert_allclose(inference["cr2"].cov, cov, rtol=1e-8)
    np.testing.assert_allclose(inference["se"], np.sqrt(np.diag(cov)), rtol=1e-8)
    df = np.array([np.linalg.eigvalsh(g.T @ g).sum() ** 2 / (np.linalg.eigvalsh(g.T @ g) ** 2).sum() for g in G])
    np.testing.assert_allclose(inference["df"], df, rtol=1e-8)
    t = stats.t.ppf(0.975, df)
    np.testing.assert_allclose(inference["ci_high"] - np.asarray(result.fit.params), t * inference["se"], rtol=1e-10)
    # the weights vary within identities (covariate b), so the working-scale adjustment differs
    Xw, e, response_variance = glm_working_parts(Xa, y, mu)
    working_scale = cr2(Xw, e, clusters).cov
    assert np.max(np.abs(working_scale / cov - 1)) > 1e-3
    # ... and agrees with the response scale when the weights are constant within each identity
    constant = np.full_like(mu, 0.3)
    Xw, e, response_variance = glm_working_parts(Xa, y, constant)
    np.testing.assert_allclose(cr2(Xw, e, clusters, response_variance=response_variance).cov,
                               cr2(Xw, e, clusters).cov, rtol=1e-12)


def test_cr2_of_a_binomial_glm_with_trials_counts_every_trial():
    rng = np.random.default_rng(11)
    clusters = np.repeat(np.arange(9), [2, 3, 4, 2, 5, 3, 2, 4, 3])
    X = pd.DataFrame({"b": rng.normal(size=clusters.size)})
    trials = rng.integers(1, 40, clusters.size).astype(float)
    successes = rng.binomial(trials.astype(int), expit(-0.4 + 0.6 * X["b"] + rng.normal(0, 0.5, 9)[clusters])).astype(float)
    result = fit_glm(successes, X, family="binomial", trials=trials, clusters=clusters, min_clusters=2)
    Xa = np.column_stack([np.ones(len(successes)), X.to_numpy()])
    mu = expit(Xa @ np.asarray(result.fit.params))
    cov, G = _response_scale_reference(Xa, successes / trials - mu, mu * (1 - mu) / trials, mu * (1 - mu), clusters)
    inference = cr2_inference(result, clusters, 0.95)
    np.testing.assert_allclose(inference["cr2"].cov, cov, rtol=1e-8)
    df = np.array([np.linalg.eigvalsh(g.T @ g).sum() ** 2 / (np.linalg.eigvalsh(g.T @ g) ** 2).sum() for g in G])
    np.testing.assert_allclose(inference["df"], df, rtol=1e-8)


def test_hotelling_test_of_two_coefficients_matches_the_explicit_moments():
    X, y, clusters = _design(2)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    robust = cr2(X, y - X @ beta, clusters)
    contrasts = np.eye(3)[:, [1, 2]]
    _, G = _reference(X, y - X @ beta, clusters)
    Gs = [G[1], G[2]]
    omega = np.array([[np.trace(Gs[s] @ Gs[t].T) for t in range(2)] for s in range(2)])
    root = np.real(linalg.sqrtm(np.linalg.inv(omega)))
    rotated = [root[a, 0] * Gs[0] + root[a, 1] * Gs[1] for a in range(2)]
    P = {(s, t): rotated[s].T @ rotated[t] for s in range(2) for t in range(2)}
    # variance of each entry of the normalised CR2 estimator under the working model
    total = sum(np.sum(P[s, t] * P[t, s]) + np.sum(P[s, s] * P[t, t]) for s in range(2) for t in range(2))
    nu = 2 * 3 / total
    test = robust.hotelling(beta, contrasts)
    assert test["df2"] == pytest.approx(nu - 1, rel=1e-9)
    Q = beta[1:] @ np.linalg.inv(robust.cov[1:, 1:]) @ beta[1:]
    assert test["F"] == pytest.approx((nu - 1) / (2 * nu) * Q, rel=1e-9)
    assert test["p"] == pytest.approx(stats.f.sf(test["F"], 2, nu - 1), rel=1e-9)


def test_hotelling_of_one_coefficient_is_the_satterthwaite_t_test():
    X, y, clusters = _design(3)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    robust = cr2(X, y - X @ beta, clusters)
    test = robust.hotelling(beta, np.eye(3)[:, [1]])
    df = robust.satterthwaite_df(np.eye(3)[1])
    t = beta[1] / robust.se[1]
    assert test["F"] == pytest.approx(t**2) and test["df2"] == pytest.approx(df)
    assert test["p"] == pytest.approx(2 * stats.t.sf(abs(t), df))
