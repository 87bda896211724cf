"""The block solver: the exact ALS half-step for one block of rows, in NumPy only.

This module holds the math of ``MODEL.md`` and nothing else (no pyspark import), so that it
can be tested in milliseconds and reused by every backend.  One function serves both
half-steps: for the user step the *rows* are users and the *fixed side* is the items'
``(V, c)``; for the item step the roles are swapped.

For every row ``i`` of the block the half-step solves the regularized least-squares system
on the augmented vectors ``x_j = [v_j, 1]``::

    (sum_j x_j x_j^T + lam_i I) [u_i; b_i] = sum_j (A_ij - c_j - mu) x_j

with ``lam_i = lam`` (``reg_scale="none"``) or ``lam * |Omega_i|`` (``reg_scale="count"``,
ALS-WR as in Spark MLlib).  Normal equations are accumulated in float64 with level-3 BLAS
(stacked ``G^T G`` products on each row's gathered factor rows) and solved by a batched
Cholesky factorization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REG_SCALES = ("none", "count")

#: Upper bound on the number of float64 elements gathered at once (128 MiB); bounds the
#: memory a block needs whatever the skew of its rows' rating counts.
DEFAULT_MAX_GATHER = 1 << 24


class SolveError(ValueError):
    """A block's systems could not be solved (not positive definite, or non-finite input)."""


@dataclass(frozen=True)
class BlockSolution:
    """New factors of the rows of one block.

    Attributes
    ----------
    rows : ndarray of int64, shape (n,)
        Dense indices of the solved rows, ascending.
    factors : ndarray of float64, shape (n, K)
        The new latent vectors (``u_i`` or ``v_j``).
    bias : ndarray of float64, shape (n,)
        The new biases (``b_i`` or ``c_j``).
    sse : ndarray of float64, shape (n,)
        Each row's sum of squared training residuals *after* the solve, so the driver gets
        the data term of the objective without another pass over the ratings.
    counts : ndarray of int64, shape (n,)
        Each row's number of ratings.
    """

    rows: np.ndarray
    factors: np.ndarray
    bias: np.ndarray
    sse: np.ndarray
    counts: np.ndarray


def init_factors(n: int, rank: int, seed: int) -> np.ndarray:
    """Seeded initial factors: i.i.d. N(0, 1/rank) entries, so each vector has norm ~1.

    The values depend only on ``(n, rank, seed)``, never on how the data is partitioned.
    """
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, rank)) / np.sqrt(max(rank, 1))


def regularization(counts: np.ndarray, lam: float, reg_scale: str) -> np.ndarray:
    """Per-row ridge weight ``lam_i``: ``lam`` or ``lam * |Omega_i|``."""
    if reg_scale not in REG_SCALES:
        raise ValueError(f"reg_scale must be one of {REG_SCALES}, got {reg_scale!r}")
    counts = np.asarray(counts, dtype=np.float64)
    return lam * counts if reg_scale == "count" else np.full_like(counts, lam)


def penalty(factors: np.ndarray, bias: np.ndarray, counts: np.ndarray,
            lam: float, reg_scale: str) -> float:
    """One side's regularization term of J: ``sum_i lam_i (||u_i||^2 + b_i^2)``."""
    sq = np.einsum("ik,ik->i", factors, factors) + bias * bias
    return float(regularization(counts, lam, reg_scale) @ sq)


def augmented(fixed_factors: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Gather ``x_j = [v_j, 1]`` for each rating's column, as float64 rows."""
    n, k = len(cols), fixed_factors.shape[1]
    X = np.empty((n, k + 1), dtype=np.float64)
    X[:, :k] = fixed_factors[cols]
    X[:, k] = 1.0
    return X


def normal_equations(X: np.ndarray, y: np.ndarray, start: np.ndarray, counts: np.ndarray,
                     max_gather: int = DEFAULT_MAX_GATHER) -> tuple[np.ndarray, np.ndarray]:
    """Each row's Gram matrix ``X_i^T X_i`` and right-hand side ``X_i^T y_i``.

    ``X``/``y`` hold the ratings sorted by row; row ``r`` owns ``X[start[r]:start[r]+counts[r]]``.
    Rows are bucketed by their count rounded up to a power of two and each bucket is computed
    as one stacked matrix product on zero-padded gathers (padding adds exact zeros), at most
    ``max_gather`` elements at a time.  A row's result depends only on its own ratings and
    their order, never on which other rows share its block.
    """
    n_rows, k1 = len(counts), X.shape[1]
    gram = np.empty((n_rows, k1, k1))
    rhs = np.empty((n_rows, k1))
    padded = np.int64(1) << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    for length in np.unique(padded):
        members = np.flatnonzero(padded == length)
        per_chunk = max_gather // (int(length) * k1)
        if per_chunk == 0:  # one row alone is larger than the gather budget
            for r in members:
                gram[r], rhs[r] = _long_row(X, y, start[r], counts[r], max_gather // k1)
            continue
        offsets = np.arange(length)
        for lo in range(0, len(members), per_chunk):
            chunk = members[lo:lo + per_chunk]
            mask = offsets[None, :] < counts[chunk][:, None]
            idx = np.where(mask, start[chunk][:, None] + offsets[None, :], 0)
            G = X[idx] * mask[..., None]
            Gt = G.transpose(0, 2, 1)
            gram[chunk] = Gt @ G
            rhs[chunk] = (Gt @ (y[idx] * mask)[..., None])[..., 0]
    return gram, rhs


def _long_row(X: np.ndarray, y: np.ndarray, start: int, count: int,
              step: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations of one very long row, accumulated over slices of ``step`` ratings."""
    k1 = X.shape[1]
    gram, rhs = np.zeros((k1, k1)), np.zeros(k1)
    for lo in range(start, start + count, max(step, 1)):
        hi = min(lo + max(step, 1), start + count)
        gram += X[lo:hi].T @ X[lo:hi]
        rhs += X[lo:hi].T @ y[lo:hi]
    return gram, rhs


def cholesky_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the stacked SPD systems ``gram[r] w[r] = rhs[r]`` by Cholesky.

    ``numpy.linalg.cholesky`` factors the whole stack in C; the two triangular solves are
    vectorized over the stack, one column at a time.
    """
    try:
        L = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError as err:
        raise SolveError("a normal-equation matrix is not positive definite "
                         "(is the regularization lambda > 0?)") from err
    k1 = rhs.shape[1]
    z = np.empty_like(rhs)
    for j in range(k1):
        z[:, j] = (rhs[:, j] - np.einsum("bk,bk->b", L[:, j, :j], z[:, :j])) / L[:, j, j]
    w = np.empty_like(rhs)
    for j in range(k1 - 1, -1, -1):
        w[:, j] = (z[:, j] - np.einsum("bk,bk->b", L[:, j + 1:, j], w[:, j + 1:])) / L[:, j, j]
    return w


def solve_block(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray,
                fixed_factors: np.ndarray, fixed_bias: np.ndarray, mu: float,
                lam: float, reg_scale: str,
                max_gather: int = DEFAULT_MAX_GATHER, biases: bool = True) -> BlockSolution:
    """Exact half-step for every row present in one block.

    Parameters
    ----------
    rows, cols : ndarray of int
        Dense row index (the side being solved) and column index (the fixed side) of each
        rating in the block, in any order.
    ratings : ndarray of float
        The observed ratings ``A_ij``.
    fixed_factors, fixed_bias : ndarray
        The fixed side's factors ``(N, K)`` and biases ``(N,)``, indexed by ``cols``.
    mu : float
        Global mean of the training ratings.
    lam : float
        Regularization strength; with ``reg_scale="count"`` it is multiplied by each row's
        rating count.
    biases : bool
        False fits ``u_i`` alone on ``x_j = v_j`` (no bias term; the returned ``bias`` is
        zero), for the model ``mu + u_i . v_j``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    # a row's ratings in one fixed order (ties broken by rating): deterministic sums
    order = np.lexsort((ratings, cols, rows))
    rows, cols, ratings = rows[order], cols[order], ratings[order]
    uniq, start, counts = np.unique(rows, return_index=True, return_counts=True)
    X = augmented(fixed_factors, cols) if biases else np.asarray(fixed_factors[cols], np.float64)
    y = ratings - fixed_bias[cols] - mu
    gram, rhs = normal_equations(X, y, start, counts, max_gather)
    k1 = X.shape[1]
    gram[:, np.arange(k1), np.arange(k1)] += regularization(counts, lam, reg_scale)[:, None]
    w = cholesky_solve(gram, rhs)
    resid = y - np.einsum("nk,nk->n", X, np.repeat(w, counts, axis=0))
    sse = np.add.reduceat(resid * resid, start) if len(start) else np.zeros(0)
    factors, bias = (w[:, :-1].copy(), w[:, -1].copy()) if biases else (w, np.zeros(len(w)))
    return BlockSolution(rows=uniq, factors=factors, bias=bias, sse=sse,
                         counts=counts.astype(np.int64))
