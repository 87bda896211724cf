"""Factor Parquet round trip and the non-finite guard naming the iteration and side."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.core.block import BlockSolution
from mfspark.core.state import Side
from mfspark.io.factors import (SOLUTION_SCHEMA, NonFiniteFactorsError, pack_solution,
                                read_side, write_side)


def solution(rows, factors, bias, sse, penalty=None):
    return BlockSolution(rows=rows, factors=factors, bias=bias, sse=sse,
                         penalty=np.zeros(len(rows)) if penalty is None else penalty,
                         counts=np.ones(len(rows), dtype=np.int64))


def test_round_trip_is_exact(spark, tmp_path):
    rng = np.random.default_rng(0)
    side = Side(rng.standard_normal((5, 3)), rng.standard_normal(5), np.arange(5))
    write_side(spark, str(tmp_path / "f"), side, np.full(5, 0.25))
    back, terms = read_side(spark, str(tmp_path / "f"), side.counts, 3)
    np.testing.assert_array_equal(back.factors, side.factors)
    np.testing.assert_array_equal(back.bias, side.bias)
    assert terms.sse == 0.0 and terms.penalty == 1.25


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_factors_name_iteration_and_side(spark, tmp_path, bad):
    side = Side(np.ones((4, 2)), np.zeros(4), np.ones(4, dtype=np.int64))
    side.factors[2, 1] = bad
    write_side(spark, str(tmp_path / "f"), side, np.zeros(4))
    with pytest.raises(NonFiniteFactorsError, match="iteration 3, item step: NaN or infinite"):
        read_side(spark, str(tmp_path / "f"), side.counts, 2, what="iteration 3, item step")


def test_chunks_and_distributed_rows_round_trip(spark, tmp_path):
    """Several chunks per block (tiny chunk size): the dense side and the one-row-per-solved-
    row DataFrame both give back exactly what was packed, rows absent stay zero."""
    from mfspark.io.factors import read_rows

    rng = np.random.default_rng(1)
    rows = np.array([7, 1, 4, 9, 0], dtype=np.int64)  # rows 2, 3, 5, 6, 8 not solved
    factors, bias, sse = rng.standard_normal((5, 3)), rng.standard_normal(5), rng.random(5)
    penalty = rng.random(5)
    chunks = pack_solution(11, solution(rows, factors, bias, sse, penalty),
                           chunk_bytes=2 * (8 * 3 + 12))
    assert len(chunks) == 3 and list(chunks["n"]) == [2, 2, 1]
    spark.createDataFrame(chunks, SOLUTION_SCHEMA).write.parquet(str(tmp_path / "f"))
    side, total = read_side(spark, str(tmp_path / "f"), np.ones(10, dtype=np.int64), 3)
    np.testing.assert_array_equal(side.factors[rows], factors)
    np.testing.assert_array_equal(side.bias[rows], bias)
    assert not side.factors[[2, 3, 5, 6, 8]].any()
    assert total.sse == pytest.approx(sse.sum(), rel=1e-15)
    assert total.penalty == pytest.approx(penalty.sum(), rel=1e-15)
    got = read_rows(spark, str(tmp_path / "f")).toPandas().sort_values("idx")
    order = np.argsort(rows)
    np.testing.assert_array_equal(got["idx"], rows[order])
    np.testing.assert_array_equal(got["bias"], bias[order])
    np.testing.assert_array_equal(np.stack(got["features"]), factors[order])


def test_another_rank_is_a_named_error(spark, tmp_path):
    from mfspark.io.factors import FactorLayoutError

    side = Side(np.ones((4, 2)), np.zeros(4), np.ones(4, dtype=np.int64))
    write_side(spark, str(tmp_path / "f"), side, np.zeros(4))
    with pytest.raises(FactorLayoutError, match="holds rank 2 factors, expected 3"):
        read_side(spark, str(tmp_path / "f"), side.counts, 3)


def test_driver_reads_local_factor_files_like_spark(spark, tmp_path):
    """The driver's direct PyArrow read of a half-step's output gives exactly what Spark's
    reader gives; only local paths take it."""
    from mfspark.io.factors import driver_local_path, read_solution

    rng = np.random.default_rng(2)
    chunks = pack_solution(3, solution(np.arange(6), rng.standard_normal((6, 2)), rng.random(6),
                                       rng.random(6)), chunk_bytes=2 * (8 * 2 + 12))
    path = str(tmp_path / "f")
    spark.createDataFrame(chunks, SOLUTION_SCHEMA).repartition(2).write.parquet(path)
    assert driver_local_path(spark, path) == path
    assert driver_local_path(spark, f"file://{path}") == path
    assert driver_local_path(spark, "hdfs://namenode:8020/work") is None
    assert driver_local_path(spark, "s3a://bucket/work") is None
    direct = read_solution(spark, f"file://{path}")
    via_spark = spark.read.schema(SOLUTION_SCHEMA).parquet(path).toArrow().to_pydict()
    def rows(table):
        return sorted(zip(table["chunk"], table["idx"], table["bias"], table["features"],
                          table["sse"]))

    assert len(direct["chunk"]) == 3
    assert rows(direct) == rows(via_spark)
    empty = tmp_path / "empty"
    spark.createDataFrame([], SOLUTION_SCHEMA).write.parquet(str(empty))
    assert read_solution(spark, str(empty)) == {name: [] for name in direct}
