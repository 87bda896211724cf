"""The block solver against NumPy's least squares, without Spark."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.core import kernel
from mfspark.core.block import solve_block
from mfspark.core.normal import GRAM_METHODS, gram_method, normal_equations
from mfspark.core.objective import Objective
from mfspark.core.solvers import SolveError, cholesky_solve
from mfspark.core.state import init_factors

METHODS = [m for m in GRAM_METHODS if m != "auto"]


def lstsq_row(X_fixed, bias_fixed, cols, y, mu, lam_row):
    """Row solution as the ordinary least-squares problem with ridge rows appended:
    min ||[X; sqrt(lam) I] w - [y - c - mu; 0]||^2."""
    X = np.hstack([X_fixed[cols], np.ones((len(cols), 1))])
    k1 = X.shape[1]
    A = np.vstack([X, np.sqrt(lam_row) * np.eye(k1)])
    b = np.concatenate([y - bias_fixed[cols] - mu, np.zeros(k1)])
    return np.linalg.lstsq(A, b, rcond=None)[0]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reg_scale", ["none", "count"])
@pytest.mark.parametrize("rank", [0, 1, 4, 12, 30])
def test_solve_block_equals_lstsq(reg_scale, rank, method):
    rng = np.random.default_rng(rank)
    n_fixed, n_ratings = 30, 400
    fixed = rng.standard_normal((n_fixed, rank))
    fixed_bias = rng.standard_normal(n_fixed)
    rows = rng.integers(100, 140, n_ratings)  # sparse row ids, some rows absent
    cols = rng.integers(0, n_fixed, n_ratings)
    ratings = rng.uniform(1, 5, n_ratings)
    lam, mu = 0.7, 3.1
    sol = solve_block(rows, cols, ratings, fixed, fixed_bias, mu, Objective(lam, reg_scale),
                      method=method)
    assert list(sol.rows) == sorted(set(rows))
    for k, r in enumerate(sol.rows):
        sel = rows == r
        lam_row = lam * sel.sum() if reg_scale == "count" else lam
        expected = lstsq_row(fixed, fixed_bias, cols[sel], ratings[sel], mu, lam_row)
        np.testing.assert_allclose(sol.factors[k], expected[:rank], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(sol.bias[k], expected[rank], rtol=1e-9, atol=1e-11)
        resid = ratings[sel] - (fixed[cols[sel]] @ expected[:rank] + expected[rank]
                                + fixed_bias[cols[sel]] + mu)
        np.testing.assert_allclose(sol.sse[k], resid @ resid, rtol=1e-9)
        assert sol.counts[k] == sel.sum()


def test_hand_checkable_example():
    # one user, rank 1, items v = [1, 2], c = 0, mu = 0, ratings [1, 2], lambda = 1 (none):
    # X = [[1, 1], [2, 1]]; X^T X + I = [[6, 3], [3, 3]]; X^T y = [5, 3] -> w = [2/3, 1/3]
    sol = solve_block(np.array([0, 0]), np.array([0, 1]), np.array([1.0, 2.0]),
                      np.array([[1.0], [2.0]]), np.zeros(2), 0.0, Objective(1.0, "none"))
    np.testing.assert_allclose(sol.factors[0], [2 / 3], rtol=1e-12)
    np.testing.assert_allclose(sol.bias[0], 1 / 3, rtol=1e-12)
    # residuals: 1 - 1 = 0, 2 - 5/3 = 1/3
    np.testing.assert_allclose(sol.sse[0], 1 / 9, rtol=1e-12)


def test_cholesky_solve_matches_numpy():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((50, 7, 7))
    A = M @ M.transpose(0, 2, 1) + 0.1 * np.eye(7)
    b = rng.standard_normal((50, 7))
    np.testing.assert_allclose(cholesky_solve(A, b), np.linalg.solve(A, b[..., None])[..., 0],
                               rtol=1e-8, atol=1e-10)


def test_not_positive_definite_is_a_named_error():
    A = np.zeros((1, 2, 2))
    with pytest.raises(SolveError, match="not positive definite"):
        cholesky_solve(A, np.ones((1, 2)))


def test_compiled_solver_names_the_row_it_could_not_solve():
    # lambda 0: row 7 (two ratings, four unknowns) is the first singular system
    with pytest.raises(SolveError, match=r"not positive definite .*row 7, 2 ratings"):
        solve_block(np.array([7, 7, 9]), np.array([0, 1, 1]), np.array([4.0, 3.0, 5.0]),
                    np.ones((2, 3)), np.zeros(2), 3.0, Objective(0.0, "none"), method="compiled")


@pytest.mark.parametrize("method", METHODS)
def test_singular_system_is_a_named_error_in_every_method(method):
    # one rating, rank 3, lambda 0: X^T X has rank 1
    with pytest.raises(SolveError, match="not positive definite"):
        solve_block(np.array([0]), np.array([1]), np.array([4.0]), np.ones((2, 3)),
                    np.zeros(2), 3.0, Objective(0.0, "none"), method=method)


@pytest.mark.parametrize("weighted", [False, True])  # True: implicit feedback's c - 1
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("max_gather", [64, 1 << 20])  # 64: long rows are accumulated in slices
def test_normal_equations_are_exact(method, max_gather, weighted):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((1000, 5))
    y = rng.standard_normal(1000)
    w = rng.uniform(0, 3, 1000) if weighted else np.ones(1000)
    # rows need not be contiguous or cover every rating: a gap at 20..29, rating 0 unused
    start, counts = np.array([1, 30, 700]), np.array([19, 670, 300])
    cols = rng.permutation(1000)
    gram, rhs = normal_equations(X, cols, y, start, counts, max_gather, method,
                                 weight=w if weighted else None)
    for r in range(3):
        sl = slice(start[r], start[r] + counts[r])
        Xr = X[cols[sl]]
        np.testing.assert_allclose(gram[r], (Xr.T * w[sl]) @ Xr, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(rhs[r], Xr.T @ y[sl], rtol=1e-12, atol=1e-12)
        assert np.array_equal(gram[r], gram[r].T)


def test_gram_method_prefers_the_compiled_loop():
    assert kernel.available()  # Numba is a dependency: CI runs the compiled path
    assert gram_method(11, 20_000, 1 << 24) == "compiled"
    assert gram_method(101, 20_000, 1 << 24, mean_count=5.0) == "compiled"
    assert gram_method(11, 20_000, 1 << 24, "rows") == "rows"  # an explicit choice stays
    # normal_equations needs the Gram matrices themselves: the unfused choice
    assert gram_method(11, 20_000, 1 << 24, fused=False) == "sparse"
    assert gram_method(51, 20_000, 1 << 24, fused=False) == "rows"


def test_gram_method_by_rank_and_memory(monkeypatch):
    monkeypatch.setenv(kernel.KERNEL_ENV, "python")  # what runs where Numba is missing
    assert not kernel.available()
    with pytest.raises(ValueError, match="needs Numba"):
        gram_method(11, 20_000, 1 << 24, "compiled")
    assert gram_method(11, 20_000, 1 << 24) == "sparse"  # low rank: the sparse product
    assert gram_method(51, 20_000, 1 << 24) == "rows"  # high rank: syrk per row
    # rank 10: short rows (100 per row) with the sparse product, long ones (250) per row
    assert gram_method(11, 20_000, 1 << 24, mean_count=100.0) == "sparse"
    assert gram_method(11, 20_000, 1 << 24, mean_count=250.0) == "rows"
    # low rank but a fixed side whose packed outer products exceed the gather budget
    assert gram_method(11, 10_000_000, 1 << 24) == "rows"
    assert gram_method(11, 20_000, 1 << 24, "bucket") == "bucket"
    with pytest.raises(ValueError, match="gram method must be one of"):
        gram_method(11, 20, 1 << 24, "dense")


@pytest.mark.parametrize("method", METHODS)
def test_result_does_not_depend_on_block_composition(method):
    rng = np.random.default_rng(3)
    fixed, fb = rng.standard_normal((20, 6)), rng.standard_normal(20)
    rows, cols = rng.integers(0, 10, 300), rng.integers(0, 20, 300)
    ratings = rng.uniform(1, 5, 300)
    whole = solve_block(rows, cols, ratings, fixed, fb, 3.0, Objective(0.5), method=method)
    sel = rows < 5
    perm = rng.permutation(sel.sum())
    part = solve_block(rows[sel][perm], cols[sel][perm], ratings[sel][perm], fixed, fb, 3.0,
                       Objective(0.5), method=method)
    assert np.array_equal(part.factors, whole.factors[:len(part.rows)])  # bit-identical
    assert np.array_equal(part.bias, whole.bias[:len(part.rows)])


def test_init_factors_are_seeded():
    a, b = init_factors(5, 3, seed=7), init_factors(5, 3, seed=7)
    assert np.array_equal(a, b) and not np.array_equal(a, init_factors(5, 3, seed=8))


def test_penalty_weights_by_count():
    f, b, n = np.array([[1.0, 2.0]]), np.array([3.0]), np.array([4])
    assert Objective(0.5, "none").penalty(f, b, n).sum() == pytest.approx(0.5 * 14)
    assert Objective(0.5, "count").penalty(f, b, n).sum() == pytest.approx(0.5 * 4 * 14)


@pytest.mark.parametrize("reg_scale", ["none", "count"])
def test_block_penalty_is_the_rows_penalty(reg_scale):
    """Each solved row's penalty is lam_i (||u_i||^2 + b_i^2) of its new unknowns."""
    rng = np.random.default_rng(4)
    fixed, fb = rng.standard_normal((20, 3)), rng.standard_normal(20)
    rows, cols = rng.integers(0, 8, 200), rng.integers(0, 20, 200)
    objective = Objective(0.4, reg_scale)
    sol = solve_block(rows, cols, rng.uniform(1, 5, 200), fixed, fb, 3.0, objective)
    np.testing.assert_allclose(sol.penalty,
                               objective.penalty(sol.factors, sol.bias, sol.counts), rtol=1e-12)


def test_block_memory_is_bounded_whatever_the_skew():
    """One row with 200K ratings among 400K: the solver's peak allocation stays within
    :func:`block_memory_bound`, and the gather budget is what a larger setting spends."""
    import tracemalloc

    from mfspark.core.normal import block_memory_bound, gather_limit

    rng = np.random.default_rng(0)
    rows = np.concatenate([np.zeros(200_000, np.int64), np.repeat(np.arange(1, 5001), 40)])
    cols = np.concatenate([np.arange(200_000), rng.integers(0, 200_000, 200_000)])
    ratings = rng.integers(1, 11, len(rows)) / 2.0
    V, c = rng.standard_normal((200_000, 4)), np.zeros(200_000)
    peaks, solutions = {}, {}
    for mb in (1, 64):
        tracemalloc.start()
        solutions[mb] = solve_block(rows, cols, ratings, V, c, 3.0, Objective(0.1),
                                    gather_limit(mb, 4))
        peaks[mb] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peaks[mb] <= block_memory_bound(len(rows), 5001, 4, mb)
    assert peaks[1] < peaks[64]
    np.testing.assert_allclose(solutions[1].factors, solutions[64].factors, rtol=1e-12, atol=1e-14)


def test_gather_limit_fits_the_budget():
    from mfspark.core.normal import _slot_bytes, gather_limit

    for mb, rank in [(1, 0), (8, 4), (128, 50)]:
        elements = gather_limit(mb, rank)
        assert elements % (rank + 1) == 0
        assert elements // (rank + 1) * _slot_bytes(rank + 1) <= mb << 20


def test_without_biases_solves_factors_only():
    # biases=False: min ||y - X u||^2 + lam ||u||^2 on x_j = v_j (no column of ones)
    rng = np.random.default_rng(7)
    fixed = rng.standard_normal((20, 3))
    rows, cols = rng.integers(0, 5, 120), rng.integers(0, 20, 120)
    ratings = rng.uniform(1, 5, 120)
    sol = solve_block(rows, cols, ratings, fixed, np.zeros(20), 3.0,
                      Objective(0.4, biases=False))
    for k, r in enumerate(sol.rows):
        sel = rows == r
        X, y = fixed[cols[sel]], ratings[sel] - 3.0
        expected = np.linalg.solve(X.T @ X + 0.4 * sel.sum() * np.eye(3), X.T @ y)
        np.testing.assert_allclose(sol.factors[k], expected, rtol=1e-9, atol=1e-12)
    assert not sol.bias.any()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rank, counts", [
    (30, [1, 2, 2, 5, 5, 5, 29, 30, 31, 60]),  # below, at and above K + 1 = 31
    (120, [1, 3, 47, 48, 60, 120, 121, 130]),
])
@pytest.mark.parametrize("max_gather", [31, 64, 1 << 20])  # 31: one short row at a time
def test_short_and_long_rows_equal_lstsq(max_gather, rank, counts, method):
    """Rows with fewer ratings than K + 1 (the compiled loop solves them in dual form),
    rows at K + 1 and longer rows in one block, at any gather budget: the exact ridge
    solutions in every method."""
    rng = np.random.default_rng(7)
    n_fixed = 200
    counts = np.array(counts)
    rows = np.repeat(np.arange(len(counts)), counts)
    cols = np.concatenate([rng.choice(n_fixed, c, replace=False) for c in counts])
    ratings = rng.uniform(1, 5, len(rows))
    fixed, fixed_bias = rng.standard_normal((n_fixed, rank)), rng.standard_normal(n_fixed)
    sol = solve_block(rows, cols, ratings, fixed, fixed_bias, 3.0, Objective(0.2), max_gather,
                      method=method)
    for r, c in enumerate(counts):
        sel = rows == r
        expected = lstsq_row(fixed, fixed_bias, cols[sel], ratings[sel], 3.0, 0.2 * c)
        np.testing.assert_allclose(sol.factors[r], expected[:rank], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(sol.bias[r], expected[rank], rtol=1e-9, atol=1e-11)
        resid = ratings[sel] - (fixed[cols[sel]] @ expected[:rank] + expected[rank]
                                + fixed_bias[cols[sel]] + 3.0)
        np.testing.assert_allclose(sol.sse[r], resid @ resid, rtol=1e-8, atol=1e-12)
