"""The byte encodings of the partitioned ratings and of factor rows, and the block of a key.

Rows and columns are *keys*: ``int64`` identifiers of users and items (the IDs themselves
when they are integral).  A block's training ratings, sorted by row, are stored in chunks,
each as three byte strings in the smallest exact encoding:

- ``rows``: run lengths, the distinct row keys (``int64``) then their counts (``int32``);
- ``cols``: positions into the block's sorted list of the fixed-side keys it references
  (its *needs*), ``uint16`` when every position is below 65,536, else ``int32``;
- ``ratings``: one byte per rating when every rating is a multiple of 0.5 in
  ``[0, 127.5]`` (star ratings), else ``float32`` when that is exact, else ``float64``.

Handing a block to Python is then a copy of a few buffers, and a cached block takes 3 to 12
bytes per rating.  Held-out ratings use positions for both rows and columns (``int32``; -1
where the key is unknown to training).  Factor rows travel as one blob per chunk
(:func:`encode_factors`): keys, biases (``float64``) and factors (``float64`` or
``float32``).  :func:`checksum` is an order-free fingerprint of rating triples.
"""

from __future__ import annotations

import numpy as np

from mfspark.core.normal import row_starts

_PRIME = 2_147_483_647  # checksum terms stay below 2^31: the sum of 2^32 of them fits a long
#: SplitMix64's constants: the golden-ratio increment and the finalizer's two multipliers
#: (shared with the compiled seeded start, :mod:`mfspark.core.kernel.seeded`).
GOLDEN, MIX_A, MIX_B = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_GOLDEN = np.uint64(GOLDEN)
#: Bytes per factor value of each storage type (the blob header records it).
FACTOR_TYPES = {8: np.float64, 4: np.float32}


def splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer, elementwise on ``uint64`` (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(MIX_A)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(MIX_B)
        return x ^ (x >> np.uint64(31))


def mix(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key (SplitMix64: the golden increment, then the finalizer)."""
    with np.errstate(over="ignore"):
        return splitmix(np.asarray(keys, dtype=np.int64).view(np.uint64) * _GOLDEN)


def block_of(keys: np.ndarray, num_blocks: int) -> np.ndarray:
    """The block (``0 .. num_blocks - 1``, ``int32``) of each key: a hash, so that blocks are
    balanced whatever pattern the IDs follow."""
    return (mix(keys) % np.uint64(num_blocks)).astype(np.int32)


def checksum(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray) -> int:
    """Order-free fingerprint of (row key, col key, rating) triples: the sum of a 64-bit
    mix of each triple, reduced modulo a prime (so chunk sums add up in a long)."""
    with np.errstate(over="ignore"):
        h = mix(rows) ^ (mix(cols) * _GOLDEN)
        h ^= np.asarray(ratings, dtype=np.float64).view(np.uint64) * _GOLDEN
        h = mix(h.view(np.int64))
    return int(np.sum(h % np.uint64(_PRIME), dtype=np.uint64))


def encode_keys(keys: np.ndarray) -> bytes:
    """Keys as ``int64`` bytes."""
    return np.ascontiguousarray(keys, dtype=np.int64).tobytes()


def decode_keys(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int64)


def encode_chunk(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray
                 ) -> tuple[bytes, bytes, bytes]:
    """A chunk of training ratings sorted by row (``rows``: keys, ``cols``: positions into
    the block's needs) as the module docstring's bytes; :func:`decode_chunk` infers each
    encoding from the byte lengths and ``n``."""
    starts = row_starts(rows)
    keys = np.asarray(rows, dtype=np.int64)[starts]
    counts = np.diff(np.r_[starts, len(rows)]).astype(np.int32)
    return (encode_keys(keys) + counts.tobytes(), *encode_values(cols, ratings))


def decode_chunk(n: int, rows: bytes, cols: bytes, ratings: bytes
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's ``(row keys, col positions, ratings)``: ``int64``, ``int32`` and
    ``float32`` or ``float64``."""
    if len(rows) % 12:
        raise ValueError(f"a packed chunk of {n} ratings holds {len(rows)} bytes of row runs, "
                         "not (key, count) pairs: the cached block is damaged")
    m = len(rows) // 12
    keys = np.frombuffer(rows, dtype=np.int64, count=m)
    counts = np.frombuffer(rows, dtype=np.int32, offset=8 * m)
    return (np.repeat(keys, counts), *decode_values(n, int(counts.sum()), cols, ratings))


def encode_values(cols: np.ndarray, ratings: np.ndarray) -> tuple[bytes, bytes]:
    """``cols`` (positions, -1 allowed) and ``ratings`` in their smallest exact
    encodings."""
    small = len(cols) == 0 or (int(cols.min()) >= 0 and int(cols.max()) < 1 << 16)
    values = np.asarray(ratings, dtype=np.float64)
    halves = values * 2
    if np.array_equal(halves, np.round(halves)) and np.all((halves >= 0) & (halves <= 255)):
        coded = halves.astype(np.uint8).tobytes()
    else:
        as32 = values.astype(np.float32)
        exact = np.array_equal(as32.astype(np.float64), values, equal_nan=True)
        coded = (as32 if exact else values).tobytes()
    return np.asarray(cols).astype(np.uint16 if small else np.int32).tobytes(), coded


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


def encode_positions(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray
                     ) -> tuple[bytes, bytes, bytes]:
    """Held-out ratings: row and column positions (``int32``, -1: unknown) and ratings."""
    return (np.ascontiguousarray(rows, dtype=np.int32).tobytes(),
            *encode_values(np.asarray(cols, dtype=np.int32), ratings))


def decode_positions(n: int, rows: bytes, cols: bytes, ratings: bytes
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.frombuffer(rows, dtype=np.int32)
    return (r, *decode_values(n, len(r), cols, ratings))


def encode_factors(keys: np.ndarray, bias: np.ndarray, factors: np.ndarray,
                   value_bytes: int = 8) -> bytes:
    """Factor rows as one blob: a header (rows, rank, bytes per factor value), the keys
    (``int64``), the biases (``float64``) and the factors (``float64``, or ``float32``
    with ``value_bytes=4``), row-major."""
    n, rank = factors.shape
    header = np.array([n, rank, value_bytes], dtype=np.int64)
    return b"".join([header.tobytes(), encode_keys(keys),
                     np.ascontiguousarray(bias, dtype=np.float64).tobytes(),
                     np.ascontiguousarray(factors, dtype=FACTOR_TYPES[value_bytes]).tobytes()])


def decode_factors(blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keys, bias, factors)`` of an :func:`encode_factors` blob (views on its bytes)."""
    n, rank, value_bytes = (int(v) for v in np.frombuffer(blob, dtype=np.int64, count=3))
    expected = 24 + 16 * n + value_bytes * n * rank
    if value_bytes not in FACTOR_TYPES or len(blob) != expected:
        raise ValueError(f"a factor chunk of {n} rows x rank {rank} holds {len(blob)} bytes, "
                         f"expected {expected}: the factor files are damaged")
    keys = np.frombuffer(blob, dtype=np.int64, count=n, offset=24)
    bias = np.frombuffer(blob, dtype=np.float64, count=n, offset=24 + 8 * n)
    factors = np.frombuffer(blob, dtype=FACTOR_TYPES[value_bytes], count=n * rank,
                            offset=24 + 16 * n).reshape(n, rank)
    return keys, bias, factors


def sort_order(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """The permutation sorting ratings by (row, col, rating): for positions (non-negative,
    below 2^31) one sort of a 64-bit (row, col) key, and a three-key sort only if some
    (row, col) pair repeats."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    small = len(rows) == 0 or (min(rows.min(), cols.min()) >= 0
                               and max(rows.max(), cols.max()) < 1 << 31)
    if not small:
        return np.lexsort((ratings, cols, rows))
    key = (rows << 32) | cols
    order = np.argsort(key)  # unstable, faster: distinct keys have one order anyway
    ordered = key[order]
    if len(key) > 1 and np.any(ordered[1:] == ordered[:-1]):  # ties: break them by rating
        order = np.lexsort((ratings, key))
    return order
