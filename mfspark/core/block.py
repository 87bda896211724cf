"""The exact ALS half-step for one block of rows, for every model variant.

One function serves both half-steps and every variant: for the user step the *rows* are
users and the *fixed side* is the items' ``(V, c)``; for the item step the roles are
swapped; what the rows minimize is an :class:`~mfspark.core.objective.Objective`.  Each row
solves

    (base + X^T W X + lam I) w = X^T t - shift

(:mod:`mfspark.core.objective` says which terms a variant has), built and solved in the
compiled row loop (:mod:`mfspark.core.kernel`) where it is available, else from a NumPy
stack of the rows' normal equations (:mod:`mfspark.core.normal`) solved by Cholesky, NNLS
(:mod:`mfspark.core.nnls`) or conjugate gradient (:mod:`mfspark.core.solvers`).  The solver
is chosen once per block, never per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfspark.core import kernel
from mfspark.core.nnls import nnls_solve
from mfspark.core.normal import (DEFAULT_MAX_GATHER, gram_method, normal_equations,
                                 row_starts)
from mfspark.core.objective import Objective, data_term, split_unknowns
from mfspark.core.solvers import NOT_POSITIVE_DEFINITE, SolveError, cg_solve, cholesky_solve


@dataclass(frozen=True)
class BlockSolution:
    """New factors of the rows of one block.

    Attributes
    ----------
    rows : ndarray of int64, shape (n,)
        Indices of the solved rows, ascending.
    factors : ndarray of float64, shape (n, K)
        The new latent vectors (``u_i`` or ``v_j``).
    bias : ndarray of float64, shape (n,)
        The new biases (``b_i`` or ``c_j``; zero without biases).
    sse : ndarray of float64, shape (n,)
        Each row's data term of J *after* the solve (explicit ratings: its sum of squared
        training residuals; implicit feedback: its confidence-weighted loss over every
        column), so the objective needs no other pass over the ratings.
    penalty : ndarray of float64, shape (n,)
        Each row's regularization term of J, ``lam_i (||u_i||^2 + b_i^2)``.
    counts : ndarray of int64, shape (n,)
        Each row's number of ratings.
    """

    rows: np.ndarray
    factors: np.ndarray
    bias: np.ndarray
    sse: np.ndarray
    penalty: np.ndarray
    counts: np.ndarray


def sort_by_row(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratings in (row, col, rating) order, so that each row's terms are summed in one fixed
    order (a no-op when already sorted, as the partitioned blocks are)."""
    if len(rows) > 1:
        dr, dc = np.diff(rows), np.diff(cols)
        ordered = (dr > 0) | ((dr == 0) & ((dc > 0) | ((dc == 0)
                                                        & (ratings[1:] >= ratings[:-1]))))
        if not np.all(ordered):
            order = np.lexsort((ratings, cols, rows))
            return rows[order], cols[order], ratings[order]
    return rows, cols, ratings


def solve_block(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray,
                fixed_factors: np.ndarray, fixed_bias: np.ndarray, mu: float,
                objective: Objective, max_gather: int = DEFAULT_MAX_GATHER,
                fixed_gram: np.ndarray | None = None, previous: np.ndarray | None = None,
                method: str = "auto") -> BlockSolution:
    """Half-step for every row present in one block.

    Parameters
    ----------
    rows, cols : ndarray of int
        Row index (the side being solved) and column index (into the fixed side) of each
        rating of the block, in any order.
    ratings : ndarray of float
        The observed values ``A_ij``.
    fixed_factors, fixed_bias : ndarray
        The fixed side's factors ``(N, K)`` and biases ``(N,)``, indexed by ``cols``.
    mu : float
        Global mean of the training ratings (0 for the models without one).
    objective : Objective
        The variant: regularization, biases, implicit feedback, bound, solver.
    max_gather : int
        Most float64 elements of fixed-side rows gathered at once (the block's memory).
    fixed_gram : ndarray, optional
        Implicit feedback: the fixed side's Gram matrix
        (:func:`mfspark.core.implicit.fixed_gramian` of the *whole* side: the block may
        see only part of it); computed from ``fixed_factors`` when not given.
    previous : ndarray, optional
        Conjugate gradient: each row's current unknowns (factors, then bias with biases),
        indexed like ``rows``; default zeros.
    method : str
        How the normal equations are built (:func:`mfspark.core.normal.gram_method`); every
        method gives the same systems up to rounding.
    """
    rows, cols = np.asarray(rows), np.asarray(cols)
    ratings = np.asarray(ratings, dtype=np.float64)
    if len(cols) and (cols.min() < 0 or cols.max() >= len(fixed_factors)):
        raise IndexError(f"a column index is outside the fixed side's {len(fixed_factors)} "
                         f"rows (range {cols.min()}..{cols.max()})")
    rows, cols, ratings = sort_by_row(rows, cols, ratings)
    start = row_starts(rows)
    counts = np.diff(np.r_[start, len(rows)])
    fixed = objective.fixed_terms(fixed_factors, fixed_bias, fixed_gram)
    terms = objective.row_terms(ratings, cols, start, counts, fixed, mu)
    k1 = fixed.F.shape[1]
    x0 = None
    if objective.cg_steps:
        x0 = (np.zeros((len(start), k1)) if previous is None
              else np.asarray(previous, dtype=np.float64)[rows[start]])
    bound = objective.bound(k1)
    method = gram_method(k1, len(fixed.F), max_gather, method,
                         mean_count=len(rows) / max(len(start), 1))
    wAw = None
    if method == "compiled":
        if objective.cg_steps:
            w, rhs, wAw = kernel.cg_rows(fixed.F, cols, terms.weight, terms.target, start,
                                         counts, terms.lam, fixed.base, x0,
                                         objective.cg_steps, max_gather, shift=fixed.shift)
        else:
            w, rhs = compiled_solve(rows, fixed.F, cols, terms.target, start, counts,
                                    terms.lam, max_gather, weight=terms.weight,
                                    base=fixed.base, bound=bound, shift=fixed.shift)
    else:
        A, rhs = normal_equations(fixed.F, cols, terms.target, start, counts, max_gather,
                                  method, weight=terms.weight)
        if fixed.base is not None:
            A += fixed.base
        if fixed.shift is not None:
            rhs -= fixed.shift
        A[:, np.arange(k1), np.arange(k1)] += terms.lam[:, None]
        if objective.cg_steps:
            w = cg_solve(A, rhs, x0, objective.cg_steps)
        elif bound is not None:
            w = nnls_solve(A, rhs, free=~bound)
        else:
            w = cholesky_solve(A, rhs)
        wAw = np.einsum("rk,rkl,rl->r", w, A, w)
    factors, bias = split_unknowns(w, objective.biases)
    return BlockSolution(rows=rows[start].astype(np.int64), factors=factors, bias=bias,
                         sse=data_term(terms.const, w, rhs, terms.lam, wAw),
                         penalty=terms.lam * np.einsum("rk,rk->r", w, w),
                         counts=counts.astype(np.int64))


def compiled_solve(rows: np.ndarray, F: np.ndarray, cols: np.ndarray, y: np.ndarray,
                   start: np.ndarray, counts: np.ndarray, lam: np.ndarray, max_gather: int,
                   weight: np.ndarray | None = None, base: np.ndarray | None = None,
                   bound: np.ndarray | None = None, shift: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mfspark.core.kernel.row_solve` (solutions and right-hand sides), with a row it
    cannot solve named in the :class:`SolveError` (its ``rows`` value and rating count)."""
    w, rhs, failed = kernel.row_solve(F, cols, y, start, counts, lam, max_gather,
                                      weight=weight, base=base, bound=bound, shift=shift)
    if failed:  # the 1-based position of the first failed row, negative: NNLS rounds
        at = abs(failed) - 1
        what = (NOT_POSITIVE_DEFINITE if failed > 0
                else "nonnegative least squares did not converge")
        raise SolveError(f"{what} (row {rows[start[at]]}, {counts[at]} ratings)")
    return w, rhs
