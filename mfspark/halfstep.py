"""The Spark side of one ALS half-step.

The ratings are kept twice, each copy hash-partitioned by *block* (``row % num_blocks``) of
one side, one block per partition, and persisted: ``ratings_by_user`` (rows = users, cols =
items) and ``ratings_by_item`` (rows = items, cols = users).  A block is stored *packed*:
a few Spark rows (chunks of at most :data:`CHUNK_RATINGS` ratings), each holding the block's
ratings sorted by row as binary columns (``int32`` rows and cols, ``float32`` ratings when
every rating of the chunk is exactly a float32, else ``float64``).  Handing a block to
Python is then a copy of a few buffers instead of a row-by-row Arrow conversion, and the
cached copies take 12 bytes per rating.

A half-step broadcasts the fixed side's factors and biases, runs one grouped pandas UDF per
block (``groupBy("block")`` on a DataFrame already partitioned by ``block``, so no shuffle)
that calls :func:`mfspark.solve.solve_block`, and writes the new factors to Parquet.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import Accumulator, AccumulatorParam, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.solve import DEFAULT_MAX_GATHER, SolveError, solve_block
# --- issue 8: implicit feedback / nonnegative factors ---
from mfspark.implicit import gramian
from mfspark.variants import solve_variant_block

#: What a half-step writes for each solved row.
SOLUTION_SCHEMA = "idx int, bias double, features array<double>, sse double, n long"

#: One chunk of a packed block (see the module docstring); ``rating_sum`` and ``checksum``
#: give the global mean and the run fingerprint without unpacking.
PACKED_SCHEMA = ("block int, chunk int, n long, rows binary, cols binary, ratings binary, "
                 "rating_sum double, checksum long")
#: Unsorted pieces of blocks on their way to being packed.
_PIECE_SCHEMA = "block int, rows binary, cols binary, ratings binary"
#: Ratings per packed chunk (12-16 MiB): Arrow's 2 GiB binary limit per batch is far away.
CHUNK_RATINGS = 1 << 20
_PRIME = 2_147_483_647  # checksum terms stay below 2^31: the sum of 2^32 of them fits a long

_ROLES = {"user": ("user_idx", "item_idx"), "item": ("item_idx", "user_idx")}


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


def block_labels(spark: SparkSession, num_blocks: int) -> list[int]:
    """Labels for blocks ``0..num_blocks-1`` that Spark's hash partitioner sends to distinct
    partitions: ``pmod(hash(label), num_blocks)`` is a bijection, so every partition holds
    exactly one block (plain ``0..n-1`` labels collide and leave cores idle)."""
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


def decode(rows: bytes, cols: bytes, ratings: bytes
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One packed chunk's ``(rows, cols, ratings)`` arrays (views on the bytes)."""
    r = np.frombuffer(rows, dtype=np.int32)
    dtype = np.float32 if len(ratings) == 4 * len(r) else np.float64
    return r, np.frombuffer(cols, dtype=np.int32), np.frombuffer(ratings, dtype=dtype)


def unpack(chunks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(rows, cols, ratings)`` arrays of packed chunks or pieces, in chunk order."""
    if "chunk" in chunks:
        chunks = chunks.sort_values("chunk")
    parts = [decode(*t) for t in zip(chunks["rows"], chunks["cols"], chunks["ratings"])]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2].astype(np.float64) for p in parts]))


def _compact(ratings: np.ndarray) -> bytes:
    as32 = ratings.astype(np.float32)
    exact = np.array_equal(as32.astype(np.float64), ratings, equal_nan=True)
    return (as32 if exact else ratings.astype(np.float64)).tobytes()


def _pieces(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray,
            labels: list[int]) -> pd.DataFrame:
    """Split ratings into one unsorted piece per block (``row % len(labels)``)."""
    block = rows % len(labels)
    order = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(len(labels) + 1))
    out = {"block": [], "rows": [], "cols": [], "ratings": []}
    for b in range(len(labels)):
        sel = order[bounds[b]:bounds[b + 1]]
        if len(sel):
            out["block"].append(labels[b])
            out["rows"].append(rows[sel].astype(np.int32).tobytes())
            out["cols"].append(cols[sel].astype(np.int32).tobytes())
            out["ratings"].append(ratings[sel].astype(np.float64).tobytes())
    return pd.DataFrame(out, columns=["block", "rows", "cols", "ratings"])


def _pack(block: pd.DataFrame, chunk_ratings: int = CHUNK_RATINGS) -> pd.DataFrame:
    """Merge one block's pieces, sort by (row, col, rating) and cut into chunks."""
    rows, cols, ratings = unpack(block)
    order = np.lexsort((ratings, cols, rows))
    rows, cols, ratings = rows[order], cols[order], np.asarray(ratings[order], np.float64)
    out = []
    for k, lo in enumerate(range(0, len(rows), chunk_ratings)):
        sl = slice(lo, lo + chunk_ratings)
        out.append((int(block["block"].iloc[0]), k, len(rows[sl]), rows[sl].tobytes(),
                    cols[sl].tobytes(), _compact(ratings[sl]), float(ratings[sl].sum()),
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


def partition_ratings(indexed: DataFrame, side: str, num_blocks: int,
                      chunk_ratings: int = CHUNK_RATINGS) -> DataFrame:
    """One persisted, packed copy of the ratings (``user_idx``, ``item_idx``, ``rating``),
    with ``rows`` = ``side``'s index, partitioned by block (row ``r`` is in block
    ``r % num_blocks``, one block per partition); schema :data:`PACKED_SCHEMA`.

    The ratings cross into Python once, in batches; everything after moves packed bytes.
    """
    row, col = _ROLES[side]
    labels = block_labels(indexed.sparkSession, num_blocks)

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
        return _pieces(pdf[row].to_numpy(), pdf[col].to_numpy(),
                       pdf["rating"].to_numpy(dtype=np.float64), labels)

    pieces = (indexed.select(F.col(row).cast("int").alias(row), F.col(col).cast("int").alias(col),
                             F.col("rating").cast("double").alias("rating"))
              .mapInPandas(split, _PIECE_SCHEMA))
    return pack_blocks(pieces, num_blocks, chunk_ratings)


def transpose_blocks(packed: DataFrame, num_blocks: int,
                     chunk_ratings: int = CHUNK_RATINGS) -> DataFrame:
    """The other side's packed copy, built from a packed copy without unpacking in the JVM:
    rows and cols swap, and the ratings are re-split by the new row's block."""
    labels = block_labels(packed.sparkSession, num_blocks)

    def split(batches):
        for chunks in batches:
            for t in zip(chunks["rows"], chunks["cols"], chunks["ratings"]):
                rows, cols, ratings = decode(*t)
                yield _pieces(cols, rows, ratings, labels)

    return pack_blocks(packed.select("rows", "cols", "ratings").mapInPandas(split, _PIECE_SCHEMA),
                       num_blocks, chunk_ratings)


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
              nonnegative: bool = False, alpha: float | None = None) -> None:
    """Solve every row of ``ratings_by_block`` given the broadcast ``fixed`` side and write
    the solution (:data:`SOLUTION_SCHEMA`) as Parquet to ``path``.

    ``max_gather`` bounds each block's gather memory (:func:`mfspark.solve.solve_block`);
    with a ``probe`` (:func:`memory_probe`) each block's peak solver memory is recorded;
    ``biases=False`` fits factors only (biases stay zero).  ``nonnegative`` and ``alpha``
    (implicit feedback) select :func:`mfspark.variants.solve_variant_block`; for implicit
    feedback the fixed side's ``Y^T Y`` is computed here, on the driver, and broadcast.
    """
    sc = ratings_by_block.sparkSession.sparkContext
    fixed_state = sc.broadcast((fixed.factors, fixed.bias))
    # --- issue 8: dispatch to the implicit / nonnegative solver ---
    variant = nonnegative or alpha is not None
    fixed_gram = sc.broadcast(gramian(fixed.factors)) if alpha is not None else None

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
                    fixed_gram=fixed_gram.value if fixed_gram is not None else None)
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
        return pd.DataFrame({"idx": sol.rows.astype(np.int32), "bias": sol.bias,
                             "features": list(sol.factors), "sse": sol.sse, "n": sol.counts})

    try:
        (ratings_by_block.groupBy("block").applyInPandas(solve, SOLUTION_SCHEMA)
         .write.mode("overwrite").parquet(path))
    finally:
        fixed_state.destroy()
        if fixed_gram is not None:  # issue 8
            fixed_gram.destroy()
