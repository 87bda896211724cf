"""The packed encoding of a block's ratings: a few buffers of the smallest exact types.

A block's ratings, sorted by row, are stored in chunks, each as three byte strings:

- ``rows``: run lengths, the distinct rows then their counts (``int32``), a few bytes per
  row instead of four per rating;
- ``cols``: ``uint16`` when every index is below 65,536, else ``int32``;
- ``ratings``: one byte per rating when every rating is a multiple of 0.5 in
  ``[0, 127.5]`` (star ratings), else ``float32`` when that is exact, else ``float64``.

Handing a block to Python is then a copy of a few buffers instead of a row-by-row
conversion, and a cached block takes 3 to 12 bytes per rating.  :func:`checksum` is an
order-free fingerprint of the triples, so that chunk sums add up to the data set's.
"""

from __future__ import annotations

import numpy as np

from mfspark.core.normal import row_starts

_PRIME = 2_147_483_647  # checksum terms stay below 2^31: the sum of 2^32 of them fits a long


def checksum(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray) -> int:
    """Order-free fingerprint of (row, col, rating) triples: the sum of a 64-bit mix of each
    triple, reduced modulo a prime (so chunk sums add up in a long)."""
    with np.errstate(over="ignore"):
        h = (rows.astype(np.uint64) << np.uint64(32)) | cols.astype(np.uint32).astype(np.uint64)
        h ^= np.asarray(ratings, dtype=np.float64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return int(np.sum(h % np.uint64(_PRIME), dtype=np.uint64))


def encode(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray
           ) -> tuple[bytes, bytes, bytes]:
    """One packed chunk (ratings sorted by row) as the smallest exact bytes (module
    docstring); :func:`decode` infers each encoding from the byte lengths and ``n``."""
    starts = row_starts(rows)
    runs = np.concatenate([rows[starts], np.diff(np.r_[starts, len(rows)])]).astype(np.int32)
    return (runs.tobytes(), *encode_values(cols, ratings))


def encode_values(cols: np.ndarray, ratings: np.ndarray) -> tuple[bytes, bytes]:
    """``cols`` and ``ratings`` in :func:`encode`'s smallest exact encodings."""
    small = len(cols) == 0 or int(cols.max()) < 1 << 16
    values = np.asarray(ratings, dtype=np.float64)
    halves = values * 2
    if np.array_equal(halves, np.round(halves)) and np.all((halves >= 0) & (halves <= 255)):
        coded = halves.astype(np.uint8).tobytes()
    else:
        as32 = values.astype(np.float32)
        exact = np.array_equal(as32.astype(np.float64), values, equal_nan=True)
        coded = (as32 if exact else values).tobytes()
    return cols.astype(np.uint16 if small else np.int32).tobytes(), coded


def decode(n: int, rows: bytes, cols: bytes, ratings: bytes
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One packed chunk's ``(rows, cols, ratings)`` arrays: ``int32``, ``int32`` and
    ``float32`` or ``float64`` (see :func:`encode`)."""
    runs = np.frombuffer(rows, dtype=np.int32)
    if len(runs) % 2:
        raise ValueError(f"a packed chunk of {n} ratings holds {len(runs)} run-length values, "
                         "not (row, count) pairs: the cached block is damaged")
    r = np.repeat(runs[:len(runs) // 2], runs[len(runs) // 2:])
    return (r, *decode_values(n, len(r), cols, ratings))


def decode_values(n: int, n_rows: int, cols: bytes, ratings: bytes
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`encode_values`'s ``cols`` (as ``int32``) and ratings of ``n`` ratings."""
    col_type = {2 * n: np.uint16, 4 * n: np.int32}.get(len(cols))
    rating_type = {n: np.uint8, 4 * n: np.float32, 8 * n: np.float64}.get(len(ratings))
    if n_rows != n or col_type is None or rating_type is None:
        raise ValueError(f"a packed chunk of {n} ratings decodes to {n_rows} rows, "
                         f"{len(cols)} bytes of columns and {len(ratings)} bytes of ratings: "
                         "the cached block is damaged")
    v = np.frombuffer(ratings, dtype=rating_type)
    return (np.frombuffer(cols, dtype=col_type).astype(np.int32),
            v * 0.5 if rating_type is np.uint8 else v)


def decode_piece(rows: bytes, cols: bytes, ratings: bytes
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One unsorted piece's arrays: ``int32`` rows (not run-length coded), then ``cols`` and
    ratings as in a packed chunk."""
    r = np.frombuffer(rows, dtype=np.int32)
    return (r, *decode_values(len(r), len(r), cols, ratings))


def sort_order(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """The permutation sorting ratings by (row, col, rating): one sort of a 64-bit
    (row, col) key, and a three-key sort only if some (row, col) pair repeats."""
    key = (rows.astype(np.int64) << 32) | cols.astype(np.int64)  # indices are >= 0
    order = np.argsort(key)  # unstable, faster: distinct keys have one order anyway
    ordered = key[order]
    if len(key) > 1 and np.any(ordered[1:] == ordered[:-1]):  # ties: break them by rating
        order = np.lexsort((ratings, key))
    return order


