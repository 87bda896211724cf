"""One ALS half-step on Spark: broadcast the fixed side, solve every block, write Parquet.

A half-step broadcasts the fixed side's factors and biases (for implicit feedback also its
Gram matrix), runs one grouped pandas UDF per block (``groupBy("block")`` on packed ratings
already partitioned by ``block``, so no shuffle) that calls
:func:`mfspark.core.block.solve_block`, and writes the new factors to Parquet in the layout
of :mod:`mfspark.io.factors`.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
from pyspark import Accumulator, AccumulatorParam
from pyspark.sql import DataFrame, SparkSession

from mfspark.core.block import solve_block
from mfspark.core.implicit import fixed_gramian
from mfspark.core.objective import Objective
from mfspark.core.solvers import SolveError
from mfspark.core.state import Side
from mfspark.engine.blocks import unpack
from mfspark.io.factors import FACTOR_WRITE_OPTIONS, SOLUTION_SCHEMA, pack_solution


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


def half_step(ratings_by_block: DataFrame, fixed: Side, mu: float, objective: Objective,
              side: str, path: str, max_gather: int, probe: Accumulator | None = None,
              previous: np.ndarray | None = None) -> None:
    """Solve every row of ``ratings_by_block`` (packed blocks of one ``side``) given the
    broadcast ``fixed`` side and write the solution as Parquet to ``path``.

    ``max_gather`` bounds each block's gather memory; with a ``probe``
    (:func:`memory_probe`) each block's peak solver memory is recorded.  For implicit
    feedback the fixed side's Gram matrix is computed here, on the driver, and broadcast
    beside it.  With ``objective.cg_steps`` the rows start from ``previous`` (the solved
    side's current unknowns, :meth:`mfspark.core.state.Side.unknowns`), broadcast too.
    """
    sc = ratings_by_block.sparkSession.sparkContext
    gram = fixed_gramian(fixed.factors, fixed.bias, objective.biases) if objective.implicit \
        else None
    state = sc.broadcast((fixed.factors, fixed.bias, gram,
                          previous if objective.cg_steps else None))

    def solve(block: pd.DataFrame) -> pd.DataFrame:
        factors, bias, fixed_gram, start = state.value
        if probe is not None:
            tracemalloc.start()
        sol = None
        try:
            rows, cols, ratings = unpack(block)
            sol = solve_block(rows, cols, ratings, factors, bias, mu, objective, max_gather,
                              fixed_gram=fixed_gram, previous=start)
        except SolveError as err:
            raise SolveError(f"{side} block {int(block['block'].iloc[0])}: {err}") from err
        finally:
            if probe is not None:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                probe.add([(int(block["n"].sum()), len(sol.rows) if sol else -1, peak)])
        return pack_solution(int(block["block"].iloc[0]), sol)

    try:
        (ratings_by_block.groupBy("block").applyInPandas(solve, SOLUTION_SCHEMA)
         .write.mode("overwrite").options(**FACTOR_WRITE_OPTIONS).parquet(path))
    finally:
        state.destroy()
