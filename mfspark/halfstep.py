"""The Spark side of one ALS half-step.

The ratings are kept twice, each copy hash-partitioned by *block* (``row % num_blocks``) of
one side, one block per partition, and persisted: ``ratings_by_user`` (rows = users, cols =
items) and ``ratings_by_item`` (rows = items, cols = users).  A block is stored *packed*:
a few Spark rows (chunks of at most :data:`CHUNK_RATINGS` ratings), each holding the block's
ratings sorted by row as binary columns in the smallest exact encoding (:func:`encode`:
rows as run lengths, ``uint16`` or ``int32`` cols, one-byte star ratings or ``float32`` or
``float64``).  Handing a block to Python is then a copy of a few buffers instead of a
row-by-row Arrow conversion, and the cached copies take 3 to 12 bytes per rating (fewer
bytes also make each half-step's hand-off to Python faster).

A half-step broadcasts the fixed side's factors and biases, runs one grouped pandas UDF per
block (``groupBy("block")`` on a DataFrame already partitioned by ``block``, so no shuffle)
that calls :func:`mfspark.solve.solve_block`, and writes the new factors to Parquet.
"""

from __future__ import annotations

import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import Accumulator, AccumulatorParam, StorageLevel
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.solve import DEFAULT_MAX_GATHER, SolveError, row_starts, solve_block
# --- issue 8: implicit feedback / nonnegative factors ---
from mfspark.implicit import fixed_gramian
from mfspark.variants import solve_variant_block

#: What a half-step writes: each block's solved rows packed like the ratings, a few Parquet
#: rows per block (chunks of at most :data:`SOLUTION_CHUNK_BYTES`): ``n`` rows' dense indices
#: (``int32``), biases (``float64``) and factors (``float64``, ``n x K`` row-major), and the
#: chunk's summed squared residuals.  :func:`mfspark.io.factors.read_side` reads it back.
SOLUTION_SCHEMA = ("block int, chunk int, n int, rank int, idx binary, bias binary, "
                   "features binary, sse double")
#: Upper bound on one packed solution chunk's bytes: small enough that the JVM's Arrow and
#: Parquet buffers for a value stay small (a 20 MB value per block at rank 100 exhausted a
#: 1 GB driver heap in local mode), large enough that a block is a handful of rows.
SOLUTION_CHUNK_BYTES = 4 << 20

#: Parquet writer options of the factor files: raw doubles do not compress, and a
#: dictionary or min/max statistics of multi-megabyte binary values only cost time (about
#: 0.1 s per rank-100 half-step, measured).
FACTOR_WRITE_OPTIONS = {"compression": "none", "parquet.enable.dictionary": "false",
                        "parquet.column.statistics.enabled": "false"}

#: One chunk of a packed block (see the module docstring); ``rating_sum`` and ``checksum``
#: give the global mean and the run fingerprint without unpacking.
PACKED_SCHEMA = ("block int, chunk int, n long, rows binary, cols binary, ratings binary, "
                 "rating_sum double, checksum long")
#: Unsorted pieces of blocks on their way to being packed (``side`` 0: rows are users, cols
#: items; 1: the transpose).
_PIECE_SCHEMA = "side int, block int, rows binary, cols binary, ratings binary"
#: Ratings per packed chunk (12-16 MiB): Arrow's 2 GiB binary limit per batch is far away.
CHUNK_RATINGS = 1 << 20
_PRIME = 2_147_483_647  # checksum terms stay below 2^31: the sum of 2^32 of them fits a long


@dataclass
class Side:
    """One side's current state on the driver, indexed by dense index.

    ``factors`` (n, K) and ``bias`` (n,) are float64; ``counts`` (n,) holds each row's
    number of training ratings (a row with none keeps zero factors and bias).
    """

    factors: np.ndarray
    bias: np.ndarray
    counts: np.ndarray

    @classmethod
    def zeros(cls, counts: np.ndarray, rank: int) -> "Side":
        return cls(np.zeros((len(counts), rank)), np.zeros(len(counts)), counts)

    def warm_start(self, biases: bool) -> np.ndarray:
        """The rows' current unknowns, where a conjugate-gradient half-step starts: the
        factors, with ``biases`` followed by the bias as a last column."""
        return np.column_stack([self.factors, self.bias]) if biases else self.factors


_LABELS: dict[tuple[str, int], list[int]] = {}


def block_labels(spark: SparkSession, num_blocks: int) -> list[int]:
    """Labels for blocks ``0..num_blocks-1`` that Spark's hash partitioner sends to distinct
    partitions: ``pmod(hash(label), num_blocks)`` is a bijection, so every partition holds
    exactly one block (plain ``0..n-1`` labels collide and leave cores idle).  Computed by
    Spark itself once per Spark version and block count in this process."""
    key = (spark.version, num_blocks)
    if key not in _LABELS:
        _LABELS[key] = _find_labels(spark, num_blocks)
    return list(_LABELS[key])


def _find_labels(spark: SparkSession, num_blocks: int) -> list[int]:
    found = (spark.range(0, 64 * num_blocks)
             .select(F.col("id").cast("int").alias("label"),
                     F.pmod(F.hash(F.col("id").cast("int")), F.lit(num_blocks)).alias("part"))
             .groupBy("part").agg(F.min("label").alias("label")).collect())
    labels = {r["part"]: r["label"] for r in found}
    if len(labels) < num_blocks:  # astronomically unlikely with 64 candidates per partition
        raise RuntimeError(f"no hash-distinct labels found for {num_blocks} blocks")
    return [labels[p] for p in range(num_blocks)]


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
    """One packed chunk (ratings sorted by row) as the smallest exact bytes.

    - ``rows``: run lengths, the distinct rows then their counts (``int32``), a few bytes per
      row instead of four per rating;
    - ``cols``: ``uint16`` when every index is below 65,536, else ``int32``;
    - ``ratings``: one byte per rating when every rating is a multiple of 0.5 in
      ``[0, 127.5]`` (star ratings), else ``float32`` when that is exact, else ``float64``.

    :func:`decode` infers each encoding from the byte lengths and the chunk's ``n``.
    """
    starts = row_starts(rows)
    runs = np.concatenate([rows[starts], np.diff(np.r_[starts, len(rows)])]).astype(np.int32)
    return (runs.tobytes(), *_encode_values(cols, ratings))


def _encode_values(cols: np.ndarray, ratings: np.ndarray) -> tuple[bytes, bytes]:
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
    return (r, *_decode_values(n, len(r), cols, ratings))


def _decode_values(n: int, n_rows: int, cols: bytes, ratings: bytes
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_encode_values`'s ``cols`` (as ``int32``) and ratings of ``n`` ratings."""
    col_type = {2 * n: np.uint16, 4 * n: np.int32}.get(len(cols))
    rating_type = {n: np.uint8, 4 * n: np.float32, 8 * n: np.float64}.get(len(ratings))
    if n_rows != n or col_type is None or rating_type is None:
        raise ValueError(f"a packed chunk of {n} ratings decodes to {n_rows} rows, "
                         f"{len(cols)} bytes of columns and {len(ratings)} bytes of ratings: "
                         "the cached block is damaged")
    v = np.frombuffer(ratings, dtype=rating_type)
    return (np.frombuffer(cols, dtype=col_type).astype(np.int32),
            v * 0.5 if rating_type is np.uint8 else v)


def _raw(rows: bytes, cols: bytes, ratings: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One unsorted piece's arrays (see :func:`_pieces`): ``int32`` rows, then ``cols`` and
    ratings as in a packed chunk."""
    r = np.frombuffer(rows, dtype=np.int32)
    return (r, *_decode_values(len(r), len(r), cols, ratings))


def unpack(chunks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(rows, cols, ratings)`` arrays of packed chunks (:data:`PACKED_SCHEMA`, in
    chunk order) or of unsorted pieces (:data:`_PIECE_SCHEMA`)."""
    if "chunk" in chunks:
        chunks = chunks.sort_values("chunk")
        parts = [decode(int(n), *t) for n, *t in zip(chunks["n"], chunks["rows"],
                                                     chunks["cols"], chunks["ratings"])]
    else:
        parts = [_raw(*t) for t in zip(chunks["rows"], chunks["cols"], chunks["ratings"])]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2].astype(np.float64) for p in parts]))


def _pieces(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray,
            labels: list[int], side: int = 0) -> pd.DataFrame:
    """Split ratings into one unsorted piece per block (``row % len(labels)``)."""
    block = rows % len(labels)
    order = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(len(labels) + 1))
    out = {"side": [], "block": [], "rows": [], "cols": [], "ratings": []}
    for b in range(len(labels)):
        sel = order[bounds[b]:bounds[b + 1]]
        if len(sel):
            out["side"].append(side)
            out["block"].append(labels[b])
            out["rows"].append(rows[sel].astype(np.int32).tobytes())
            coded = _encode_values(cols[sel], ratings[sel])  # fewer bytes to shuffle
            out["cols"].append(coded[0])
            out["ratings"].append(coded[1])
    return pd.DataFrame(out, columns=["side", "block", "rows", "cols", "ratings"])


def sort_order(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """The permutation sorting ratings by (row, col, rating): one sort of a 64-bit
    (row, col) key, and a three-key sort only if some (row, col) pair repeats."""
    key = (rows.astype(np.int64) << 32) | cols.astype(np.int64)  # indices are >= 0
    order = np.argsort(key)  # unstable, faster: distinct keys have one order anyway
    ordered = key[order]
    if len(key) > 1 and np.any(ordered[1:] == ordered[:-1]):  # ties: break them by rating
        order = np.lexsort((ratings, key))
    return order


def _pack(block: pd.DataFrame, chunk_ratings: int = CHUNK_RATINGS) -> pd.DataFrame:
    """Merge one block's pieces, sort by (row, col, rating) and cut into chunks."""
    rows, cols, ratings = unpack(block)
    order = sort_order(rows, cols, ratings)
    rows, cols, ratings = rows[order], cols[order], np.asarray(ratings[order], np.float64)
    out = []
    for k, lo in enumerate(range(0, len(rows), chunk_ratings)):
        sl = slice(lo, lo + chunk_ratings)
        out.append((int(block["block"].iloc[0]), k, len(rows[sl]),
                    *encode(rows[sl], cols[sl], ratings[sl]), float(ratings[sl].sum()),
                    checksum(rows[sl], cols[sl], ratings[sl])))
    return pd.DataFrame(out, columns=["block", "chunk", "n", "rows", "cols", "ratings",
                                      "rating_sum", "checksum"])


def pack_blocks(pieces: DataFrame, num_blocks: int,
                chunk_ratings: int = CHUNK_RATINGS) -> DataFrame:
    """Pieces (:data:`_PIECE_SCHEMA`) -> persisted packed blocks, one per partition."""
    def pack(block: pd.DataFrame) -> pd.DataFrame:
        return _pack(block, chunk_ratings)

    packed = (pieces.repartition(num_blocks, "block")
              .groupBy("block").applyInPandas(pack, PACKED_SCHEMA)
              # the packed chunks are moved once more so that the cached copy is *known* to
              # Spark as partitioned by its own ``block`` column: no shuffle per half-step
              .repartition(num_blocks, "block")
              .persist(StorageLevel.MEMORY_AND_DISK))
    packed.count()  # materialize once; every half-step reuses it
    return packed


#: Arrow batch size of the partitioning pass (rows): Spark's default of 10,000 makes many
#: small batches, each a fixed cost, when the pass buffers about a chunk anyway.
PARTITION_ARROW_BATCH = 1 << 17


@contextmanager
def arrow_batch_size(spark: SparkSession, chunk_ratings: int):
    """Within the ``with`` block, pandas UDFs get Arrow batches of
    :data:`PARTITION_ARROW_BATCH` rows (at most ``chunk_ratings``), unless the user has set
    ``spark.sql.execution.arrow.maxRecordsPerBatch`` (then it is left alone)."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    if spark.conf.get(key, None) is not None:
        yield
        return
    spark.conf.set(key, str(max(1, min(PARTITION_ARROW_BATCH, chunk_ratings))))
    try:
        yield
    finally:
        spark.conf.unset(key)


#: :func:`dense_index` looks IDs up in a direct table (one ``int32`` per value of the IDs'
#: range) when that range is at most this, and at most 4x the number of IDs; otherwise by
#: binary search.
DIRECT_TABLE_MAX = 1 << 22


def dense_index(ids: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    """The positions of ``values`` in the sorted ``ids`` (``int32``); a value that is not
    there is an error naming it, never a wrong index."""
    span = int(ids[-1]) - int(ids[0]) + 1 if len(ids) else 0
    if 0 < span <= min(DIRECT_TABLE_MAX, 4 * len(ids)):
        # dense-ish IDs (the common case): one table read per rating instead of a search
        table = np.full(span + 1, -1, dtype=np.int32)  # the last slot: out of range
        table[ids - ids[0]] = np.arange(len(ids), dtype=np.int32)
        offset = values - ids[0]
        pos = table[np.where((offset >= 0) & (offset < span), offset, span)]
        missing = pos < 0
        if not missing.any():
            return pos
    else:
        pos = np.searchsorted(ids, values)
        found = np.minimum(pos, len(ids) - 1)
        missing = (ids[found] != values) if len(ids) else np.ones(len(values), bool)
    if missing.any():
        raise ValueError(f"{what} ID {values[missing][0].item()!r} is not in the {what} index "
                       f"({int(missing.sum())} ratings of this batch have unknown {what} IDs)")
    return pos.astype(np.int32)


def partition_ratings(ratings: DataFrame, num_user_blocks: int, num_item_blocks: int,
                      lookup: Broadcast | None = None,
                      chunk_ratings: int = CHUNK_RATINGS) -> tuple[DataFrame, DataFrame]:
    """The two persisted, packed copies of the ratings, ``(by_user, by_item)``: rows are
    users (items), cols items (users), row ``r`` is in block ``r % num_blocks``, one block
    per partition; schema :data:`PACKED_SCHEMA`.

    ``ratings`` holds ``user_idx``, ``item_idx`` and ``rating``; or, with ``lookup`` (the
    broadcast sorted integral user and item IDs, :func:`mfspark.indexing.id_lookup`), the
    original ``user``, ``item`` and ``rating``, each ID mapped to its dense index in the
    broadcast IDs (:func:`dense_index`: a direct table or a binary search; no join).  The
    packed copies' lineage uses ``lookup``: Spark recomputes a lost cached block from it, so
    it must outlive them (destroy it only after unpersisting both).  The ratings cross into
    Python once, in batches of about a chunk, which are split into unsorted pieces for both
    copies at once; everything after moves packed bytes.
    """
    spark = ratings.sparkSession
    user_labels = block_labels(spark, num_user_blocks)
    item_labels = (user_labels if num_item_blocks == num_user_blocks
                   else block_labels(spark, num_item_blocks))

    def split(batches):
        # Arrow batches are small (10,000 rows by default): gather about a chunk's worth
        # before splitting, so that each piece carries many ratings however many blocks
        buffered, size = [], 0
        for pdf in batches:
            buffered.append(pdf)
            size += len(pdf)
            if size >= chunk_ratings:
                yield _split(buffered)
                buffered, size = [], 0
        if size:
            yield _split(buffered)

    def _split(frames: list[pd.DataFrame]) -> pd.DataFrame:
        pdf = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        users, items = pdf["u"].to_numpy(), pdf["i"].to_numpy()
        if lookup is not None:
            users = dense_index(lookup.value[0], users, "user")
            items = dense_index(lookup.value[1], items, "item")
        values = pdf["r"].to_numpy(dtype=np.float64)
        return pd.concat([_pieces(users, items, values, user_labels, 0),
                          _pieces(items, users, values, item_labels, 1)], ignore_index=True)

    names = ("user", "item") if lookup is not None else ("user_idx", "item_idx")
    kind = "long" if lookup is not None else "int"
    pieces = (ratings.select(F.col(names[0]).cast(kind).alias("u"),
                             F.col(names[1]).cast(kind).alias("i"),
                             F.col("rating").cast("double").alias("r"))
              .mapInPandas(split, _PIECE_SCHEMA)
              .persist(StorageLevel.MEMORY_AND_DISK))  # split once, packed twice
    packed = []
    try:
        with arrow_batch_size(spark, chunk_ratings):
            for side, blocks in ((0, num_user_blocks), (1, num_item_blocks)):
                packed.append(pack_blocks(pieces.filter(F.col("side") == side).drop("side"),
                                          blocks, chunk_ratings))
    except BaseException:
        for frame in packed:
            frame.unpersist()
        raise
    finally:
        pieces.unpersist()  # a lost cached block is recomputed from the source, not from it
    return packed[0], packed[1]


def pack_solution(block: int, rows: np.ndarray, factors: np.ndarray, bias: np.ndarray,
                  sse: np.ndarray, chunk_bytes: int = SOLUTION_CHUNK_BYTES) -> pd.DataFrame:
    """One block's solution as :data:`SOLUTION_SCHEMA` chunks (one Parquet row per chunk
    instead of one per solved row: no per-row Arrow conversion)."""
    n, rank = factors.shape
    step = max(1, chunk_bytes // (8 * rank + 12))
    out = []
    for k, lo in enumerate(range(0, n, step)):
        sl = slice(lo, lo + step)
        out.append((block, k, len(rows[sl]), rank,
                    np.ascontiguousarray(rows[sl], np.int32).tobytes(),
                    np.ascontiguousarray(bias[sl], np.float64).tobytes(),
                    np.ascontiguousarray(factors[sl], np.float64).tobytes(),
                    float(np.sum(sse[sl]))))
    return pd.DataFrame(out, columns=["block", "chunk", "n", "rank", "idx", "bias", "features",
                                      "sse"])


class BlockMemory(AccumulatorParam):
    """Accumulates ``(ratings, rows, peak bytes)`` of every solved block (a list)."""

    def zero(self, value: list) -> list:
        return []

    def addInPlace(self, value1: list, value2: list) -> list:
        return value1 + value2


def memory_probe(spark: SparkSession) -> Accumulator:
    """An accumulator for :func:`half_step` to record each block's peak solver memory
    (``tracemalloc``: every NumPy allocation, measured in the Python worker)."""
    return spark.sparkContext.accumulator([], BlockMemory())


def half_step(ratings_by_block: DataFrame, fixed: Side, mu: float, lam: float,
              reg_scale: str, side: str, path: str, max_gather: int = DEFAULT_MAX_GATHER,
              probe: Accumulator | None = None, biases: bool = True,
              nonnegative: bool = False, alpha: float | None = None, cg_steps: int = 0,
              previous: np.ndarray | None = None) -> None:
    """Solve every row of ``ratings_by_block`` given the broadcast ``fixed`` side and write
    the solution (:data:`SOLUTION_SCHEMA`) as Parquet to ``path``.

    ``max_gather`` bounds each block's gather memory (:func:`mfspark.solve.solve_block`);
    with a ``probe`` (:func:`memory_probe`) each block's peak solver memory is recorded;
    ``biases=False`` fits factors only (biases stay zero).  ``nonnegative`` and ``alpha``
    (implicit feedback) select :func:`mfspark.variants.solve_variant_block`; for implicit
    feedback the fixed side's ``Y^T Y`` (with biases: the Gram matrix of ``[Y, 1, c]``) is
    computed here, on the driver, and broadcast.  ``cg_steps`` (implicit feedback) takes
    that many conjugate-gradient steps from the solved side's ``previous`` factors (with
    biases: and biases, as a last column), broadcast beside the fixed side's, instead of
    solving exactly.
    """
    sc = ratings_by_block.sparkSession.sparkContext
    fixed_state = sc.broadcast((fixed.factors, fixed.bias))
    # --- issue 8: dispatch to the implicit / nonnegative solver ---
    variant = nonnegative or alpha is not None
    fixed_gram = (sc.broadcast(fixed_gramian(fixed.factors, fixed.bias, biases))
                  if alpha is not None else None)
    warm = sc.broadcast(previous) if cg_steps and previous is not None else None

    def solve(block: pd.DataFrame) -> pd.DataFrame:
        factors, bias = fixed_state.value
        if probe is not None:
            tracemalloc.start()
        sol = None
        try:
            rows, cols, ratings = unpack(block)
            if variant:  # issue 8
                sol = solve_variant_block(
                    rows, cols, ratings, factors, bias, mu, lam, reg_scale, max_gather,
                    biases=biases, nonnegative=nonnegative, alpha=alpha,
                    fixed_gram=fixed_gram.value if fixed_gram is not None else None,
                    cg_steps=cg_steps, previous=warm.value if warm is not None else None)
            else:
                sol = solve_block(rows, cols, ratings, factors, bias, mu, lam, reg_scale,
                                  max_gather, biases=biases)
        except SolveError as err:
            raise SolveError(f"{side} block {int(block['block'].iloc[0])}: {err}") from err
        finally:
            if probe is not None:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                probe.add([(int(block["n"].sum()), len(sol.rows) if sol else -1, peak)])
        return pack_solution(int(block["block"].iloc[0]), sol.rows, sol.factors, sol.bias,
                             sol.sse)

    try:
        (ratings_by_block.groupBy("block").applyInPandas(solve, SOLUTION_SCHEMA)
         .write.mode("overwrite").options(**FACTOR_WRITE_OPTIONS).parquet(path))
    finally:
        fixed_state.destroy()
        for extra in (fixed_gram, warm):  # issue 8
            if extra is not None:
                extra.destroy()
