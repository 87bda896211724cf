"""How the fixed side's factors reach the blocks of a half-step.

Each block's ``NEEDS`` row lists the fixed-side keys it references.  The fixed side's factor
chunks reach the block's partition one of two ways:

- **whole** (the fixed side fits :attr:`mfspark.config.ALSParams.broadcast_mb`): every factor
  chunk is broadcast (Spark's broadcast join to the block's empty ``FIXED`` row) and each
  block picks its rows;
- **routed** (larger sides): the fixed side's previous half-step already wrote, for every
  block that asked (its ``REQUEST`` rows), exactly the rows that block references
  (``ROUTED`` rows); they are shuffled to their block's partition and read with the block's
  packed rows (a partitioning-aware union), as MLlib ships its out-blocks.

Both arrive as the same blobs in the same column of ``FIXED`` rows, so the solve never knows
which way they came.  The Gram matrix of the fixed side (implicit feedback) is broadcast to
every block's ``GRAM`` row, and a side's own previous factors (conjugate gradient, a start
from given factors) reach its partition as ``OWN`` rows, as routed rows do.  The packed
blocks stay where they are cached: one block per partition, and nothing here moves them.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mfspark.engine.blocks import FIXED, GRAM, OWN
from mfspark.io.factors import FACTORS, ROUTED
from mfspark.io.factors import GRAM as GRAM_ROWS
from mfspark.io.factors import read_solution


def _by_kind(packed: DataFrame, payload: DataFrame, anchor: int, column: str) -> DataFrame:
    """Broadcast ``payload``'s blobs to every block's ``anchor`` row as ``column``."""
    side = payload.select(F.lit(anchor).alias("_kind"), F.col("blob").alias(column))
    joined = packed.join(F.broadcast(side), packed["kind"] == side["_kind"], "left")
    return joined.drop("_kind")


def _by_block(packed: DataFrame, payload: DataFrame, kind: int, column: str,
              num_blocks: int) -> DataFrame:
    """``packed`` and, as rows of ``kind`` with their blob in ``column``, ``payload``'s
    blobs, each moved to the partition of the block named by its ``_block``.

    A union, not a join: both sides are hash-partitioned by block into ``num_blocks``
    partitions, so Spark reads the i-th partitions of both together (a partitioning-aware
    union) and the packed side is not moved; no join operator buffers the payload, which
    only the sort that groups a partition's rows by block sees (memory-managed, spilled to
    disk when large)."""
    side = payload.select(F.col("_block").alias("block"), F.lit(kind).alias("kind"),
                          F.col("blob").alias(column)).repartition(num_blocks, "block")
    return packed.unionByName(side, allowMissingColumns=True)


def with_fixed(packed: DataFrame, fixed_path: str, routed: bool, num_blocks: int,
               gram: bool) -> DataFrame:
    """``packed`` with the fixed side's factors (``fixed``) and, with ``gram``, its Gram
    matrices (``gram``) joined to the anchor rows."""
    files = read_solution(packed.sparkSession, fixed_path)
    if routed:
        rows = files.filter(F.col("kind") == ROUTED).select(F.col("dest").alias("_block"),
                                                             "blob")
        out = _by_block(packed, rows, FIXED, "fixed", num_blocks)
    else:
        out = _by_kind(packed, files.filter(F.col("kind") == FACTORS), FIXED, "fixed")
    if gram:
        out = _by_kind(out, files.filter(F.col("kind") == GRAM_ROWS), GRAM, "gram")
    return out


def with_own(packed: DataFrame, own: DataFrame, num_blocks: int) -> DataFrame:
    """``packed`` with the side's own factor chunks (``own``: ``_block``, ``blob``) joined to
    each block's ``OWN`` row."""
    return _by_block(packed, own, OWN, "own", num_blocks)


def own_chunks(packed: DataFrame, path: str) -> DataFrame:
    """A side's stored factor chunks addressed to the blocks that wrote them."""
    files = read_solution(packed.sparkSession, path)
    return files.filter(F.col("kind") == FACTORS).select(F.col("block").alias("_block"), "blob")
