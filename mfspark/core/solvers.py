"""Solvers for stacks of small symmetric positive definite systems, in NumPy only.

The NumPy path of :func:`mfspark.core.block.solve_block` (and the tests' oracle of the
compiled row loop): every row's system ``A_r w_r = b_r`` solved at once by a batched
Cholesky factorization, or approximately by conjugate gradient from a starting point.
Nonnegative solves are :mod:`mfspark.core.nnls`.
"""

from __future__ import annotations

import numpy as np


class SolveError(ValueError):
    """A block's systems could not be solved (not positive definite, or non-finite input)."""


NOT_POSITIVE_DEFINITE = ("a normal-equation matrix is not positive definite "
                         "(is the regularization lambda > 0?)")


def cholesky_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the stacked SPD systems ``gram[r] w[r] = rhs[r]`` by Cholesky.

    ``numpy.linalg.cholesky`` factors the whole stack in C; the two triangular solves are
    vectorized over the stack, one column at a time.
    """
    try:
        L = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError as err:
        raise SolveError(NOT_POSITIVE_DEFINITE) from err
    k1 = rhs.shape[1]
    z = np.empty_like(rhs)
    for j in range(k1):
        z[:, j] = (rhs[:, j] - np.einsum("bk,bk->b", L[:, j, :j], z[:, :j])) / L[:, j, j]
    w = np.empty_like(rhs)
    for j in range(k1 - 1, -1, -1):
        w[:, j] = (z[:, j] - np.einsum("bk,bk->b", L[:, j + 1:, j], w[:, j + 1:])) / L[:, j, j]
    return w


def cg_solve(A: np.ndarray, b: np.ndarray, x0: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` conjugate-gradient steps on every row's SPD system ``A x = b`` from ``x0``
    (the stack at once): each step minimizes ``1/2 x^T A x - b^T x`` over a growing Krylov
    space around ``x0``, so no step increases it, and ``k`` steps solve a ``k x k`` system up
    to round-off.  The NumPy twin of the compiled loop's conjugate gradient
    (:func:`mfspark.core.kernel.cg_rows`)."""
    x = np.array(x0, dtype=np.float64)
    r = b - np.einsum("rkl,rl->rk", A, x)
    p = r.copy()
    rr = np.einsum("rk,rk->r", r, r)
    for _ in range(steps):
        live = rr > 0  # a row already solved exactly stays put
        Ap = np.einsum("rkl,rl->rk", A, p)
        pAp = np.einsum("rk,rk->r", p, Ap)
        step = np.where(live, rr / np.where(live, pAp, 1.0), 0.0)
        x += step[:, None] * p
        r -= step[:, None] * Ap
        rr_next = np.einsum("rk,rk->r", r, r)
        p = r + np.where(live, rr_next / np.where(live, rr, 1.0), 0.0)[:, None] * p
        rr = rr_next
    return x
