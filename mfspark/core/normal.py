"""The normal equations of a block's rows, in NumPy (and SciPy where installed).

For rows ``r`` of a block whose ratings are sorted by row (row ``r``'s ratings at positions
``start_r .. start_r + counts_r - 1``), each row's Gram matrix ``X_r^T W_r X_r`` and
right-hand side ``X_r^T y_r`` with ``X_r = F[cols[...]]``, accumulated in float64 with
level-3 BLAS.  Four methods build the same systems (:func:`gram_method`, measured by
``benchmarks/gram_methods.py``):

- ``compiled``: one ``syrk`` per row fused with the row's solve in one compiled loop
  (:mod:`mfspark.core.kernel`, Numba); the fastest at every rank measured, and the default;
- ``sparse``: one sparse product of the rating-indicator matrix with the fixed rows' packed
  outer products ``x_j x_j^T`` (SciPy; low rank, short rows);
- ``rows``: one BLAS-3 ``syrk`` per row on its gathered factor rows (SciPy);
- ``bucket``: stacked products on zero-padded gathers (NumPy only).

Every method sums a row's terms in the order of its ratings, so a row's result never depends
on which other rows share its block, and at most ``max_gather`` float64 elements of factor
rows are gathered at once (:func:`gather_limit` turns a memory budget into that number).
"""

from __future__ import annotations

import numpy as np

from mfspark.core import kernel

try:  # optional: the faster Gram methods; without SciPy every rank uses NumPy only
    from scipy import sparse as _sparse
    from scipy.linalg.blas import dsyrk as _dsyrk
except ImportError:  # pragma: no cover - exercised where SciPy is absent
    _sparse = _dsyrk = None

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
    """Upper bound (bytes) on what :func:`mfspark.core.block.solve_block` allocates for one
    block: the gather budget plus the block's own arrays, which grow with its ratings and
    rows only.

    Per rating (independent of the rank: factor rows are gathered only within the budget):
    the sort order and sorted copies of the inputs, the targets ``y`` and the temporaries of
    the sortedness check and of the row boundaries, at most 16 eight-byte values; per row:
    its Gram matrix, right-hand side and Cholesky factor, and a few vectors.
    """
    k1 = rank + 1
    per_rating = 8 * 16
    per_row = 8 * (3 * k1 * k1 + 4 * k1 + 8)
    return (block_memory_mb << 20) + n_ratings * per_rating + n_rows * per_row + (1 << 20)


#: Gram methods: ``compiled`` (``rows`` fused with the solve in one compiled loop,
#: :mod:`mfspark.core.kernel`; Numba), ``sparse`` (indicator matrix times packed outer products;
#: SciPy), ``rows`` (one ``syrk`` per row), ``bucket`` (stacked products on padded gathers;
#: NumPy only).
GRAM_METHODS = ("auto", "compiled", "sparse", "rows", "bucket")

#: Largest ``K + 1`` for which ``auto`` may pick ``sparse``: its cost grows with ``(K + 1)^2``
#: per rating on scalar multiply-adds, the per-row products run at BLAS-3 speed.
SPARSE_MAX_K1 = 12

#: ``auto`` picks ``sparse`` when a block's mean ratings per row times ``(K + 1)^2`` is at
#: most this: ``sparse`` costs about the same per rating (about 1 ns per ``(K + 1)^2``
#: more than ``rows``), ``rows`` costs about 19 us more per row (its Python loop).
#: Measured by ``benchmarks/gram_methods.py`` on one core: at rank 10 the user side (100
#: ratings per row) is faster with ``sparse``, 0.83 s against 1.15 s, the item side (250
#: per row) with ``rows``, 0.58 s against 0.93 s.
SPARSE_MAX_WORK = 20_000


def gram_method(k1: int, n_fixed: int, max_gather: int, method: str = "auto",
                mean_count: float | None = None, fused: bool = True) -> str:
    """The Gram method ``normal_equations`` uses for ``k1 = K + 1`` columns (``K`` without
    biases) and a fixed side of ``n_fixed`` rows.

    ``auto`` picks ``compiled`` wherever :func:`mfspark.core.kernel.available` and the
    caller solves the systems right away (``fused``: :func:`mfspark.core.block.solve_block`;
    the compiled loop never returns Gram matrices): ``benchmarks/gram_methods.py`` measured
    it the fastest on both sides of the 5M set at ranks 10, 50 and 100 but one pair, within
    the noise (item side, rank 50); otherwise ``sparse`` at low rank (``k1 <= SPARSE_MAX_K1``)
    when SciPy is installed,
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


def row_starts(rows: np.ndarray) -> np.ndarray:
    """Positions where a new row begins in ``rows`` sorted by row (int64; empty when there
    are no ratings)."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])


