"""Batched nonnegative least squares on normal equations, in NumPy only.

For every row ``r`` of a stack this solves the convex quadratic program

    minimize   f(w) = 1/2 w^T A_r w - b_r^T w     subject to   w_k >= 0 for constrained k

where ``A_r`` is a symmetric positive definite Gram matrix (``X^T X + lam I``, as ALS builds
it) and ``b_r`` its right-hand side: the nonnegative least-squares problem
``min ||X w - y||^2 + lam ||w||^2`` written on its normal equations.  Unconstrained
coordinates (the bias of the explicit model) are simply never bounded.

The method is block principal pivoting (Kim and Park 2011, with the backup rule of Judice
and Pires): given a guess of the passive set ``P`` (coordinates free to be nonzero), solve
the equality-constrained system ``A_PP w_P = b_P``, ``w = 0`` off ``P``, compute the gradient
``g = A w - b`` and move every coordinate that violates the KKT conditions
(``w_k < 0`` on ``P``, ``g_k < 0`` off ``P``) to the other set; when the number of
violations stops decreasing for three rounds, only the largest violating index moves, which
guarantees termination.  Every round solves all still-unfinished rows of the stack with one
batched Cholesky (:func:`mfspark.core.solvers.cholesky_solve`): the passive subsystem is embedded in
a full-size SPD matrix by putting identity rows on the bound coordinates.

Where Numba is installed the ALS solvers run the same method row by row inside the compiled
row loop instead (:func:`mfspark.core.kernel.row_solve` with ``bound``; same tolerance, same
solution); this module is its NumPy twin, the path without Numba, and the test oracle's.

KKT conditions at the solution (checked by :func:`kkt_violation`): ``w_k >= 0``,
``g_k >= 0`` and ``w_k g_k = 0`` on constrained coordinates, ``g_k = 0`` on free ones.
"""

from __future__ import annotations

import numpy as np

from mfspark.core.kernel.rows import NNLS_TOLERANCE as TOLERANCE
from mfspark.core.solvers import SolveError, cholesky_solve


def _passive_solve(gram: np.ndarray, rhs: np.ndarray,
                   passive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``A_PP w_P = b_P`` (``w = 0`` off P) for a stack, and return ``(w, A w - b)``."""
    k = rhs.shape[1]
    pair = passive[:, :, None] & passive[:, None, :]
    M = np.where(pair, gram, 0.0)
    M[:, np.arange(k), np.arange(k)] += ~passive  # identity rows on bound coordinates
    w = cholesky_solve(M, np.where(passive, rhs, 0.0))
    grad = np.einsum("rkl,rl->rk", gram, w) - rhs
    return w, grad


def nnls_solve(gram: np.ndarray, rhs: np.ndarray, free: np.ndarray | None = None,
               start: np.ndarray | None = None, max_rounds: int | None = None) -> np.ndarray:
    """Minimize ``1/2 w^T gram[r] w - rhs[r]^T w`` subject to ``w >= 0`` off ``free``,
    for every ``r`` of the stack.

    Parameters
    ----------
    gram : ndarray, shape (n, k, k)
        Symmetric positive definite matrices.
    rhs : ndarray, shape (n, k)
        Right-hand sides.
    free : ndarray of bool, shape (k,), optional
        Coordinates without the bound (e.g. a bias); default: none.
    start : ndarray, shape (n, k), optional
        A previous solution: its positive coordinates are the first passive-set guess (a
        warm start only changes how many rounds are needed, never the answer).
    max_rounds : int, optional
        Bound on pivoting rounds (default ``10 k + 50``); exceeding it raises
        :class:`~mfspark.core.solvers.SolveError`.

    Returns
    -------
    ndarray, shape (n, k)
        The solutions, exactly zero on the bound coordinates that are not passive.
    """
    gram = np.asarray(gram, dtype=np.float64)
    rhs = np.asarray(rhs, dtype=np.float64)
    n, k = rhs.shape
    free = np.zeros(k, dtype=bool) if free is None else np.asarray(free, dtype=bool)
    if free.shape != (k,):
        raise ValueError(f"free must have shape ({k},), got {free.shape}")
    passive = np.broadcast_to(free, (n, k)).copy()
    if start is not None:
        passive |= np.asarray(start) > 0
    out = np.zeros((n, k))
    best = np.full(n, k + 1)  # fewest violations seen so far (backup rule)
    budget = np.full(n, 3)
    todo = np.arange(n)
    bound = ~free
    for _ in range(max_rounds if max_rounds is not None else 10 * k + 50):
        if len(todo) == 0:
            return out
        P = passive[todo]
        A, b = gram[todo], rhs[todo]
        w, g = _passive_solve(A, b, P)
        scale_w = TOLERANCE * np.maximum(np.abs(w).max(axis=1, initial=0.0), 1.0)
        scale_g = TOLERANCE * np.maximum(np.abs(b).max(axis=1, initial=0.0), 1.0)
        bad = bound & ((P & (w < -scale_w[:, None])) | (~P & (g < -scale_g[:, None])))
        n_bad = bad.sum(axis=1)
        done = n_bad == 0
        out[todo[done]] = np.where(P[done] | free, w[done], 0.0)
        if done.all():
            return _clip(out, free)
        rows, bad, n_bad = todo[~done], bad[~done], n_bad[~done]
        fewer = n_bad < best[rows]
        best[rows[fewer]] = n_bad[fewer]
        budget[rows[fewer]] = 3
        spend = ~fewer & (budget[rows] >= 1)
        budget[rows[spend]] -= 1
        swap = bad.copy()
        single = ~fewer & ~spend  # backup rule: flip only the largest violating index
        if single.any():
            last = k - 1 - np.argmax(bad[single][:, ::-1], axis=1)
            swap[single] = False
            swap[np.flatnonzero(single), last] = True
        passive[rows] ^= swap
        todo = rows
    if len(todo) == 0:
        return _clip(out, free)
    raise SolveError(f"nonnegative least squares did not converge for {len(todo)} row(s)")


def _clip(w: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Round-off below zero on bound coordinates becomes exactly zero."""
    return np.where(free, w, np.maximum(w, 0.0))


def kkt_violation(gram: np.ndarray, rhs: np.ndarray, w: np.ndarray,
                  free: np.ndarray | None = None) -> np.ndarray:
    """Each row's largest violation of the NNLS KKT conditions, relative to the scale of
    ``rhs``: ``max(-w_k, -g_k, |w_k g_k|)`` on bound coordinates and ``|g_k|`` on free ones,
    with ``g = gram w - rhs``.  Zero (up to round-off) exactly at the solution."""
    k = rhs.shape[1]
    free = np.zeros(k, dtype=bool) if free is None else np.asarray(free, dtype=bool)
    g = np.einsum("rkl,rl->rk", gram, w) - rhs
    scale = np.maximum(np.abs(rhs).max(axis=1, initial=0.0), 1.0)[:, None]
    wscale = np.maximum(np.abs(w).max(axis=1, initial=0.0), 1.0)[:, None]
    bound = np.maximum.reduce([np.maximum(-w, 0.0) / wscale, np.maximum(-g, 0.0) / scale,
                               np.abs(w * g) / (scale * wscale)])
    return np.where(free, np.abs(g) / scale, bound).max(axis=1, initial=0.0)
