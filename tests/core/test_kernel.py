"""The compiled row loop (:mod:`mfspark.core.kernel`) against the NumPy normal equations
and solvers it replaces and the batched NumPy NNLS (:mod:`mfspark.core.nnls`)."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.core import block, kernel
from mfspark.core.nnls import kkt_violation, nnls_solve
from mfspark.core.normal import normal_equations, row_starts
from mfspark.core.objective import augmented
from mfspark.core.solvers import SolveError, cg_solve, cholesky_solve

pytestmark = pytest.mark.skipif(not kernel.available(), reason="Numba is not installed")


def numpy_solve(F, cols, y, start, counts, lam):
    """The NumPy path: per-row normal equations, ``lam`` on the diagonal, Cholesky."""
    A, rhs = normal_equations(F, cols, y, start, counts, method="rows")
    k1 = F.shape[1]
    A[:, np.arange(k1), np.arange(k1)] += lam[:, None]
    return cholesky_solve(A, rhs), rhs


def _block(rank: int, seed: int, n_rows: int = 60, n_fixed: int = 80):
    """Rows of 1 to 3 (K + 1) ratings (dual and primal forms), sorted by row."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 3 * (rank + 1) + 2, n_rows)
    rows = np.repeat(np.arange(n_rows), counts)
    cols = rng.integers(0, n_fixed, len(rows))
    F = augmented(rng.standard_normal((n_fixed, rank)))
    y = rng.standard_normal(len(rows))
    start = row_starts(rows)
    return F, cols, y, start, counts


@pytest.mark.parametrize("rank", [1, 5, 20])
@pytest.mark.parametrize("max_gather", [1 << 20, 7 * 21])  # small: long rows in slices
def test_compiled_loop_equals_numpy_solve(rank, max_gather):
    F, cols, y, start, counts = _block(rank, seed=rank)
    lam = 0.3 * counts.astype(float)
    w, rhs, failed = kernel.row_solve(F, cols, y, start, counts, lam, max_gather)
    expected_w, expected_rhs = numpy_solve(F, cols, y, start, counts, lam)
    assert failed == 0
    assert (counts < rank + 1).any() and (counts >= rank + 1).any()  # both forms ran
    np.testing.assert_allclose(rhs, expected_rhs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w, expected_w, rtol=1e-10, atol=1e-12)
    # and each solution satisfies its own normal equations
    for r in range(len(counts)):
        X = F[cols[start[r]:start[r] + counts[r]]]
        np.testing.assert_allclose((X.T @ X + lam[r] * np.eye(rank + 1)) @ w[r], rhs[r],
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("rank", [1, 5, 20])
@pytest.mark.parametrize("max_gather", [1 << 20, 7 * 21])
@pytest.mark.parametrize("shifted", [False, True])
def test_weighted_systems_with_a_base_matrix(rank, max_gather, shifted):
    """The implicit-feedback form: (base + X^T W X + lam I) w = X^T y - shift, short rows
    included (no dual form: base is not a multiple of I), zero weights included; the shift
    (implicit feedback with biases) defaults to 0."""
    F, cols, y, start, counts = _block(rank, seed=10 + rank)
    rng = np.random.default_rng(rank)
    weight = rng.uniform(0, 3, len(cols))
    weight[::5] = 0.0
    M = rng.standard_normal((rank + 1, rank + 1))
    base = M @ M.T
    lam = 0.2 * counts.astype(float)
    shift = rng.standard_normal(rank + 1) if shifted else np.zeros(rank + 1)
    w, rhs, failed = kernel.row_solve(F, cols, y, start, counts, lam, max_gather,
                                      weight=weight, base=base,
                                      shift=shift if shifted else None)
    assert failed == 0
    for r in range(len(counts)):
        sl = slice(start[r], start[r] + counts[r])
        X = F[cols[sl]]
        A = base + (X.T * weight[sl]) @ X + lam[r] * np.eye(rank + 1)
        np.testing.assert_allclose(rhs[r], X.T @ y[sl] - shift, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(w[r], np.linalg.solve(A, X.T @ y[sl] - shift), rtol=1e-9,
                                   atol=1e-10)


@pytest.mark.parametrize("rank", [1, 5, 20])
@pytest.mark.parametrize("max_gather", [1 << 20, 7 * 21])
@pytest.mark.parametrize("free_last", [True, False])
def test_bounded_rows_solve_their_nnls(rank, max_gather, free_last):
    """With ``bound``, each row's solution is the batched NumPy NNLS of its rebuilt system:
    explicit rows (bias free or not), and implicit ones (weights and a base matrix)."""
    F, cols, y, start, counts = _block(rank, seed=20 + rank)
    k1 = rank + 1
    free = np.zeros(k1, bool)
    free[-1] = free_last
    lam = 0.2 * counts.astype(float)
    rng = np.random.default_rng(rank)
    weight = rng.uniform(0, 3, len(cols))
    M = rng.standard_normal((k1, k1))
    for extra in ({}, {"weight": weight, "base": M @ M.T},
                  {"weight": weight, "base": M @ M.T, "shift": rng.standard_normal(k1)}):
        w, rhs, failed = kernel.row_solve(F, cols, y, start, counts, lam, max_gather,
                                          bound=~free, **extra)
        assert failed == 0
        A = np.empty((len(counts), k1, k1))
        for r in range(len(counts)):
            sl = slice(start[r], start[r] + counts[r])
            X = F[cols[sl]]
            wx = X.T * extra["weight"][sl] if extra else X.T
            A[r] = wx @ X + lam[r] * np.eye(k1) + (extra["base"] if extra else 0)
            np.testing.assert_allclose(rhs[r], X.T @ y[sl] - extra.get("shift", 0),
                                       rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(w, nnls_solve(A, rhs, free=free), rtol=1e-9, atol=1e-10)
        assert kkt_violation(A, rhs, w, free).max() < 1e-9
        assert np.all(w[:, ~free] >= 0) and np.any(w[:, ~free] == 0)  # the bound is active
        assert np.any(w[:, ~free] > 0)


def test_nnls_failure_is_told_apart_from_a_singular_row(monkeypatch):
    rows, start, counts = np.array([7, 7, 9]), np.array([0, 2]), np.array([2, 1])
    for failed, message in ((2, "not positive definite"), (-2, "did not converge")):
        monkeypatch.setattr(kernel, "row_solve", lambda *a, **k: (None, None, failed))
        with pytest.raises(SolveError, match=f"{message}.*row 9, 1 ratings"):
            block.compiled_solve(rows, np.ones((2, 2)), rows, np.ones(3), start, counts,
                                 np.ones(2), 1 << 20, bound=np.ones(2, bool))


def test_bad_weights_and_base_are_refused():
    F, cols, y, start, counts = _block(2, seed=0)
    lam = np.ones(len(counts))
    with pytest.raises(ValueError, match="weight is negative"):
        kernel.row_solve(F, cols, y, start, counts, lam, 1 << 20, weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="base must be 3 x 3"):
        kernel.row_solve(F, cols, y, start, counts, lam, 1 << 20, base=np.eye(2))
    with pytest.raises(ValueError, match="bound must have length 3"):
        kernel.row_solve(F, cols, y, start, counts, lam, 1 << 20, bound=np.ones(2, bool))
    with pytest.raises(ValueError, match="shift must have length 3"):
        kernel.row_solve(F, cols, y, start, counts, lam, 1 << 20, shift=np.ones(4))
    with pytest.raises(ValueError, match="shift must have length 3"):
        kernel.cg_rows(F, cols, np.ones(len(y)), y, start, counts, lam, np.eye(3),
                       np.zeros((len(counts), 3)), 1, shift=np.ones(2))


def test_dual_rows_with_lam_zero_are_solved_in_primal_form_and_reported():
    # one rating, three columns, no ridge: X^T X is singular; row 2 (1-based) is named
    F = augmented(np.ones((2, 2)))
    cols, y = np.array([0, 1, 0, 1]), np.ones(4)
    start, counts = np.array([0, 3]), np.array([3, 1])
    w, _, failed = kernel.row_solve(F, cols, y, start, counts, np.array([1.0, 0.0]), 1 << 20)
    assert failed == 2


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv(kernel.KERNEL_ENV, "python")
    assert not kernel.available()
    monkeypatch.setenv(kernel.KERNEL_ENV, "compiled")
    assert kernel.available()


@pytest.mark.parametrize("rank", [1, 5, 20])
def test_conjugate_gradient_rows_match_the_numpy_iterates(rank):
    """kernel.cg_rows (matrix-free, three gemv per step) against solvers.cg_solve on the
    rebuilt systems; rank steps solve the system; x^T A x is reported for the objective."""
    F, cols, y, start, counts = _block(rank, seed=30 + rank)
    F = F[:, :rank]
    rng = np.random.default_rng(rank)
    weight = rng.uniform(0, 3, len(cols))
    M = rng.standard_normal((rank, rank))
    base = M @ M.T
    lam = 0.2 * counts.astype(float)
    x0 = rng.standard_normal((len(counts), rank))
    shift = rng.standard_normal(rank)  # the right-hand sides' shift (implicit biases)
    A, b = np.empty((len(counts), rank, rank)), np.empty((len(counts), rank))
    for r in range(len(counts)):
        sl = slice(start[r], start[r] + counts[r])
        A[r] = (F[cols[sl]].T * weight[sl]) @ F[cols[sl]] + base + lam[r] * np.eye(rank)
        b[r] = F[cols[sl]].T @ y[sl]
    plain = kernel.cg_rows(F, cols, weight, y, start, counts, lam, base, x0, 2)
    np.testing.assert_allclose(plain[1], b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(plain[0], cg_solve(A, b, x0, 2), rtol=1e-8, atol=1e-10)
    for steps in (1, 2, 3):  # (after many steps round-off separates any two implementations)
        x, rhs, xAx = kernel.cg_rows(F, cols, weight, y, start, counts, lam, base, x0, steps,
                                     shift=shift)
        np.testing.assert_allclose(rhs, b - shift, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x, cg_solve(A, rhs, x0, steps), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(xAx, np.einsum("rk,rkl,rl->r", x, A, x), rtol=1e-10)
        # a gather budget of 3 ratings: long rows in slices, the same iterates
        sliced = kernel.cg_rows(F, cols, weight, y, start, counts, lam, base, x0, steps,
                                max_gather=3 * rank, shift=shift)
        assert counts.max() > 3
        np.testing.assert_allclose(sliced[0], x, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(sliced[2], xAx, rtol=1e-12)
    x, rhs, _ = kernel.cg_rows(F, cols, weight, y, start, counts, lam, base, x0, 3 * rank)
    np.testing.assert_allclose(x, np.linalg.solve(A, rhs[..., None])[..., 0], rtol=1e-6,
                               atol=1e-8)
