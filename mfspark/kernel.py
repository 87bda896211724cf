"""The per-row solve loop of :func:`mfspark.solve.solve_block`, compiled with Numba.

The loop does what :func:`mfspark.solve._row_solve` does in Python, one row at a time: gather
the row's fixed-side vectors, one BLAS-3 ``syrk`` for ``X^T X``, one ``gemv`` for ``X^T y``,
``lam`` on the diagonal and one LAPACK ``posv`` (Cholesky) solve.  BLAS and LAPACK are
SciPy's own (``scipy.linalg.cython_blas`` / ``cython_lapack``), called from compiled code,
so a row costs its flops and not about 10 us of Python calls (``benchmarks/gram_methods.py``
times both, as the ``compiled`` and ``rows`` Gram methods).

Rows with fewer ratings than ``K + 1`` (and ``lam > 0``) are solved in dual form,
``w = X^T (X X^T + lam I)^-1 y``: an ``n x n`` Cholesky instead of ``(K + 1) x (K + 1)``, the
same ridge solution (:func:`mfspark.solve._dual_rows` explains the identity).  Compiled, the
dual pays off up to ``n = K + 1``; the Python path stops earlier (its stacked dual is slow).

The same loop solves the implicit-feedback systems (:mod:`mfspark.implicit`),
``(Y^T Y + X^T (C - I) X + lam I) x = X^T C p``: each gathered row is scaled by
``sqrt(c - 1)`` before the ``syrk``, ``Y^T Y`` is added to the Gram matrix, and every row is
solved in primal form.

With a ``bound`` mask the loop solves each row's nonnegative least-squares problem on the
Gram matrix it just built (``w_k >= 0`` on the bound coordinates; :mod:`mfspark.nnls` has the
method and its NumPy twin): block principal pivoting, started from the unconstrained
solution (round one is the ``posv`` above), each later round one ``posv`` on the passive
coordinates' subsystem.  No stack of Gram matrices is ever held.

:func:`cg_rows` is the implicit model's approximate alternative (``cg_steps``): a few
conjugate-gradient steps per row from its previous factors, matrix-free (three ``gemv`` per
step on the gathered rows and ``Y^T Y``).

Numba is optional: without it (or with ``MFSPARK_KERNEL=python`` in the environment, read in
each Python worker) :func:`available` is False and the solver runs the Python loop.  The
compiled function is cached on disk (``cache=True``: next to this file, or Numba's user-wide
cache directory when that is not writable), so only the first process ever compiles it
(about 5 s); the BLAS/LAPACK entry points are registered under fixed symbol names at import,
which is what lets the cached machine code link in a new process.
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger("mfspark")

try:
    from llvmlite import binding as _llvm
    from numba import njit, types
    from numba.extending import get_cython_function_address
except ImportError:  # pragma: no cover - exercised where Numba is absent
    njit = None

#: Set to ``python`` to run the Python loop even where Numba is installed.
KERNEL_ENV = "MFSPARK_KERNEL"

#: Nonnegative solves: relative tolerance under which a negative value counts as zero
#: (round-off), here and in :mod:`mfspark.nnls`.
NNLS_TOLERANCE = 1e-10


def _register() -> bool:
    """Expose SciPy's ``dsyrk``, ``dgemv`` and ``dposv`` to compiled code by name."""
    try:
        for module, name in (("blas", "dsyrk"), ("blas", "dgemv"), ("lapack", "dposv")):
            address = get_cython_function_address(f"scipy.linalg.cython_{module}", name)
            _llvm.add_symbol(f"mfspark_{name}", address)
    except (ImportError, ValueError, AttributeError) as err:  # pragma: no cover
        log.warning("mfspark: compiled solver unavailable (%s); using the Python loop", err)
        return False
    return True


_READY = njit is not None and _register()


def available() -> bool:
    """Whether :func:`mfspark.solve.solve_block` may use the compiled loop in this process:
    Numba and SciPy's BLAS/LAPACK entry points were found, and :data:`KERNEL_ENV` is not
    ``python``."""
    return _READY and os.environ.get(KERNEL_ENV, "").lower() != "python"


if _READY:
    _p = types.voidptr  # Fortran BLAS: every argument by reference
    _dsyrk = types.ExternalFunction("mfspark_dsyrk", types.void(*[_p] * 10))
    _dgemv = types.ExternalFunction("mfspark_dgemv", types.void(*[_p] * 11))
    _dposv = types.ExternalFunction("mfspark_dposv", types.void(*[_p] * 8))

    @njit(cache=True)
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
                _dposv(L.ctypes, n_.ctypes, inc.ctypes, sub.ctypes, ld.ctypes, x.ctypes,
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

    @njit(cache=True)
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
                _dgemv(N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes, ld.ctypes,
                       a_.ctypes, inc.ctypes, zero.ctypes, rhs[r].ctypes, inc.ctypes)
                # X X^T (n x n, lower) into G's memory, leading dimension k1 > n
                _dsyrk(L.ctypes, T.ctypes, n_.ctypes, ld.ctypes, one.ctypes, buf.ctypes,
                       ld.ctypes, zero.ctypes, G.ctypes, ld.ctypes)
                flat = G.reshape(-1)
                for a in range(n):
                    flat[a * k1 + a] += lam
                _dposv(L.ctypes, n_.ctypes, inc.ctypes, G.ctypes, ld.ctypes, a_.ctypes,
                       n_.ctypes, info.ctypes)
                if info[0] != 0:
                    return r + 1
                _dgemv(N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes, ld.ctypes,
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
                _dsyrk(L.ctypes, N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes,
                       ld.ctypes, beta.ctypes, G.ctypes, ld.ctypes)
                if not weighted:
                    _dgemv(N.ctypes, ld.ctypes, n_.ctypes, one.ctypes, buf.ctypes, ld.ctypes,
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
            _dposv(L.ctypes, ld.ctypes, inc.ctypes, G.ctypes, ld.ctypes, w[r].ctypes,
                   ld.ctypes, info.ctypes)
            if info[0] != 0:
                return r + 1
        return 0


if _READY:
    @njit(cache=True)
    def _apply(F, cols, weight, lo, n, gathered, X, G, lam, v, t, out, N, T, kk, n_, ld, inc,
               one, zero):  # pragma: no cover
        # out = (G + X^T W X + lam I) v over the row's ratings lo .. lo + n: three gemv
        # calls; X (row-major m x k: the Fortran k x m matrix X^T) holds the whole row when
        # ``gathered``, else slices of at most len(X) ratings are gathered in turn
        _dgemv(N.ctypes, kk.ctypes, kk.ctypes, one.ctypes, G.ctypes, ld.ctypes, v.ctypes,
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
            _dgemv(T.ctypes, kk.ctypes, n_.ctypes, one.ctypes, X.ctypes, ld.ctypes, v.ctypes,
                   inc.ctypes, zero.ctypes, t.ctypes, inc.ctypes)  # t = X v
            for a in range(m):
                t[a] *= weight[lo + done + a]
            _dgemv(N.ctypes, kk.ctypes, n_.ctypes, one.ctypes, X.ctypes, ld.ctypes, t.ctypes,
                   inc.ctypes, one.ctypes, out.ctypes, inc.ctypes)  # += X^T (w t)
        for i in range(k):
            out[i] += lam * v[i]

    @njit(cache=True)
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
    if not _READY:
        raise RuntimeError("the compiled solver needs Numba (pip install numba)")
    k = F.shape[1]
    x = np.array(x0, dtype=np.float64, order="C")
    shift = np.zeros(k) if shift is None else _shift(shift, k)  # the loop always subtracts
    rhs, xAx = np.empty((len(counts), k)), np.empty(len(counts))
    if len(counts):
        _cg_rows(np.ascontiguousarray(F, dtype=np.float64), np.asarray(cols, dtype=np.int64),
                 np.ascontiguousarray(weight, np.float64),
                 np.ascontiguousarray(target, np.float64), np.asarray(start, dtype=np.int64),
                 np.asarray(counts, dtype=np.int64), np.asarray(lam_rows, dtype=np.float64),
                 np.ascontiguousarray(base, np.float64), shift, x, int(steps),
                 max(1, max_gather // k), rhs, xAx)
    return x, rhs, xAx


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
    (:func:`mfspark.nnls.kkt_violation`).

    With ``weight`` (one value >= 0 per rating) and/or ``base`` (a symmetric ``k1 x k1``
    matrix) each row's system is ``(base + X^T W X + lam I) w = X^T y``, every row in primal
    form: the implicit-feedback systems, ``W = C - I`` and ``base = Y^T Y``
    (:mod:`mfspark.implicit`).  ``shift`` (a ``k1`` vector, default 0) is subtracted from
    every right-hand side, then ``X^T y - shift``: the implicit systems with biases.

    At most ``max_gather`` float64 elements are gathered at once: longer rows are
    accumulated over slices (``syrk`` with ``beta = 1``).  Needs Numba (:func:`available`
    also honours :data:`KERNEL_ENV`; this function does not).
    """
    if not _READY:
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
                         scale, base, bound, _shift(shift, k1), w, rhs)
    return w, rhs, int(failed)


def _shift(shift: np.ndarray | None, k1: int) -> np.ndarray:
    """The right-hand-side shift as a float64 ``k1`` vector (empty when none)."""
    if shift is None:
        return np.zeros(0)
    shift = np.ascontiguousarray(shift, np.float64)
    if shift.shape != (k1,):
        raise ValueError(f"the right-hand-side shift must have length {k1}, got {shift.shape}")
    return shift
