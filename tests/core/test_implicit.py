"""Implicit feedback (mfspark.core.implicit) and nonnegative implicit factors in the block
solver, against the dense pure-NumPy oracle of mfspark.core.reference."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.core import reference
from mfspark.core.block import solve_block
from mfspark.core.implicit import confidence_terms
from mfspark.core.nnls import kkt_violation
from mfspark.core.objective import Objective
from mfspark.core.solvers import SolveError
from mfspark.core.state import init_factors

from conftest import signed_ratings


def test_confidence_and_preference_follow_mllib():
    extra, target = confidence_terms(np.array([-2.0, 0.0, 0.5, 3.0]), alpha=2.0)
    np.testing.assert_array_equal(extra, [4.0, 0.0, 1.0, 6.0])  # c - 1 = alpha |r|
    np.testing.assert_array_equal(target, [0.0, 0.0, 2.0, 7.0])  # c p, p = [r > 0]


@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize("reg_scale,lam", [("count", 0.1), ("none", 1.5)])
def test_block_equals_dense_solve(reg_scale, lam, biases, row_loop):
    """Each row's solution and data term equal the dense solve over every column; with
    biases, [x_u; b_u] against [y_i, 1] and the targets p - c_i of all columns."""
    users, items, ratings = signed_ratings(30, 20, 0.25, seed=0)
    Y = init_factors(20, 4, seed=1)
    c = np.random.default_rng(2).normal(0.0, 0.3, 20) if biases else np.zeros(20)
    sol = solve_block(users, items, ratings, Y, c, 0.7,
                      Objective(lam, reg_scale, biases=biases, alpha=3.0), max_gather=40)
    P, C = reference.implicit_dense(users, items, ratings, 30, 20, 3.0)
    X, b = reference._implicit_half_step(P, C, Y, lam, reg_scale, c if biases else None)
    np.testing.assert_allclose(sol.factors, X[sol.rows], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.bias, b[sol.rows], rtol=1e-9, atol=1e-12)
    assert np.any(sol.bias != 0) if biases else np.all(sol.bias == 0)
    loss = np.sum(C * (P - X @ Y.T - b[:, None] - c[None, :]) ** 2, axis=1)
    np.testing.assert_allclose(sol.sse, loss[sol.rows], rtol=1e-9)  # mu (0.7) is ignored


@pytest.mark.parametrize("biases", [False, True])
def test_nonnegative_implicit_block_satisfies_kkt(biases, row_loop):
    users, items, ratings = signed_ratings(30, 20, 0.25, seed=2)
    Y = init_factors(20, 5, seed=3)
    # item biases around 0.5: some rows' free biases come out negative
    c = np.random.default_rng(4).normal(0.5, 0.3, 20) if biases else np.zeros(20)
    lam, alpha = 0.1, 2.0
    sol = solve_block(users, items, ratings, Y, c, 0.0,
                      Objective(lam, biases=biases, nonnegative=True, alpha=alpha))
    assert np.all(sol.factors >= 0) and np.any(sol.factors == 0)
    if biases:  # the bias stays free
        assert np.any(sol.bias < 0)
    P, C = reference.implicit_dense(users, items, ratings, 30, 20, alpha)
    Yt = np.hstack([Y, np.ones((20, 1))]) if biases else Y
    free = np.arange(Yt.shape[1]) == 5
    for n, u in enumerate(sol.rows):  # dense system of the row, every column
        A = (Yt.T * C[u]) @ Yt + lam * np.sum(P[u] > 0) * np.eye(Yt.shape[1])
        b = (Yt.T * C[u]) @ (P[u] - c)
        w = np.r_[sol.factors[n], sol.bias[n]] if biases else sol.factors[n]
        assert kkt_violation(A[None], b[None], w[None], free=free)[0] < 1e-9


def test_singular_implicit_row_is_named(row_loop):
    # alpha = 0 and no positive value: lam_u = 0, and Y^T Y of a rank-1 Y is singular
    Y = np.ones((3, 2))
    with pytest.raises(SolveError, match="not positive definite") as err:
        solve_block(np.array([4, 4]), np.array([0, 1]), np.array([-1.0, 0.0]), Y,
                    np.zeros(3), 0.0, Objective(0.1, biases=False, alpha=0.0))
    if row_loop == "compiled":
        assert "row 4, 2 ratings" in str(err.value)


def test_gather_budget_smaller_than_a_row_gives_the_same_systems(row_loop):
    users, items, ratings = signed_ratings(12, 40, 0.6, seed=8)
    Y = init_factors(40, 3, seed=2)
    args = (users, items, ratings, Y, np.zeros(40), 0.0, Objective(0.1, biases=False, alpha=2.0))
    big = solve_block(*args)
    tiny = solve_block(*args, max_gather=7)  # 2 ratings per slice
    np.testing.assert_allclose(tiny.factors, big.factors, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(tiny.sse, big.sse, rtol=1e-10)


@pytest.mark.parametrize("biases", [False, True])
def test_conjugate_gradient_block_decreases_each_row_and_converges(biases, row_loop):
    """cg_steps: a few steps from the previous factors (and biases) lower every row's
    quadratic (never raise it), the loss is that of the approximate solution, and K (+ 1)
    steps are the exact solve; the compiled loop and the NumPy stack give the same
    iterates."""
    users, items, ratings = signed_ratings(30, 20, 0.25, seed=5)
    Y, lam, alpha = init_factors(20, 4, seed=6), 0.1, 2.0
    c = np.random.default_rng(8).normal(0.0, 0.3, 20) if biases else np.zeros(20)
    Yt = np.hstack([Y, np.ones((20, 1))]) if biases else Y
    k1 = Yt.shape[1]
    previous = init_factors(30, k1, seed=7)
    P, C = reference.implicit_dense(users, items, ratings, 30, 20, alpha)
    args = (users, items, ratings, Y, c, 0.0)
    exact = solve_block(*args, Objective(lam, biases=biases, alpha=alpha))
    two = solve_block(*args, Objective(lam, biases=biases, alpha=alpha, cg_steps=2),
                      previous=previous)
    full = solve_block(*args, Objective(lam, biases=biases, alpha=alpha, cg_steps=k1),
                       previous=previous)
    unknowns = lambda s: np.column_stack([s.factors, s.bias]) if biases else s.factors  # noqa
    np.testing.assert_allclose(unknowns(full), unknowns(exact), rtol=1e-8, atol=1e-10)
    assert np.abs(unknowns(two) - unknowns(exact)).max() > 1e-4  # not the solution yet
    for n, u in enumerate(two.rows):
        A = (Yt.T * C[u]) @ Yt + lam * np.sum(P[u] > 0) * np.eye(k1)
        b = (Yt.T * C[u]) @ (P[u] - c)
        f = lambda x: 0.5 * x @ A @ x - b @ x  # noqa: E731
        assert f(unknowns(two)[n]) <= f(previous[u]) + 1e-12
        assert f(unknowns(full)[n]) <= f(unknowns(two)[n]) + 1e-12
        loss = np.sum(C[u] * (P[u] - c - Yt @ unknowns(two)[n]) ** 2)
        assert two.sse[n] == pytest.approx(loss, rel=1e-9)
    np.testing.assert_allclose(unknowns(two), reference_cg(users, items, ratings, Yt, c,
                                                           previous, lam, alpha, 2),
                               rtol=1e-9, atol=1e-12)


def reference_cg(users, items, ratings, Y, c, previous, lam, alpha, steps):
    """Textbook conjugate gradient, one dense row at a time (targets ``p - c``)."""
    P, C = reference.implicit_dense(users, items, ratings, len(previous), len(Y), alpha)
    out = np.array(previous, dtype=float)
    for u in range(len(previous)):
        A = (Y.T * C[u]) @ Y + lam * np.sum(P[u] > 0) * np.eye(Y.shape[1])
        x = out[u]
        r = (Y.T * C[u]) @ (P[u] - c) - A @ x
        p = r.copy()
        for _ in range(steps):
            a = (r @ r) / (p @ A @ p)
            x = x + a * p
            r_next = r - a * (A @ p)
            p = r_next + (r_next @ r_next) / (r @ r) * p
            r = r_next
        out[u] = x
    return out
