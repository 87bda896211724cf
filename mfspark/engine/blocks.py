"""The ratings partitioned by block: two packed, persisted copies, one per side.

The ratings are kept twice, each copy hash-partitioned by *block* (``row % num_blocks``) of
one side, one block per partition, and persisted: ``by_user`` (rows = users, cols = items)
and ``by_item`` (rows = items, cols = users).  A block is stored *packed*: a few Spark rows
(chunks of at most :data:`CHUNK_RATINGS` ratings), each holding the block's ratings sorted
by row in the encoding of :mod:`mfspark.core.packing`, so handing a block to a pandas UDF
is a copy of a few buffers.  The ratings cross into Python once, in the partitioning pass,
which splits them into unsorted pieces for both copies at once; everything after moves
packed bytes.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.core.packing import (checksum, decode, decode_piece, encode, encode_values,
                                  sort_order)

#: One chunk of a packed block (see the module docstring); ``rating_sum`` and ``checksum``
#: give the global mean and the run fingerprint without unpacking.
PACKED_SCHEMA = ("block int, chunk int, n long, rows binary, cols binary, ratings binary, "
                 "rating_sum double, checksum long")
#: Unsorted pieces of blocks on their way to being packed (``side`` 0: rows are users, cols
#: items; 1: the transpose).
_PIECE_SCHEMA = "side int, block int, rows binary, cols binary, ratings binary"
#: Ratings per packed chunk (12-16 MiB): Arrow's 2 GiB binary limit per batch is far away.
CHUNK_RATINGS = 1 << 20
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


def unpack(chunks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(rows, cols, ratings)`` arrays of packed chunks (:data:`PACKED_SCHEMA`, in
    chunk order) or of unsorted pieces (:data:`_PIECE_SCHEMA`)."""
    if "chunk" in chunks:
        chunks = chunks.sort_values("chunk")
        parts = [decode(int(n), *t) for n, *t in zip(chunks["n"], chunks["rows"],
                                                     chunks["cols"], chunks["ratings"])]
    else:
        parts = [decode_piece(*t) for t in zip(chunks["rows"], chunks["cols"], chunks["ratings"])]
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
            coded = encode_values(cols[sel], ratings[sel])  # fewer bytes to shuffle
            out["cols"].append(coded[0])
            out["ratings"].append(coded[1])
    return pd.DataFrame(out, columns=["side", "block", "rows", "cols", "ratings"])


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


