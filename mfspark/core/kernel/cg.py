"""Conjugate gradient in the compiled loop: the implicit model's approximate half-step.

A few conjugate-gradient steps per row from its previous unknowns, matrix-free: each product
``(base + X^T W X + lam I) v`` is three ``gemv`` calls on the gathered rows and ``base``
(``K^2 + 2 n K`` multiply-adds instead of the exact solve's ``n K^2 + K^3 / 3``).  Each step
minimizes the row's quadratic over a growing Krylov space around the start, so no step
raises it, and ``K`` steps solve it up to round-off.
"""

from __future__ import annotations

import numpy as np

from mfspark.core.kernel.compile import READY, dgemv, jit
from mfspark.core.kernel.rows import shift_vector


@jit
def _apply(F, cols, weight, lo, n, gathered, X, G, lam, v, t, out, N, T, kk, n_, ld, inc,
           one, zero):  # pragma: no cover
    # out = (G + X^T W X + lam I) v over the row's ratings lo .. lo + n: three gemv
    # calls; X (row-major m x k: the Fortran k x m matrix X^T) holds the whole row when
    # ``gathered``, else slices of at most len(X) ratings are gathered in turn
    dgemv(N.ctypes, kk.ctypes, kk.ctypes, one.ctypes, G.ctypes, ld.ctypes, v.ctypes,
           inc.ctypes, zero.ctypes, out.ctypes, inc.ctypes)  # G symmetric
    k, step = v.shape[0], X.shape[0]
    for done in range(0, n, step):
        m = min(step, n - done)
        if not gathered:
            for a in range(m):
                c = cols[lo + done + a]
                for i in range(k):
                    X[a, i] = F[c, i]
        n_[0] = m
        dgemv(T.ctypes, kk.ctypes, n_.ctypes, one.ctypes, X.ctypes, ld.ctypes, v.ctypes,
               inc.ctypes, zero.ctypes, t.ctypes, inc.ctypes)  # t = X v
        for a in range(m):
            t[a] *= weight[lo + done + a]
        dgemv(N.ctypes, kk.ctypes, n_.ctypes, one.ctypes, X.ctypes, ld.ctypes, t.ctypes,
               inc.ctypes, one.ctypes, out.ctypes, inc.ctypes)  # += X^T (w t)
    for i in range(k):
        out[i] += lam * v[i]

@jit
def _cg_rows(F, cols, weight, target, start, counts, lam_rows, G, shift, x, steps, step,
             rhs, xAx):  # pragma: no cover
    # ``step``: at most that many gathered ratings at once (the gather budget); ``shift``
    # (length k) is subtracted from every right-hand side
    k = F.shape[1]
    longest = 1
    for r in range(counts.shape[0]):
        longest = max(longest, min(counts[r], step))
    X, t = np.empty((longest, k)), np.empty(longest)
    r_, p_, Ap = np.empty(k), np.empty(k), np.empty(k)
    N, T = np.array([78], np.uint8), np.array([84], np.uint8)
    kk, ld, n_ = np.array([k], np.int32), np.array([k], np.int32), np.zeros(1, np.int32)
    inc, one, zero = np.array([1], np.int32), np.ones(1), np.zeros(1)
    for r in range(counts.shape[0]):
        lo, n, lam = start[r], counts[r], lam_rows[r]
        gathered = n <= step  # the whole row fits: gather it once for every product
        for i in range(k):
            rhs[r, i] = -shift[i]
        for a in range(n):
            c, tg = cols[lo + a], target[lo + a]
            for i in range(k):
                v = F[c, i]
                if gathered:
                    X[a, i] = v
                rhs[r, i] += tg * v
        xr = x[r]
        _apply(F, cols, weight, lo, n, gathered, X, G, lam, xr, t, Ap, N, T, kk, n_, ld,
               inc, one, zero)
        rr = 0.0
        for i in range(k):
            r_[i] = rhs[r, i] - Ap[i]
            p_[i] = r_[i]
            rr += r_[i] * r_[i]
        for _ in range(steps):
            if rr <= 0.0:
                break
            _apply(F, cols, weight, lo, n, gathered, X, G, lam, p_, t, Ap, N, T, kk, n_,
                   ld, inc, one, zero)
            pAp = 0.0
            for i in range(k):
                pAp += p_[i] * Ap[i]
            alpha = rr / pAp
            rr_next = 0.0
            for i in range(k):
                xr[i] += alpha * p_[i]
                r_[i] -= alpha * Ap[i]
                rr_next += r_[i] * r_[i]
            for i in range(k):
                p_[i] = r_[i] + (rr_next / rr) * p_[i]
            rr = rr_next
        _apply(F, cols, weight, lo, n, gathered, X, G, lam, xr, t, Ap, N, T, kk, n_, ld,
               inc, one, zero)
        q = 0.0
        for i in range(k):
            q += xr[i] * Ap[i]
        xAx[r] = q


def cg_rows(F: np.ndarray, cols: np.ndarray, weight: np.ndarray, target: np.ndarray,
            start: np.ndarray, counts: np.ndarray, lam_rows: np.ndarray, base: np.ndarray,
            x0: np.ndarray, steps: int, max_gather: int = 1 << 24,
            shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``steps`` conjugate-gradient steps on every row's implicit system
    ``(base + X^T W X + lam I) x = X^T target - shift`` from ``x0`` (one row each; ``shift``
    default 0), never forming the matrix: each product costs ``K^2 + 2 n K``.  Returns
    ``x``, the right-hand sides and each row's ``x^T A x`` (for the objective; ``x`` is not
    an exact solution).

    A row is gathered once when it has at most ``max_gather / K`` ratings; a longer row is
    gathered slice by slice for every product, so no more than ``max_gather`` float64
    elements are ever gathered at once.  Needs Numba.
    """
    if not READY:
        raise RuntimeError("the compiled solver needs Numba (pip install numba)")
    k = F.shape[1]
    x = np.array(x0, dtype=np.float64, order="C")
    shift = np.zeros(k) if shift is None else shift_vector(shift, k)  # the loop always subtracts
    rhs, xAx = np.empty((len(counts), k)), np.empty(len(counts))
    if len(counts):
        _cg_rows(np.ascontiguousarray(F, dtype=np.float64), np.asarray(cols, dtype=np.int64),
                 np.ascontiguousarray(weight, np.float64),
                 np.ascontiguousarray(target, np.float64), np.asarray(start, dtype=np.int64),
                 np.asarray(counts, dtype=np.int64), np.asarray(lam_rows, dtype=np.float64),
                 np.ascontiguousarray(base, np.float64), shift, x, int(steps),
                 max(1, max_gather // k), rhs, xAx)
    return x, rhs, xAx
