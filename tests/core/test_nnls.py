"""Batched NNLS (mfspark.core.nnls) and the nonnegative explicit block solver against
oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mfspark.core.nnls import kkt_violation, nnls_solve
from mfspark.core.block import solve_block
from mfspark.core.objective import Objective
from mfspark.core.solvers import SolveError, cholesky_solve

from conftest import random_ratings


def problems(n, k, seed, ridge=0.1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3 * k, k))
    y = rng.standard_normal((n, 3 * k))
    return (np.einsum("rik,ril->rkl", X, X) + ridge * np.eye(k),
            np.einsum("rik,ri->rk", X, y))


def brute_force(A, b, free):
    """The minimum of 1/2 w'Aw - b'w over w >= 0 (off free) by trying every passive set."""
    k = len(b)
    best, arg = np.inf, None
    for mask in itertools.product([False, True], repeat=k):
        P = np.array(mask) | free
        w = np.zeros(k)
        w[P] = np.linalg.solve(A[np.ix_(P, P)], b[P])
        if np.all(w[~free] >= 0):
            f = 0.5 * w @ A @ w - b @ w
            if f < best:
                best, arg = f, w
    return arg


@pytest.mark.parametrize("free_last", [False, True])
def test_nnls_equals_brute_force(free_last):
    A, b = problems(60, 5, seed=1)
    free = np.array([False] * 4 + [free_last])
    w = nnls_solve(A, b, free=free)
    for r in range(len(b)):
        np.testing.assert_allclose(w[r], brute_force(A[r], b[r], free), atol=1e-10)
    assert np.all(w[:, ~free] >= 0)
    assert np.any(w[:, ~free] == 0)  # the bound is active somewhere: the test has teeth


def test_kkt_holds_at_solution_and_fails_elsewhere():
    A, b = problems(200, 8, seed=2)
    w = nnls_solve(A, b)
    assert kkt_violation(A, b, w).max() < 1e-9
    clipped = np.maximum(cholesky_solve(A, b), 0.0)  # feasible but (usually) not optimal
    assert kkt_violation(A, b, clipped).max() > 1e-3


def test_interior_solution_is_the_unconstrained_one_and_warm_start_agrees():
    A, b = problems(100, 6, seed=3)
    b = np.einsum("rkl,rl->rk", A, np.abs(b) + 0.5)  # unconstrained solution > 0
    np.testing.assert_allclose(nnls_solve(A, b), cholesky_solve(A, b), rtol=1e-10)
    A, b = problems(100, 6, seed=4)
    cold = nnls_solve(A, b)
    np.testing.assert_allclose(nnls_solve(A, b, start=cold), cold, atol=1e-12)
    np.testing.assert_allclose(nnls_solve(A, b, start=np.ones_like(b)), cold, atol=1e-10)


def test_round_limit_is_reported():
    A, b = problems(20, 6, seed=5)
    with pytest.raises(SolveError, match="did not converge"):
        nnls_solve(A, b, max_rounds=0)


@pytest.mark.parametrize("biases", [True, False])
def test_nonnegative_block_satisfies_kkt_of_its_least_squares(biases, row_loop):
    users, items, ratings = random_ratings(30, 20, 0.3, seed=6)
    rng = np.random.default_rng(7)
    V, c, mu, lam = np.abs(rng.standard_normal((20, 4))), rng.standard_normal(20), 3.0, 0.2
    sol = solve_block(users, items, ratings, V, c, mu,
                      Objective(lam, biases=biases, nonnegative=True), max_gather=64)
    assert np.all(sol.factors >= 0) and np.any(sol.factors == 0)
    for n, r in enumerate(sol.rows):  # each row's system rebuilt plainly, one at a time
        sel = users == r
        X = np.hstack([V[items[sel]], np.ones((sel.sum(), 1))]) if biases else V[items[sel]]
        y = ratings[sel] - c[items[sel]] - mu
        A = X.T @ X + lam * sel.sum() * np.eye(X.shape[1])
        w = np.r_[sol.factors[n], sol.bias[n]] if biases else sol.factors[n]
        free = np.array([False] * 4 + [True] * biases)
        assert kkt_violation(A[None], (X.T @ y)[None], w[None], free)[0] < 1e-9
        assert sol.sse[n] == pytest.approx(np.sum((y - X @ w) ** 2), rel=1e-9, abs=1e-9)
