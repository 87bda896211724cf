"""The Spark side of one ALS half-step.

The ratings are kept twice, each copy hash-partitioned by *block* (``row % num_blocks``) of
one side, one block per partition, and persisted: ``ratings_by_user`` (rows = users, cols = items) and
``ratings_by_item`` (rows = items, cols = users).  A half-step broadcasts the fixed side's
factors and biases, runs one grouped pandas UDF per block (``groupBy("block")`` on a
DataFrame already partitioned by ``block``, so no shuffle) that calls
:func:`mfspark.solve.solve_block`, and writes the new factors to Parquet.
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


def partition_ratings(indexed: DataFrame, side: str, num_blocks: int) -> DataFrame:
    """One persisted copy of the ratings, with ``row`` = ``side``'s index, partitioned by
    block (row ``r`` is in block ``r % num_blocks``, one block per partition); columns
    ``block``, ``row``, ``col`` (int32) and ``rating`` (double)."""
    row, col = _ROLES[side]
    labels = F.array(*[F.lit(x) for x in block_labels(indexed.sparkSession, num_blocks)])
    blocks = (indexed
              .select(F.element_at(labels, (F.col(row) % num_blocks).cast("int") + 1)
                      .alias("block"),
                      F.col(row).cast("int").alias("row"), F.col(col).cast("int").alias("col"),
                      F.col("rating").cast("double").alias("rating"))
              .repartition(num_blocks, "block")
              # sorted by row: the solver then skips its own sort
              .sortWithinPartitions("block", "row", "col", "rating")
              .persist(StorageLevel.MEMORY_AND_DISK))
    blocks.count()  # materialize once; every half-step reuses it
    return blocks


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
        try:
            if variant:  # issue 8
                sol = solve_variant_block(
                    block["row"].to_numpy(), block["col"].to_numpy(),
                    block["rating"].to_numpy(), factors, bias, mu, lam, reg_scale, max_gather,
                    biases=biases, nonnegative=nonnegative, alpha=alpha,
                    fixed_gram=fixed_gram.value if fixed_gram is not None else None)
            else:
                sol = solve_block(block["row"].to_numpy(), block["col"].to_numpy(),
                                  block["rating"].to_numpy(), factors, bias, mu, lam, reg_scale,
                                  max_gather, biases=biases)
        except SolveError as err:
            raise SolveError(f"{side} block {int(block['block'].iloc[0])}: {err}") from err
        finally:
            if probe is not None:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                probe.add([(len(block), int(block["row"].nunique()), peak)])
        return pd.DataFrame({"idx": sol.rows.astype(np.int32), "bias": sol.bias,
                             "features": list(sol.factors), "sse": sol.sse, "n": sol.counts})

    try:
        (ratings_by_block.groupBy("block").applyInPandas(solve, SOLUTION_SCHEMA)
         .write.mode("overwrite").parquet(path))
    finally:
        fixed_state.destroy()
        if fixed_gram is not None:  # issue 8
            fixed_gram.destroy()
