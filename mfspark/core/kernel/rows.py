"""The compiled row loop: build and solve every row's system of a block in machine code.

Per row: gather the fixed-side vectors into a reused buffer, one BLAS-3 ``syrk`` for the
Gram matrix, one ``gemv`` for the right-hand side, the ridge on the diagonal and one LAPACK
``posv`` (Cholesky).  Rows with fewer ratings than ``K + 1`` (and ``lam > 0``, plain
systems) are solved in dual form, ``w = X^T (X X^T + lam I)^-1 y``: an ``n x n`` Cholesky,
the same ridge solution since ``(X^T X + lam I) X^T = X^T (X X^T + lam I)``.  Weighted rows
(each gathered vector scaled by ``sqrt(w)``), a ``base`` matrix added to every Gram matrix
and a ``shift`` subtracted from every right-hand side give the implicit-feedback systems,
solved in primal form.  With a ``bound`` mask each row's nonnegative least-squares problem
is solved on the Gram matrix just built, by block principal pivoting started from the
unconstrained solution (:mod:`mfspark.core.nnls` is the method's NumPy twin); no stack of
Gram matrices is ever held.
"""

from __future__ import annotations

import numpy as np

from mfspark.core.kernel.compile import READY, dgemv, dposv, dsyrk, jit

#: Nonnegative solves: relative tolerance under which a negative value counts as zero
#: (round-off), here and in :mod:`mfspark.core.nnls`.
NNLS_TOLERANCE = 1e-10


@jit
def _nnls_row(G, b, bound, w, full, sub, x, passive, flip, L, ld, n_, inc, info,
              max_rounds, tol):  # pragma: no cover
    # block principal pivoting for min 1/2 w^T A w - b^T w, w_k >= 0 where bound[k],
    # A the upper triangle of G (row-major: dsyrk's Fortran lower); returns the rounds
    # used (0: not converged, -1: a passive subsystem not positive definite)
    k1 = b.shape[0]
    for i in range(k1):
        for j in range(i, k1):
            full[i, j] = G[i, j]
            full[j, i] = G[i, j]
    scale_g = 0.0
    for i in range(k1):
        passive[i] = True  # round one: the unconstrained solution
        scale_g = max(scale_g, abs(b[i]))
    scale_g = tol * max(scale_g, 1.0)
    best, budget = k1 + 1, 3
    for rnd in range(1, max_rounds + 1):
        p = 0
        for i in range(k1):
            if passive[i]:
                q = 0
                for j in range(k1):
                    if passive[j]:
                        sub[p, q] = full[i, j]
                        q += 1
                x[p] = b[i]
                p += 1
        if p > 0:
            n_[0] = p
            dposv(L.ctypes, n_.ctypes, inc.ctypes, sub.ctypes, ld.ctypes, x.ctypes,
                   ld.ctypes, info.ctypes)
            if info[0] != 0:
                return -1
        q = 0
        scale_w = 0.0
        for i in range(k1):
            if passive[i]:
                w[i] = x[q]
                q += 1
                scale_w = max(scale_w, abs(w[i]))
            else:
                w[i] = 0.0
        scale_w = tol * max(scale_w, 1.0)
        n_bad, last = 0, -1
        for i in range(k1):
            if not bound[i]:
                continue
            if passive[i]:
                bad = w[i] < -scale_w
            else:
                g = -b[i]
                for j in range(k1):
                    g += full[i, j] * w[j]
                bad = g < -scale_g
            flip[i] = bad
            if bad:
                n_bad += 1
                last = i
        if n_bad == 0:
            for i in range(k1):
                if bound[i] and w[i] < 0.0:
                    w[i] = 0.0  # round-off below zero
            return rnd
        if n_bad < best:
            best, budget = n_bad, 3
        elif budget >= 1:
            budget -= 1
        else:  # backup rule: flip only the largest violating index
            flip[:] = False
            flip[last] = True
        for i in range(k1):
            if flip[i]:
                passive[i] = not passive[i]
    return 0

@jit
def _solve_rows(F, cols, y, start, counts, lam_rows, step, scale, base, bound, shift,
                w, rhs):  # pragma: no cover
    # (compiled: coverage cannot see inside; the tests check it against the Python loop)
    # ``scale`` (empty: all ones) multiplies each gathered row, ``base`` (empty: none)
    # is added to every Gram matrix: the implicit-feedback systems
    # ``bound`` (empty: none) marks the coordinates held >= 0: each row's NNLS problem
    # ``shift`` (empty: none) is subtracted from every right-hand side (implicit biases)
    k1 = F.shape[1]
    weighted = scale.shape[0] > 0
    constrained = bound.shape[0] > 0
    shifted = shift.shape[0] > 0
    primal_only = weighted or base.shape[0] > 0 or constrained or shifted
    longest = 1
    for r in range(counts.shape[0]):
        n = counts[r]
        longest = max(longest, n if n < k1 else min(n, step))
    buf = np.empty((longest, k1))  # row-major (n, k1) == Fortran (k1, n), ld k1
    G = np.empty((k1, k1))
    L, N, T = np.array([76], np.uint8), np.array([78], np.uint8), np.array([84], np.uint8)
    ld, inc, n_ = np.array([k1], np.int32), np.array([1], np.int32), np.zeros(1, np.int32)
    info = np.zeros(1, np.int32)
    one, zero, beta = np.ones(1), np.zeros(1), np.zeros(1)
    full, sub = np.empty((k1, k1)), np.empty((k1, k1))
    x = np.empty(k1)
    passive, flip = np.empty(k1, np.bool_), np.zeros(k1, np.bool_)
    m_ = np.zeros(1, np.int32)
    for r in range(counts.shape[0]):
        lo, n, lam = start[r], counts[r], lam_rows[r]
        # dual: (X X^T + lam I) a = y, w = X^T a
        if n < k1 and lam > 0 and not primal_only:
            for a in range(n):
                c = cols[lo + a]
                for k in range(k1):  # (scalar loops: faster than slice copies here)
                    buf[a, k] = F[c, k]
            n_[0] = n
            a_ = y[lo:lo + n].copy()
            dgemv(N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes, ld.ctypes,
                   a_.ctypes, inc.ctypes, zero.ctypes, rhs[r].ctypes, inc.ctypes)
            # X X^T (n x n, lower) into G's memory, leading dimension k1 > n
            dsyrk(L.ctypes, T.ctypes, n_.ctypes, ld.ctypes, one.ctypes, buf.ctypes,
                   ld.ctypes, zero.ctypes, G.ctypes, ld.ctypes)
            flat = G.reshape(-1)
            for a in range(n):
                flat[a * k1 + a] += lam
            dposv(L.ctypes, n_.ctypes, inc.ctypes, G.ctypes, ld.ctypes, a_.ctypes,
                   n_.ctypes, info.ctypes)
            if info[0] != 0:
                return r + 1
            dgemv(N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes, ld.ctypes,
                   a_.ctypes, inc.ctypes, zero.ctypes, w[r].ctypes, inc.ctypes)
            continue
        for k in range(k1):
            rhs[r, k] = -shift[k] if shifted else 0.0
        beta[0] = 0.0
        for done in range(0, n, step):  # slices of at most ``step`` gathered rows
            m = min(step, n - done)
            if weighted:  # rows scaled for the Gram matrix, unscaled for X^T y
                for a in range(m):
                    j = lo + done + a
                    c, s, t = cols[j], scale[j], y[j]
                    for k in range(k1):
                        v = F[c, k]
                        buf[a, k] = v * s
                        rhs[r, k] += t * v
            else:
                for a in range(m):
                    c = cols[lo + done + a]
                    for k in range(k1):
                        buf[a, k] = F[c, k]
            n_[0] = m
            dsyrk(L.ctypes, N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes,
                   ld.ctypes, beta.ctypes, G.ctypes, ld.ctypes)
            if not weighted:
                dgemv(N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes, ld.ctypes,
                       y[lo + done:].ctypes, inc.ctypes, one.ctypes, rhs[r].ctypes,
                       inc.ctypes)
            beta[0] = 1.0
        if base.shape[0] > 0:
            for k in range(k1):
                for l in range(k1):
                    G[k, l] += base[k, l]
        for k in range(k1):
            G[k, k] += lam
        if constrained:
            used = _nnls_row(G, rhs[r], bound, w[r], full, sub, x, passive, flip, L, ld,
                             m_, inc, info, 10 * k1 + 50, NNLS_TOLERANCE)
            if used <= 0:
                return r + 1 if used < 0 else -(r + 1)
            continue
        w[r, :] = rhs[r, :]
        dposv(L.ctypes, ld.ctypes, inc.ctypes, G.ctypes, ld.ctypes, w[r].ctypes,
               ld.ctypes, info.ctypes)
        if info[0] != 0:
            return r + 1
    return 0


def row_solve(F: np.ndarray, cols: np.ndarray, y: np.ndarray, start: np.ndarray,
              counts: np.ndarray, lam_rows: np.ndarray, max_gather: int,
              weight: np.ndarray | None = None, base: np.ndarray | None = None,
              bound: np.ndarray | None = None, shift: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """Solve every row (``n`` ratings from ``start``, ridge ``lam_rows``); returns the
    solutions ``w``, the right-hand sides ``X^T y`` and 0, or the 1-based index of the first
    row whose system is not positive definite, or (with ``bound``) minus the 1-based index of
    the first row whose NNLS did not converge in ``10 k1 + 50`` rounds (then ``w`` is
    incomplete).

    With ``bound`` (a boolean mask of length ``k1``) each row's solution minimizes the same
    quadratic subject to ``w_k >= 0`` where ``bound[k]`` (nonnegative factors, the bias
    free): the solution of the NNLS problem, which satisfies its KKT conditions
    (:func:`mfspark.core.nnls.kkt_violation`).

    With ``weight`` (one value >= 0 per rating) and/or ``base`` (a symmetric ``k1 x k1``
    matrix) each row's system is ``(base + X^T W X + lam I) w = X^T y``, every row in primal
    form: the implicit-feedback systems, ``W = C - I`` and ``base = Y^T Y``
    (:mod:`mfspark.core.implicit`).  ``shift`` (a ``k1`` vector, default 0) is subtracted from
    every right-hand side, then ``X^T y - shift``: the implicit systems with biases.

    At most ``max_gather`` float64 elements are gathered at once: longer rows are
    accumulated over slices (``syrk`` with ``beta = 1``).  Needs Numba
    (:func:`mfspark.core.kernel.available` also honours ``MFSPARK_KERNEL``; this function
    does not).
    """
    if not READY:
        raise RuntimeError("the compiled solver needs Numba (pip install numba)")
    k1 = F.shape[1]
    w = np.empty((len(counts), k1))
    rhs = np.empty((len(counts), k1))
    if not len(counts):
        return w, rhs, 0
    if weight is None:
        scale = np.zeros(0)
    else:
        weight = np.asarray(weight, dtype=np.float64)
        if len(weight) and weight.min() < 0:
            raise ValueError("row_solve: a rating's weight is negative")
        scale = np.sqrt(weight)
    base = np.zeros((0, 0)) if base is None else np.ascontiguousarray(base, np.float64)
    if base.shape not in ((0, 0), (k1, k1)):
        raise ValueError(f"row_solve: base must be {k1} x {k1}, got {base.shape}")
    bound = np.zeros(0, np.bool_) if bound is None else np.asarray(bound, dtype=np.bool_)
    if bound.shape not in ((0,), (k1,)):
        raise ValueError(f"row_solve: bound must have length {k1}, got {bound.shape}")
    # one dtype per argument: one compiled (and cached) specialization
    failed = _solve_rows(np.ascontiguousarray(F, dtype=np.float64),
                         np.asarray(cols, dtype=np.int64), np.ascontiguousarray(y, np.float64),
                         np.asarray(start, dtype=np.int64), np.asarray(counts, dtype=np.int64),
                         np.asarray(lam_rows, dtype=np.float64), max(1, max_gather // k1),
                         scale, base, bound, shift_vector(shift, k1), w, rhs)
    return w, rhs, int(failed)


def shift_vector(shift: np.ndarray | None, k1: int) -> np.ndarray:
    """The right-hand-side shift as a float64 ``k1`` vector (empty when none)."""
    if shift is None:
        return np.zeros(0)
    shift = np.ascontiguousarray(shift, np.float64)
    if shift.shape != (k1,):
        raise ValueError(f"the right-hand-side shift must have length {k1}, got {shift.shape}")
    return shift
