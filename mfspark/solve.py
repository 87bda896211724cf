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

How the normal equations are built (:func:`gram_method`, measured by
``benchmarks/gram_methods.py``): with Numba installed, one symmetric rank-k update (BLAS-3
``syrk``) per row on its gathered factor rows, fused with the row's Cholesky solve in one
compiled loop (:mod:`mfspark.kernel`), at every rank.  Without Numba it depends on the rank:
at low rank one sparse product of the rating-indicator matrix with the fixed rows' packed
outer products ``x_j x_j^T`` (SciPy), at higher rank the same per-row ``syrk`` in a Python
loop.  Every method
sums a row's terms in the order of its ratings, so a row's result never depends on which
other rows share its block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfspark import kernel

try:  # optional: the faster Gram methods; without SciPy every rank uses NumPy only
    from scipy import sparse as _sparse
    from scipy.linalg.blas import dsyrk as _dsyrk
    from scipy.linalg.lapack import dposv as _dposv
except ImportError:  # pragma: no cover - exercised where SciPy is absent
    _sparse = _dsyrk = _dposv = None

REG_SCALES = ("none", "count")

#: Upper bound on the number of float64 elements gathered at once (128 MiB); bounds the
#: memory a block needs whatever the skew of its rows' rating counts.
DEFAULT_MAX_GATHER = 1 << 24


def _slot_bytes(k1: int) -> int:
    """Bytes a padded gather slot takes with ``k1`` columns: the gathered row (float64), its
    rating index and column index (int64 at most), its mask (bool) and its right-hand side
    (float64)."""
    return 8 * k1 + 25


def gather_limit(block_memory_mb: int, rank: int) -> int:
    """The ``max_gather`` (float64 elements of gathered factor rows) whose gather
    temporaries fit in ``block_memory_mb`` MiB."""
    k1 = rank + 1
    return max(1, (block_memory_mb << 20) // _slot_bytes(k1)) * k1


def block_memory_bound(n_ratings: int, n_rows: int, rank: int, block_memory_mb: int) -> int:
    """Upper bound (bytes) on what :func:`solve_block` allocates for one block: the gather
    budget plus the block's own arrays, which grow with its ratings and rows only.

    Per rating (independent of the rank: factor rows are gathered only within the budget):
    the sort order and sorted copies of the inputs, the targets ``y`` and the temporaries of
    the sortedness check and of the row boundaries, at most 16 eight-byte values; per row:
    its Gram matrix, right-hand side and Cholesky factor, and a few vectors.
    """
    k1 = rank + 1
    per_rating = 8 * 16
    per_row = 8 * (3 * k1 * k1 + 4 * k1 + 8)
    return (block_memory_mb << 20) + n_ratings * per_rating + n_rows * per_row + (1 << 20)


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


def augmented(fixed_factors: np.ndarray) -> np.ndarray:
    """The fixed side's augmented vectors ``x_j = [v_j, 1]`` as float64 rows."""
    n, k = fixed_factors.shape
    F = np.empty((n, k + 1), dtype=np.float64)
    F[:, :k] = fixed_factors
    F[:, k] = 1.0
    return F


#: Gram methods: ``compiled`` (``rows`` fused with the solve in one compiled loop,
#: :mod:`mfspark.kernel`; Numba), ``sparse`` (indicator matrix times packed outer products;
#: SciPy), ``rows`` (one ``syrk`` per row), ``bucket`` (stacked products on padded gathers;
#: NumPy only).
GRAM_METHODS = ("auto", "compiled", "sparse", "rows", "bucket")

#: Largest ``K + 1`` for which ``auto`` may pick ``sparse``: its cost grows with ``(K + 1)^2``
#: per rating on scalar multiply-adds, the per-row products run at BLAS-3 speed.
SPARSE_MAX_K1 = 12

#: ``auto`` picks ``sparse`` when a block's mean ratings per row times ``(K + 1)^2`` is at
#: most this: ``sparse`` costs about the same per rating (about 1 ns per ``(K + 1)^2``
#: more than ``rows``), ``rows`` costs about 19 us more per row (its Python loop, one
#: ``posv`` per row).  Measured by ``benchmarks/gram_methods.py`` on one core: at rank 10
#: the user side (100 ratings per row) is faster with ``sparse``, 0.83 s against 1.15 s,
#: the item side (250 per row) with ``rows``, 0.58 s against 0.93 s.
SPARSE_MAX_WORK = 20_000


def gram_method(k1: int, n_fixed: int, max_gather: int, method: str = "auto",
                mean_count: float | None = None, fused: bool = True) -> str:
    """The Gram method ``normal_equations`` uses for ``k1 = K + 1`` columns (``K`` without
    biases) and a fixed side of ``n_fixed`` rows.

    ``auto`` picks ``compiled`` wherever :func:`mfspark.kernel.available` and the caller
    solves the systems right away (``fused``: :func:`solve_block`; the compiled loop never
    returns Gram matrices): ``benchmarks/gram_methods.py`` measured it the fastest on both
    sides of the 5M set at ranks 10, 50 and 100 but one pair, within the noise (item side,
    rank 50); otherwise
    ``sparse`` at low rank (``k1 <= SPARSE_MAX_K1``) when SciPy is installed,
    the fixed side's packed outer products (``n_fixed * k1 (k1 + 1) / 2`` doubles) fit the
    gather budget and, given the block's ``mean_count`` (ratings per row), rows are short
    enough that the per-row loop's fixed cost outweighs its faster products
    (:data:`SPARSE_MAX_WORK`); ``rows`` otherwise when SciPy is installed, and the NumPy-only
    ``bucket`` method without SciPy.
    """
    if method not in GRAM_METHODS:
        raise ValueError(f"gram method must be one of {GRAM_METHODS}, got {method!r}")
    if method != "auto":
        if method in ("sparse", "rows") and _sparse is None:
            raise ValueError(f"gram method {method!r} needs SciPy (pip install scipy)")
        if method == "compiled" and not kernel.available():
            raise ValueError("gram method 'compiled' needs Numba (pip install numba) and "
                             f"{kernel.KERNEL_ENV} not set to 'python'")
        return method
    if fused and kernel.available():
        return "compiled"
    if _sparse is None:
        return "bucket"
    short_rows = mean_count is None or mean_count * k1 * k1 <= SPARSE_MAX_WORK
    if k1 <= SPARSE_MAX_K1 and n_fixed * k1 * (k1 + 1) // 2 <= max_gather and short_rows:
        return "sparse"
    return "rows"


def normal_equations(F: np.ndarray, cols: np.ndarray, y: np.ndarray, start: np.ndarray,
                     counts: np.ndarray, max_gather: int = DEFAULT_MAX_GATHER,
                     method: str = "auto", weight: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's Gram matrix ``X_i^T W_i X_i`` and right-hand side ``X_i^T y_i``, where
    ``X_i = F[cols[start_i : start_i + counts_i]]`` and ``W_i`` holds the ratings' ``weight``
    (>= 0; None: all ones, the explicit model; implicit feedback weighs by ``c - 1``), by the
    method :func:`gram_method` chooses.

    ``cols``/``y`` hold the ratings sorted by row; every row has at least one rating.
    """
    method = gram_method(F.shape[1], len(F), max_gather, method, fused=False)
    if method == "sparse":
        return _sparse_normal_equations(F, cols, y, start, counts, weight)
    if method in ("rows", "compiled"):  # compiled, asked for by name: its loop is rows
        return _row_normal_equations(F, cols, y, start, counts, max_gather, weight)
    return _bucket_normal_equations(F, cols, y, start, counts, max_gather, weight)


def _indicator(values: np.ndarray, cols: np.ndarray, start: np.ndarray, counts: np.ndarray,
               n_fixed: int):
    """The (rows x fixed) CSR matrix with ``values`` at each of row ``r``'s positions
    ``start[r] .. start[r] + counts[r] - 1``."""
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    if indptr[-1] == len(cols) and np.array_equal(start, indptr[:-1]):
        # the rows' ratings are the whole arrays, in row order (solve_block's case): no copy
        return _sparse.csr_matrix((values, cols, indptr), shape=(len(counts), n_fixed))
    # the positions of every row's ratings, in row order
    pos = np.repeat(start - indptr[:-1], counts) + np.arange(indptr[-1])
    return _sparse.csr_matrix((values[pos], cols[pos], indptr), shape=(len(counts), n_fixed))


def _sparse_normal_equations(F: np.ndarray, cols: np.ndarray, y: np.ndarray,
                             start: np.ndarray, counts: np.ndarray,
                             weight: np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """``gram = S P`` with ``S`` the rows' rating-indicator matrix and ``P`` the fixed rows'
    upper-triangular outer products, ``rhs = S_y F`` with ``S_y`` holding the targets."""
    n_rows, k1 = len(counts), F.shape[1]
    upper = np.triu_indices(k1)
    packed = F[:, upper[0]] * F[:, upper[1]]
    ones = np.ones(len(cols)) if weight is None else weight
    tri = _indicator(ones, cols, start, counts, len(F)) @ packed
    gram = np.empty((n_rows, k1, k1))
    gram[:, upper[0], upper[1]] = tri
    gram[:, upper[1], upper[0]] = tri
    rhs = _indicator(y, cols, start, counts, len(F)) @ F
    return gram, np.asarray(rhs)


def _row_normal_equations(F: np.ndarray, cols: np.ndarray, y: np.ndarray, start: np.ndarray,
                          counts: np.ndarray, max_gather: int,
                          weight: np.ndarray | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """One BLAS-3 ``syrk`` (lower triangle) per row on its gathered factor rows; rows longer
    than the gather budget are accumulated in slices."""
    n_rows, k1 = len(counts), F.shape[1]
    gram = np.empty((n_rows, k1, k1))
    step = max(1, max_gather // k1)
    for r in range(n_rows):
        lo, n = int(start[r]), int(counts[r])
        if n > step:
            gram[r], _ = _long_row(F, cols, y, lo, n, step, weight)
            continue
        X = F[cols[lo:lo + n]]  # (n, k1) C-ordered: X.T is the Fortran (k1, n) syrk wants
        if weight is not None:
            X *= np.sqrt(weight[lo:lo + n])[:, None]
        gram[r] = _dsyrk(1.0, X.T, lower=1)
    lower = np.tril_indices(k1, -1)
    gram[:, lower[1], lower[0]] = gram[:, lower[0], lower[1]]
    rhs = np.asarray(_indicator(y, cols, start, counts, len(F)) @ F)
    return gram, rhs


def _row_solve(F: np.ndarray, cols: np.ndarray, y: np.ndarray, start: np.ndarray,
               counts: np.ndarray, lam_rows: np.ndarray, max_gather: int,
               dual_below: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows`` method fused with the solve: per row one ``syrk``, one ``gemv`` and one
    Cholesky solve (LAPACK ``posv``), so no stack of Gram matrices is ever allocated.
    Returns the solutions and the right-hand sides.

    Rows with few ratings (``n`` below :func:`dual_limit`, at most ``K + 1``) are solved in
    their dual form, stacked by ``n`` (:func:`_dual_rows`): ``n x n`` systems instead of
    ``(K + 1) x (K + 1)``, the same solutions, and no Python loop over those rows.
    ``dual_below`` overrides that limit (``benchmarks/gram_methods.py --dual`` times both
    forms with it).
    """
    n_rows, k1 = len(counts), F.shape[1]
    w = np.empty((n_rows, k1))
    rhs = np.empty((n_rows, k1))
    step = max(1, max_gather // k1)
    # (lam = 0: the primal's singularity is reported)
    limit = dual_limit(k1) if dual_below is None else dual_below
    short = (counts < limit) & (lam_rows > 0)
    if short.any():
        _dual_rows(F, cols, y, start, counts, lam_rows, np.flatnonzero(short), max_gather,
                   w, rhs)
    long = np.flatnonzero(~short)
    if not len(long):
        return w, rhs
    # one gather buffer and one Gram matrix for every row (no allocation per row); ``take``
    # into the buffer with mode="clip" skips NumPy's buffering of ``out`` (solve_block
    # checked the indices)
    buffer = np.empty((min(step, int(counts[long].max())), k1))
    G = np.empty((k1, k1))
    diagonal = G.reshape(-1)[::k1 + 1]  # a view: adds lam in place, no index per row
    for r, lo, n, lam in zip(long.tolist(), start[long].tolist(), counts[long].tolist(),
                             lam_rows[long].tolist()):
        if n > step:
            G[:], rhs[r] = _long_row(F, cols, y, lo, n, step)
        else:
            X = buffer[:n]
            np.take(F, cols[lo:lo + n], axis=0, out=X, mode="clip")
            np.matmul(X.T, y[lo:lo + n], out=rhs[r])
            # NumPy recognizes the transpose: one BLAS-3 syrk, both triangles
            np.matmul(X.T, X, out=G)
        diagonal += lam
        # symmetric: the transpose is the same matrix, in the Fortran order LAPACK wants
        # (factored in place: G is refilled for the next row)
        _, w[r], info = _dposv(G.T, rhs[r], lower=1, overwrite_a=1)
        if info != 0:
            raise SolveError(_NOT_POSITIVE_DEFINITE)
    return w, rhs


def dual_limit(k1: int) -> int:
    """Rows with fewer ratings than this are solved in dual form (:func:`_dual_rows`).

    The dual's ``n x n`` systems cost less than the primal's ``(K + 1) x (K + 1)`` ones only
    while ``n`` is well below ``K + 1``: its stacked products and LU run far from BLAS-3
    speed as ``n`` grows.  Measured by ``benchmarks/gram_methods.py --dual`` (one core), the
    crossover is at ``n = K + 1`` up to rank 20, about 30 at rank 50, 40 to 50 at rank 100
    and about 80 at rank 200.
    """
    return min(k1, max(30, (2 * k1) // 5))


_NOT_POSITIVE_DEFINITE = ("a normal-equation matrix is not positive definite "
                          "(is the regularization lambda > 0?)")


def _dual_rows(F: np.ndarray, cols: np.ndarray, y: np.ndarray, start: np.ndarray,
               counts: np.ndarray, lam_rows: np.ndarray, rows: np.ndarray, max_gather: int,
               w: np.ndarray, rhs: np.ndarray) -> None:
    """Solve the short ``rows`` (``n`` ratings, below :func:`dual_limit`, ``lam > 0``) in dual
    form, ``w = X^T (X X^T + lam I)^-1 y``, into ``w`` and ``rhs``.

    The identity ``(X^T X + lam I) X^T = X^T (X X^T + lam I)`` makes this the ridge solution
    ``(X^T X + lam I)^-1 X^T y``; the ``n x n`` system costs ``n^2 (K + 1)`` instead of
    ``n (K + 1)^2 + (K + 1)^3 / 3``.  Rows of equal ``n`` are stacked (at most ``max_gather``
    gathered elements at a time), so a row's result depends only on its own ratings.
    """
    k1 = F.shape[1]
    lengths = counts[rows]
    for n in np.unique(lengths).tolist():
        members = rows[lengths == n]
        per_chunk = max(1, max_gather // (n * k1))
        offsets = np.arange(n)
        diagonal = np.arange(n)
        for lo in range(0, len(members), per_chunk):
            chunk = members[lo:lo + per_chunk]
            idx = start[chunk][:, None] + offsets  # (g, n) rating positions
            X = F[cols[idx]]  # (g, n, k1)
            yv = y[idx][..., None]  # (g, n, 1)
            Xt = X.transpose(0, 2, 1)
            rhs[chunk] = (Xt @ yv)[..., 0]
            outer = X @ Xt  # (g, n, n)
            outer[:, diagonal, diagonal] += lam_rows[chunk][:, None]
            try:
                dual = np.linalg.solve(outer, yv)
            except np.linalg.LinAlgError as err:
                raise SolveError(_NOT_POSITIVE_DEFINITE) from err
            w[chunk] = (Xt @ dual)[..., 0]


def _bucket_normal_equations(F: np.ndarray, cols: np.ndarray, y: np.ndarray,
                             start: np.ndarray, counts: np.ndarray, max_gather: int,
                             weight: np.ndarray | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """NumPy only: rows are bucketed by their count rounded
    up to a power of two and each bucket is computed as one stacked matrix product on
    zero-padded gathers of ``F`` (padding adds exact zeros), at most ``max_gather`` elements
    at a time (temporaries updated in place, so a chunk takes ``max_gather / (K + 1)`` slots
    of :func:`_slot_bytes`).  A row's result depends only on its own ratings and their order,
    never on which other rows share its block.
    """
    n_rows, k1 = len(counts), F.shape[1]
    gram = np.empty((n_rows, k1, k1))
    rhs = np.empty((n_rows, k1))
    padded = np.int64(1) << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    for length in np.unique(padded):
        members = np.flatnonzero(padded == length)
        per_chunk = max_gather // (int(length) * k1)
        if per_chunk == 0:  # one row alone is larger than the gather budget
            for r in members:
                gram[r], rhs[r] = _long_row(F, cols, y, start[r], counts[r], max_gather // k1,
                                            weight)
            continue
        offsets = np.arange(length)
        for lo in range(0, len(members), per_chunk):
            chunk = members[lo:lo + per_chunk]
            mask = offsets[None, :] < counts[chunk][:, None]
            idx = start[chunk][:, None] + offsets[None, :]
            np.multiply(idx, mask, out=idx)  # padding slots point at rating 0 ...
            G = F[cols[idx]]
            G *= mask[..., None]  # ... and are zeroed
            yv = y[idx]
            yv *= mask
            Gt = G.transpose(0, 2, 1)
            rhs[chunk] = (Gt @ yv[..., None])[..., 0]
            if weight is not None:  # rows scaled by sqrt(weight): G^T G = X^T W X
                G *= np.sqrt(weight[idx])[..., None]
            gram[chunk] = Gt @ G
    return gram, rhs


def _long_row(F: np.ndarray, cols: np.ndarray, y: np.ndarray, start: int, count: int,
              step: int, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations of one very long row, accumulated over slices of ``step`` ratings."""
    k1 = F.shape[1]
    step = max(step, 1)
    gram, rhs = np.zeros((k1, k1)), np.zeros(k1)
    for lo in range(start, start + count, step):
        X = F[cols[lo:min(lo + step, start + count)]]
        rhs += X.T @ y[lo:lo + len(X)]
        if weight is not None:  # rows scaled by sqrt(weight): X^T W X, exactly symmetric
            X *= np.sqrt(weight[lo:lo + len(X)])[:, None]
        gram += X.T @ X
    return gram, rhs


def cholesky_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the stacked SPD systems ``gram[r] w[r] = rhs[r]`` by Cholesky.

    ``numpy.linalg.cholesky`` factors the whole stack in C; the two triangular solves are
    vectorized over the stack, one column at a time.
    """
    try:
        L = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError as err:
        raise SolveError(_NOT_POSITIVE_DEFINITE) from err
    k1 = rhs.shape[1]
    z = np.empty_like(rhs)
    for j in range(k1):
        z[:, j] = (rhs[:, j] - np.einsum("bk,bk->b", L[:, j, :j], z[:, :j])) / L[:, j, j]
    w = np.empty_like(rhs)
    for j in range(k1 - 1, -1, -1):
        w[:, j] = (z[:, j] - np.einsum("bk,bk->b", L[:, j + 1:, j], w[:, j + 1:])) / L[:, j, j]
    return w


def row_starts(rows: np.ndarray) -> np.ndarray:
    """Positions where a new row begins in ``rows`` sorted by row (int64; empty when there
    are no ratings)."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])


def compiled_solve(rows: np.ndarray, F: np.ndarray, cols: np.ndarray, y: np.ndarray,
                   start: np.ndarray, counts: np.ndarray, lam_rows: np.ndarray,
                   max_gather: int, weight: np.ndarray | None = None,
                   base: np.ndarray | None = None,
                   bound: np.ndarray | None = None, shift: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mfspark.kernel.row_solve` (solutions and right-hand sides), with a row it
    cannot solve named in the :class:`SolveError` (its ``rows`` value and rating count)."""
    w, rhs, failed = kernel.row_solve(F, cols, y, start, counts, lam_rows, max_gather,
                                      weight=weight, base=base, bound=bound, shift=shift)
    if failed:  # the 1-based position of the first failed row, negative: NNLS rounds
        at = abs(failed) - 1
        what = (_NOT_POSITIVE_DEFINITE if failed > 0
                else "nonnegative least squares did not converge")
        raise SolveError(f"{what} (row {rows[start[at]]}, {counts[at]} ratings)")
    return w, rhs


def solve_block(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray,
                fixed_factors: np.ndarray, fixed_bias: np.ndarray, mu: float,
                lam: float, reg_scale: str,
                max_gather: int = DEFAULT_MAX_GATHER, biases: bool = True,
                method: str = "auto") -> BlockSolution:
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
    method : str
        How the normal equations are built (:func:`gram_method`); every method gives the
        same systems up to rounding.
    """
    rows = np.asarray(rows)
    cols = np.asarray(cols)
    ratings = np.asarray(ratings, dtype=np.float64)
    if len(cols) and (cols.min() < 0 or cols.max() >= len(fixed_factors)):
        raise IndexError(f"a column index is outside the fixed side's {len(fixed_factors)} "
                         f"rows (range {cols.min()}..{cols.max()})")
    if not _sorted(rows, cols, ratings):
        # a row's ratings in one fixed order (ties broken by rating): deterministic sums
        order = np.lexsort((ratings, cols, rows))
        rows, cols, ratings = rows[order], cols[order], ratings[order]
    start = row_starts(rows)
    counts = np.diff(np.r_[start, len(rows)])
    y = ratings - fixed_bias[cols] - mu
    F = augmented(fixed_factors) if biases else np.asarray(fixed_factors, dtype=np.float64)
    lam_rows = regularization(counts, lam, reg_scale)
    method = gram_method(F.shape[1], len(F), max_gather, method,  # chosen once
                         mean_count=len(rows) / max(len(start), 1))
    if method == "compiled":
        w, rhs = compiled_solve(rows, F, cols, y, start, counts, lam_rows, max_gather)
    elif method == "rows":
        w, rhs = _row_solve(F, cols, y, start, counts, lam_rows, max_gather)
    else:
        gram, rhs = normal_equations(F, cols, y, start, counts, max_gather, method)
        k1 = gram.shape[1]
        gram[:, np.arange(k1), np.arange(k1)] += lam_rows[:, None]
        w = cholesky_solve(gram, rhs)
    # squared residuals without another gather: ||y - X w||^2 = y.y - w.rhs - lam ||w||^2,
    # since (X^T X + lam I) w = rhs
    yy = np.add.reduceat(y * y, start) if len(start) else np.zeros(0)
    sse = yy - np.einsum("rk,rk->r", w, rhs) - lam_rows * np.einsum("rk,rk->r", w, w)
    factors, bias = split_unknowns(w, biases)
    return BlockSolution(rows=rows[start].astype(np.int64), factors=factors, bias=bias,
                         sse=np.maximum(sse, 0.0), counts=counts.astype(np.int64))


def split_unknowns(w: np.ndarray, biases: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row's solved ``[u; b]`` as ``(factors, bias)``; without ``biases`` all of ``w``
    is factors and the bias is zero."""
    if biases:
        return w[:, :-1].copy(), w[:, -1].copy()
    return w, np.zeros(len(w))


def _sorted(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray) -> bool:
    """Whether (rows, cols, ratings) is already in lexicographic order (one O(n) pass)."""
    if len(rows) < 2:
        return True
    dr, dc = np.diff(rows), np.diff(cols)
    same_col = (dc == 0) & (ratings[1:] >= ratings[:-1])
    return bool(np.all((dr > 0) | ((dr == 0) & ((dc > 0) | same_col))))
