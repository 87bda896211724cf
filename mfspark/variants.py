"""The block solver of the model variants beyond MODEL.md's default: implicit feedback
(:mod:`mfspark.implicit`) and nonnegative factors (:mod:`mfspark.nnls`).

:func:`solve_variant_block` has the contract of :func:`mfspark.solve.solve_block` (same
inputs, a :class:`~mfspark.solve.BlockSolution` out) so that the Spark half-step only
dispatches to it:

- explicit, ``nonnegative``: MODEL.md's normal equations solved by NNLS, the factors bounded
  below by 0 and the bias (if fitted) free; ``sse`` is each row's squared training error;
- implicit (``alpha`` given): the Hu-Koren-Volinsky systems, solved by Cholesky or (with
  ``nonnegative``) by NNLS; ``sse`` is each row's confidence-weighted loss over *all*
  columns (the data term of the implicit J); ``bias`` is zero unless ``biases``.

Both are solved in the compiled row loop of :mod:`mfspark.kernel` (each row's system built
and solved in place, NNLS included) wherever :func:`mfspark.solve.gram_method` picks it, and
otherwise from a NumPy stack of the rows' systems (:func:`mfspark.solve.normal_equations`,
:func:`mfspark.nnls.nnls_solve`).
"""

from __future__ import annotations

import numpy as np

from mfspark import implicit, kernel
from mfspark.nnls import nnls_solve
from mfspark.solve import (DEFAULT_MAX_GATHER, BlockSolution, augmented, cholesky_solve,
                           compiled_solve, gram_method, normal_equations, regularization,
                           row_starts, split_unknowns)


def group_rows(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ratings sorted by (row, col, rating) (a no-op when already sorted, as the partitioned
    ratings are) with each row's ``start`` offset and ``counts``."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    ratings = np.asarray(ratings, dtype=np.float64)
    if len(rows) > 1:
        dr, dc = np.diff(rows), np.diff(cols)
        if not np.all((dr > 0) | ((dr == 0) & (dc >= 0))):
            order = np.lexsort((ratings, cols, rows))
            rows, cols, ratings = rows[order], cols[order], ratings[order]
    start = row_starts(rows)
    counts = np.diff(np.r_[start, len(rows)])
    return rows, cols, ratings, start, counts


def solve_variant_block(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray,
                        fixed_factors: np.ndarray, fixed_bias: np.ndarray, mu: float,
                        lam: float, reg_scale: str, max_gather: int = DEFAULT_MAX_GATHER,
                        biases: bool = True, nonnegative: bool = False,
                        alpha: float | None = None,
                        fixed_gram: np.ndarray | None = None, cg_steps: int = 0,
                        previous: np.ndarray | None = None) -> BlockSolution:
    """Half-step of the implicit and/or nonnegative model for every row of a block: exact,
    or with ``cg_steps`` conjugate-gradient steps from ``previous``.

    Parameters are those of :func:`mfspark.solve.solve_block`, plus ``nonnegative``
    (factors >= 0), ``alpha`` (None: explicit feedback; a number: implicit feedback with
    confidence ``1 + alpha |r|``) and ``fixed_gram``, the fixed side's ``Y^T Y``
    (:func:`mfspark.implicit.fixed_gramian`: with ``biases`` the Gram matrix of
    ``[Y, 1, c]``; computed here when not given).  Implicit
    feedback ignores ``mu`` (its model has no global mean) and, without ``biases``,
    ``fixed_bias``.  ``cg_steps`` (implicit, not nonnegative) replaces the exact solve by
    that many conjugate-gradient steps started from the rows' ``previous`` factors (the
    solved side's current factors, with ``biases`` followed by their bias as a last column,
    indexed like ``rows``; default zeros).
    """
    rows, cols, ratings, start, counts = group_rows(rows, cols, ratings)
    if alpha is not None:
        if fixed_gram is None:
            fixed_gram = implicit.fixed_gramian(fixed_factors, fixed_bias, biases)
        G, shift, bias_sq = implicit.split_gramian(fixed_gram, biases)
        # with biases: unknowns [x; b] against [y, 1], targets p - c_i (mfspark.implicit)
        F = augmented(fixed_factors) if biases else np.asarray(fixed_factors, np.float64)
        col_bias = np.asarray(fixed_bias, dtype=np.float64)[cols] if biases else None
        k1 = F.shape[1]
        if cg_steps and nonnegative:
            raise ValueError("conjugate gradient serves the unconstrained systems only")
        x0 = None
        if cg_steps:  # from the rows' current factors (and biases)
            x0 = (np.zeros((len(start), k1)) if previous is None
                  else np.asarray(previous, dtype=np.float64)[rows[start]])
        bound = None
        if nonnegative:  # the factors >= 0, the bias free
            bound = np.ones(k1, bool)
            bound[-1] = not biases
        xAx = None
        if gram_method(k1, len(F), max_gather) == "compiled":
            # the compiled row loop: no stack of Gram matrices; per row one posv (NNLS: a
            # few), or matrix-free conjugate-gradient steps
            extra, target, lam_rows, cpp = implicit.row_terms(ratings, start, alpha, lam,
                                                              reg_scale, col_bias, bias_sq)
            if cg_steps:
                w, b, xAx = kernel.cg_rows(F, cols, extra, target, start, counts, lam_rows,
                                           G, x0, cg_steps, max_gather, shift=shift)
            else:  # w^T A w = w . b at the (NNLS) solution: data_term needs no A
                w, b = compiled_solve(rows, F, cols, target, start, counts, lam_rows,
                                      max_gather, weight=extra, base=G, bound=bound,
                                      shift=shift)
            A = None
        else:
            A, b, lam_rows, cpp = implicit.implicit_system(
                F, G, cols, ratings, start, counts, alpha, lam, reg_scale, max_gather,
                col_bias, shift, bias_sq)
            w = (implicit.cg_solve(A, b, x0, cg_steps) if cg_steps
                 else nnls_solve(A, b, free=~bound) if nonnegative else cholesky_solve(A, b))
        sse = implicit.data_term(A, b, lam_rows, cpp, w, xAx)
        factors, bias = split_unknowns(w, biases)
        return BlockSolution(rows=rows[start].astype(np.int64), factors=factors, bias=bias,
                             sse=sse, counts=counts.astype(np.int64))
    y = ratings - np.asarray(fixed_bias)[cols] - mu
    F = augmented(fixed_factors) if biases else np.asarray(fixed_factors, dtype=np.float64)
    k1 = F.shape[1]
    lam_rows = regularization(counts, lam, reg_scale)
    free = np.zeros(k1, dtype=bool)
    free[-1] = biases  # the bias coordinate is never bounded
    yy = np.add.reduceat(y * y, start) if len(start) else np.zeros(0)
    if gram_method(k1, len(F), max_gather) == "compiled":
        # the compiled row loop: each row's Gram matrix built, then its NNLS solved in place
        w, b = compiled_solve(rows, F, cols, y, start, counts, lam_rows, max_gather,
                              bound=~free if nonnegative else None)
        # ||y - X w||^2 = y.y - 2 w.b + w^T (A - lam I) w, and w^T A w = w.b at the solution
        sse = yy - np.einsum("rk,rk->r", w, b) - lam_rows * np.einsum("rk,rk->r", w, w)
    else:
        A, b = normal_equations(F, cols, y, start, counts, max_gather)
        A[:, np.arange(k1), np.arange(k1)] += lam_rows[:, None]
        w = nnls_solve(A, b, free=free) if nonnegative else cholesky_solve(A, b)
        # ||y - X w||^2 = y.y - 2 w.b + w^T (A - lam I) w, for any w
        sse = (yy - 2 * np.einsum("rk,rk->r", w, b) + np.einsum("rk,rkl,rl->r", w, A, w)
               - lam_rows * np.einsum("rk,rk->r", w, w))
    factors, bias = split_unknowns(w, biases)
    return BlockSolution(rows=rows[start].astype(np.int64), factors=factors, bias=bias,
                         sse=np.maximum(sse, 0.0), counts=counts.astype(np.int64))
