"""The ratings partitioned by block: two packed, persisted copies, one per side.

Rows and columns are ``int64`` keys (:mod:`mfspark.core.packing`).  The ratings are kept
twice, each copy hash-partitioned by *block* of one side (:func:`~mfspark.core.packing.
block_of` of the row key), one block per partition, persisted: ``by_user`` (rows = users,
cols = items) and ``by_item``.  A block is a handful of Spark rows of :data:`PACKED_SCHEMA`,
told apart by ``kind``:

- ``TRAIN``: a chunk of at most :data:`CHUNK_RATINGS` ratings sorted by row, columns as
  positions into the block's needs;
- ``TEST``: held-out ratings whose key on this side hashes to this block (only in the copy
  of the side solved last in an iteration, where the test error is computed): row and
  column positions, -1 where the key is unknown to training;
- ``NEEDS``: the keys of the fixed-side rows the block references (the training columns,
  sorted, then the columns only held-out ratings reference, sorted), at most
  :data:`CHUNK_RATINGS` keys per row, ``n``: how many in all; the first row's ``target``
  holds the block's number of rows, its ``checksum`` how many of the block's ratings,
  training and held-out, repeat the (row, column) keys of another: duplicates, found where
  packing sorts anyway;
- ``FIXED``, ``GRAM``: empty placeholders that the whole fixed side's factor chunks and its
  Gram matrix (implicit feedback) are broadcast-joined to, so that no joined chunk carries
  a copy of a full row (routed fixed rows and the block's own previous factors, for
  conjugate gradient and warm starts, arrive as rows of their own: ``FIXED``, ``OWN``);
- ``REQUEST``: which of this block's rows another block needs (``target``: the requesting
  block; keys chunked as ``NEEDS``'s), so that a half-step can route each block exactly
  the rows it references (MLlib's out-blocks) when the fixed side is too large to send
  whole.

The ratings cross into Python once, in the partitioning pass, which splits each batch into
unsorted pieces for both copies at once; everything after moves packed bytes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.core.packing import (block_of, checksum, decode_keys, encode_chunk, encode_keys,
                                  encode_positions, sort_order)

TRAIN, TEST, NEEDS, GRAM, OWN, REQUEST, FIXED = range(7)

#: One row of a packed block (module docstring); ``rating_sum`` and ``checksum`` give the
#: global mean and the run fingerprint without unpacking.
PACKED_SCHEMA = ("block int, chunk int, kind int, n long, rows binary, cols binary, "
                 "ratings binary, target int, rating_sum double, checksum long")
#: Unsorted pieces of blocks on their way to being packed: ``side`` 0 rows are users, 1
#: items; rows and columns as keys.
_PIECE_SCHEMA = "side int, block int, kind int, rows binary, cols binary, ratings binary"
#: Ratings per packed chunk (keys per ``NEEDS`` or ``REQUEST`` row): each of its binary
#: values stays under 512 KiB.  The JVM's heap
#: (G1, regions of 1 MiB under a 1 GiB heap) places every array of half a region or more
#: in contiguous "humongous" regions, and a stream of multi-megabyte values fragments a
#: small heap into an out-of-memory error long before it is full.
CHUNK_RATINGS = 1 << 15
#: Ratings the partitioning pass splits at a time (also its Arrow batch, in rows): large
#: enough that a batch's fixed costs vanish, small enough that its pieces stay under 512 KiB.
SPLIT_RATINGS = 1 << 16

_LABELS: dict[tuple[str, int], list[int]] = {}


def block_labels(spark: SparkSession, num_blocks: int) -> list[int]:
    """Labels for blocks ``0..num_blocks-1`` that Spark's hash partitioner sends to distinct
    partitions: ``pmod(hash(label), num_blocks)`` is a bijection, so every partition holds
    exactly one block (plain ``0..n-1`` labels collide and leave cores idle).  Computed by
    Spark itself once per Spark version and block count in this process."""
    key = (spark.version, num_blocks)
    if key not in _LABELS:
        found = (spark.range(0, 64 * num_blocks)
                 .select(F.col("id").cast("int").alias("label"),
                         F.pmod(F.hash(F.col("id").cast("int")), F.lit(num_blocks))
                         .alias("part"))
                 .groupBy("part").agg(F.min("label").alias("label")).collect())
        labels = {r["part"]: r["label"] for r in found}
        if len(labels) < num_blocks:  # astronomically unlikely with 64 per partition
            raise RuntimeError(f"no hash-distinct labels found for {num_blocks} blocks")
        _LABELS[key] = [labels[p] for p in range(num_blocks)]
    return list(_LABELS[key])


@dataclass(frozen=True)
class Layout:
    """How one side is cut into blocks: their number and their Spark labels."""

    num_blocks: int
    labels: tuple[int, ...]

    def label_of(self, keys: np.ndarray) -> np.ndarray:
        """The block label of each key."""
        return np.asarray(self.labels, dtype=np.int32)[block_of(keys, self.num_blocks)]


def encode_ints(values: np.ndarray) -> bytes:
    """Keys in a piece: ``int32`` when they all fit, else ``int64`` (the length tells)."""
    values = np.asarray(values, dtype=np.int64)
    fits = len(values) == 0 or (values.min() >= -(1 << 31) and values.max() < 1 << 31)
    return values.astype(np.int32 if fits else np.int64).tobytes()


def decode_ints(data: bytes, n: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int32 if len(data) == 4 * n else np.int64
                         ).astype(np.int64)


def _values(ratings: np.ndarray) -> bytes:
    return np.ascontiguousarray(ratings, dtype=np.float64).tobytes()


def split_batch(users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                held_out: np.ndarray, layouts: tuple[Layout, Layout], test_side: int | None
                ) -> pd.DataFrame:
    """One batch of ratings as unsorted pieces of both copies' blocks: training ratings go
    to both, held-out ones to the copy of ``test_side`` only."""
    out: dict[str, list] = {name: [] for name in ("side", "block", "kind", "rows", "cols",
                                                  "ratings")}
    train = ~held_out
    for side, (rows, cols) in enumerate(((users, items), (items, users))):
        for kind, sel in ((TRAIN, train), (TEST, held_out)):
            if kind == TEST and side != test_side:
                continue
            r, c, v = rows[sel], cols[sel], ratings[sel]
            labels = layouts[side].label_of(r)
            order = np.argsort(labels, kind="stable")
            bounds = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
            for lo, hi in zip(bounds, np.r_[bounds[1:], len(order)]):
                if hi <= lo:
                    continue
                part = order[lo:hi]
                out["side"].append(side)
                out["block"].append(int(labels[part[0]]))
                out["kind"].append(kind)
                out["rows"].append(encode_ints(r[part]))
                out["cols"].append(encode_ints(c[part]))
                out["ratings"].append(_values(v[part]))
    return pd.DataFrame(out, columns=list(out))


def _unpack_pieces(pieces: pd.DataFrame, kind: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chosen = pieces[pieces["kind"] == kind]
    parts = []
    for rows, cols, ratings in zip(chosen["rows"], chosen["cols"], chosen["ratings"]):
        v = np.frombuffer(ratings, dtype=np.float64)
        parts.append((decode_ints(rows, len(v)), decode_ints(cols, len(v)), v))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore


def repeated_pairs(rows: np.ndarray, cols: np.ndarray, ordered: bool = False) -> int:
    """How many of the (row, col) pairs equal an earlier one; ``ordered``: the pairs are
    already sorted by row, then column."""
    if len(rows) < 2:
        return 0
    if not ordered:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
    return int(np.count_nonzero((rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])))


def _chunks(size: int, *columns: np.ndarray):
    """The aligned ``columns`` in consecutive slices of at most ``size`` entries."""
    for lo in range(0, len(columns[0]), size):
        yield tuple(c[lo:lo + size] for c in columns)


def _key_rows(size: int, keys: np.ndarray) -> list[np.ndarray]:
    """``keys`` in consecutive slices of at most ``size``: at least one, maybe empty."""
    return [keys[lo:lo + size] for lo in range(0, max(len(keys), 1), size)]


def pack_block(pieces: pd.DataFrame, other: Layout, chunk_ratings: int = CHUNK_RATINGS
               ) -> pd.DataFrame:
    """Merge one block's pieces into its packed rows (module docstring)."""
    block = int(pieces["block"].iloc[0])
    rows, cols, ratings = _unpack_pieces(pieces, TRAIN)
    keys = np.unique(rows)
    needs_train = np.unique(cols)
    row_pos = np.searchsorted(keys, rows)
    col_pos = np.searchsorted(needs_train, cols)
    order = sort_order(row_pos, col_pos, ratings)
    rows, cols, ratings = rows[order], col_pos[order], ratings[order]
    t_rows, t_cols, t_ratings = _unpack_pieces(pieces, TEST)
    extra = np.setdiff1d(np.unique(t_cols), needs_train)
    needs = np.concatenate([needs_train, extra])
    out = [(block, k, TRAIN, len(r), *encode_chunk(r, c, v), -1, float(v.sum()),
            checksum(r, needs_train[c], v))
           for k, (r, c, v) in enumerate(_chunks(chunk_ratings, rows, cols, ratings))]
    if len(t_rows):
        pos = np.searchsorted(keys, t_rows)
        known = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == t_rows)
        t_pos = np.where(known, pos, -1)
        in_train = np.searchsorted(needs_train, t_cols)
        seen = ((in_train < len(needs_train))
                & (needs_train[np.minimum(in_train, max(len(needs_train) - 1, 0))] == t_cols)
                if len(needs_train) else np.zeros(len(t_cols), bool))
        c_pos = np.where(seen, in_train, len(needs_train) + np.searchsorted(extra, t_cols))
        out += [(block, k, TEST, len(r), *encode_positions(r, c, v), -1, float(v.sum()), 0)
                for k, (r, c, v) in enumerate(_chunks(chunk_ratings, t_pos, c_pos, t_ratings))]
    repeats = repeated_pairs(rows, cols, ordered=True) + repeated_pairs(t_rows, t_cols)
    out += [(block, k, NEEDS, len(needs), encode_keys(part), b"", b"",
             len(keys) if k == 0 else 0, 0.0, repeats if k == 0 else 0)
            for k, part in enumerate(_key_rows(chunk_ratings, needs))]
    out.append((block, 0, FIXED, 0, b"", b"", b"", -1, 0.0, 0))
    out.append((block, 0, GRAM, 0, b"", b"", b"", -1, 0.0, 0))
    targets = other.label_of(needs)
    for label in np.unique(targets):
        wanted = needs[targets == label]
        out += [(block, k, REQUEST, len(part), encode_keys(part), b"", b"", int(label), 0.0, 0)
                for k, part in enumerate(_key_rows(chunk_ratings, wanted))]
    return pd.DataFrame(out, columns=["block", "chunk", "kind", "n", "rows", "cols", "ratings",
                                      "target", "rating_sum", "checksum"])


#: Rows per in-memory columnar batch of the cached frames: each column of a batch is built in
#: one buffer on the heap, and Spark's default of 10,000 rows puts a whole block (every
#: chunk's blobs) into one.  One row per batch keeps every buffer at one value, under 512 KiB
#: (:data:`CHUNK_RATINGS`): never a humongous allocation, which a 1 GiB heap can fail while
#: compression threads hold the garbage collector off (G1's ``GCLocker``).
CACHE_BATCH_ROWS = 1


@contextmanager
def session_defaults(spark: SparkSession, wanted: dict[str, str]):
    """Within the ``with`` block, each of ``wanted``'s settings that the user has not made
    takes its value there; a setting the user has made is left alone."""
    ours = [key for key in wanted if spark.conf.get(key, None) is None]
    for key in ours:
        spark.conf.set(key, wanted[key])
    try:
        yield
    finally:
        for key in ours:
            spark.conf.unset(key)


def partition_settings(spark: SparkSession):
    """Pandas UDFs get Arrow batches of :data:`SPLIT_RATINGS` rows and cached frames are
    built in batches of :data:`CACHE_BATCH_ROWS` rows (:func:`session_defaults`)."""
    return session_defaults(spark, {
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(SPLIT_RATINGS),
        "spark.sql.inMemoryColumnarStorage.batchSize": str(CACHE_BATCH_ROWS)})


def _packer(other: Layout, chunk_ratings: int):
    """The grouped UDF packing one block (its pieces in, its rows out)."""

    def pack(pieces: pd.DataFrame) -> pd.DataFrame:
        return pack_block(pieces, other, chunk_ratings)

    return pack


def requests_of(packed: DataFrame) -> DataFrame:
    """The ``REQUEST`` rows of one side's packed blocks, re-addressed to the blocks they ask
    (``block``: the asked block, ``target``: the asking one)."""
    return (packed.filter(F.col("kind") == REQUEST)
            .select(F.col("target").alias("block"), "chunk", "kind", "n", "rows", "cols",
                    "ratings", F.col("block").alias("target"), "rating_sum", "checksum"))


def partition_ratings(ratings: DataFrame, layouts: tuple[Layout, Layout],
                      test_side: int | None, chunk_ratings: int = CHUNK_RATINGS,
                      storage: StorageLevel = StorageLevel.MEMORY_AND_DISK
                      ) -> tuple[DataFrame, DataFrame, list[dict]]:
    """The two persisted, packed copies ``(by_user, by_item)`` of ``ratings`` (``user``,
    ``item``: ``long`` keys; ``rating``; ``test``: held out or not), one block per
    partition, and each copy's counts (:func:`block_stats`); held-out ratings go to the copy
    of ``test_side`` (0: users, 1: items)."""
    spark = ratings.sparkSession

    def split(batches):
        # gather SPLIT_RATINGS before splitting, so that each piece carries many ratings
        # however many blocks
        buffered, size = [], 0
        for pdf in batches:
            buffered.append(pdf)
            size += len(pdf)
            if size >= SPLIT_RATINGS:
                yield _split(buffered)
                buffered, size = [], 0
        if size:
            yield _split(buffered)

    def _split(frames: list[pd.DataFrame]) -> pd.DataFrame:
        pdf = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return split_batch(pdf["u"].to_numpy(np.int64), pdf["i"].to_numpy(np.int64),
                           pdf["r"].to_numpy(np.float64), pdf["t"].to_numpy(bool), layouts,
                           test_side)

    made: list[DataFrame] = []
    pieces = None
    try:
        with partition_settings(spark):
            pieces = (ratings.select(F.col("user").cast("long").alias("u"),
                                     F.col("item").cast("long").alias("i"),
                                     F.col("rating").cast("double").alias("r"),
                                     F.col("test").cast("boolean").alias("t"))
                      .mapInPandas(split, _PIECE_SCHEMA)
                      .persist(StorageLevel.DISK_ONLY))  # split once, packed twice
            first = []
            for side in (0, 1):
                packed = (pieces.filter(F.col("side") == side).drop("side")
                          .repartition(layouts[side].num_blocks, "block")
                          .groupBy("block").applyInPandas(
                              _packer(layouts[1 - side], chunk_ratings), PACKED_SCHEMA)
                          .persist(StorageLevel.DISK_ONLY))  # read once more, below
                made.append(packed)
                first.append(packed)
            for side in (0, 1):
                # each side's blocks get the requests of the other side's blocks, and are
                # moved once more so that the cached copy is *known* to Spark as
                # partitioned by its own ``block`` column: no shuffle per half-step
                final = (first[side].filter(F.col("kind") != REQUEST)
                         .unionByName(requests_of(first[1 - side]))
                         .repartition(layouts[side].num_blocks, "block")
                         .persist(storage))
                made.append(final)
            finals = made[2:]
            stats = [block_stats(final) for final in finals]  # also caches them
    except BaseException:
        for frame in (*made, pieces):
            if frame is not None:
                _release(frame)
        raise
    pieces.unpersist()
    for frame in made[:2]:
        frame.unpersist()
    return finals[0], finals[1], stats


def _release(frame: DataFrame) -> None:
    """Unpersist ``frame`` after a failure, which may have stopped the JVM: an error here
    would only hide the failure's own."""
    try:
        frame.unpersist()
    except Exception:  # noqa: BLE001 - the failure being raised is the one to report
        pass


def block_stats(packed: DataFrame) -> dict:
    """One side's counts in one aggregation: training ratings (``n``), their sum and
    fingerprint, its rows (``rows``), held-out ratings (``test``), ratings that repeat the
    (row, column) keys of another (``repeated``)."""
    kind = F.col("kind")
    row = packed.agg(
        F.sum(F.when(kind == TRAIN, F.col("n")).otherwise(0)).alias("n"),
        F.sum(F.when(kind == TRAIN, F.col("rating_sum")).otherwise(0.0)).alias("rating_sum"),
        F.sum(F.when(kind == TRAIN, F.col("checksum")).otherwise(0)).alias("checksum"),
        F.sum(F.when(kind == NEEDS, F.col("target")).otherwise(0)).alias("rows"),
        F.sum(F.when(kind == TEST, F.col("n")).otherwise(0)).alias("test"),
        F.sum(F.when(kind == NEEDS, F.col("checksum")).otherwise(0)).alias("repeated")).first()
    return {k: (row[k] if row[k] is not None else 0) for k in row.asDict()}


def needs_of(rows: pd.DataFrame) -> np.ndarray | None:
    """A block's needed keys, in order, from its ``NEEDS`` rows; None until all of them are
    among ``rows`` (each row tells how many keys there are in all)."""
    rows = rows[rows["kind"] == NEEDS]
    if not len(rows):
        return None
    keys = [decode_keys(b) for b in rows.sort_values("chunk")["rows"]]
    if sum(len(k) for k in keys) < int(rows["n"].iloc[0]):
        return None
    return np.concatenate(keys)
