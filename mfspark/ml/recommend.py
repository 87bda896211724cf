"""Top-k recommendations at scale: blocks of factors, one matrix product per block pair.

For "the k best items of every user" (and symmetrically users of every item):

1. each side's factor rows are hashed into blocks (``pmod(xxhash64(id), n)``) and each block
   is gathered into one row (ids, biases, flattened factors), about ``blockSize`` rows each;
2. the user blocks are cross-joined with the item blocks (rows = block pairs, never
   user x item pairs), and the seen pairs to exclude are grouped by the same block pair;
3. one Arrow UDF per block pair computes the scores ``mu + b + c + U_blk V_blk^T`` by matrix
   products, masks the seen pairs and keeps each user's ``k`` best
   (:func:`mfspark.core.topn.block_top_k`);
4. the candidates (at most ``k`` per user per item block) are merged per user in Spark SQL.

The output has MLlib's schema: the source ID column and ``recommendations``, an array of
``struct<dst_col, rating: float>`` sorted by decreasing score.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mfspark.core.topn import block_top_k
from mfspark.engine.loop import parallelism
from mfspark.ml.params import ParamError


def _blocks(factors: DataFrame, num_blocks: int, name: str) -> DataFrame:
    """One row per block: ``{name}_block``, ``{name}_ids``, ``{name}_bias``,
    ``{name}_features`` (the block's factor rows flattened)."""
    rows = F.col("rows")
    return (factors.withColumn("block", F.pmod(F.xxhash64("id"), F.lit(num_blocks)))
            .groupBy("block").agg(F.collect_list(F.struct("id", "bias", "features")).alias("rows"))
            .select(F.col("block").alias(f"{name}_block"), rows["id"].alias(f"{name}_ids"),
                    rows["bias"].alias(f"{name}_bias"),
                    F.flatten(rows["features"]).alias(f"{name}_features")))


def _seen_by_block_pair(exclude: DataFrame, src_col: str, dst_col: str, src_type: T.DataType,
                        dst_type: T.DataType, src_blocks: int, dst_blocks: int) -> DataFrame:
    """The pairs to exclude, cast to the model's ID types and grouped by block pair."""
    for column in (src_col, dst_col):
        if column not in exclude.columns:
            raise ParamError(f"the DataFrame of pairs to exclude needs column {column!r}; "
                             f"it has {exclude.columns}")
    pairs = (exclude.select(F.col(src_col).try_cast(src_type).alias("s"),
                            F.col(dst_col).try_cast(dst_type).alias("d"))
             .dropna().distinct())
    return (pairs.groupBy(F.pmod(F.xxhash64("s"), F.lit(src_blocks)).alias("src_block"),
                          F.pmod(F.xxhash64("d"), F.lit(dst_blocks)).alias("dst_block"))
            .agg(F.collect_list("s").alias("seen_src"), F.collect_list("d").alias("seen_dst")))


def _side(row: pa.RecordBatch, name: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    ids = row.column(f"{name}_ids").flatten()
    bias = row.column(f"{name}_bias").flatten().to_numpy(zero_copy_only=False)
    flat = row.column(f"{name}_features").flatten().to_numpy(zero_copy_only=False)
    return ids, bias, flat.reshape(len(ids), -1)  # a block is never empty; rank 0: (n, 0)


def _positions(ids: pa.Array, values: pa.Array) -> np.ndarray:
    return pd.Index(ids.to_pandas()).get_indexer(values.to_pandas())


def _scorer(mu: float, k: int, with_seen: bool):
    """The Arrow UDF of step 3, one block pair (one input row) at a time."""

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for r in range(batch.num_rows):
                row = batch.slice(r, 1)
                src_ids, src_bias, src_f = _side(row, "src")
                dst_ids, dst_bias, dst_f = _side(row, "dst")
                seen = None
                if with_seen and row.column("seen_src").null_count == 0:
                    seen = (_positions(src_ids, row.column("seen_src").flatten()),
                            _positions(dst_ids, row.column("seen_dst").flatten()))
                    ok = (seen[0] >= 0) & (seen[1] >= 0)
                    seen = (seen[0][ok], seen[1][ok])
                rows, cols, scores = block_top_k(src_f, src_bias, dst_f, dst_bias, mu, k, seen)
                yield pa.RecordBatch.from_arrays(
                    [src_ids.take(pa.array(rows)), dst_ids.take(pa.array(cols)),
                     pa.array(scores, pa.float64())], names=["src", "dst", "score"])

    return score


def recommend(src: DataFrame, dst: DataFrame, mu: float, k: int, block_size: int,
              src_col: str, dst_col: str, exclude: DataFrame | None = None) -> DataFrame:
    """The ``k`` best ``dst`` IDs for every row of ``src``.

    Parameters
    ----------
    src, dst : DataFrame
        Factor DataFrames (``id``, ``bias``, ``features``): the side recommended *to* and the
        side recommended.
    k : int
        Recommendations per source ID (fewer if fewer are eligible; a source ID with none
        is absent from the output).
    block_size : int
        Target number of factor rows per block (MLlib's ``blockSize``); the source side gets
        at least as many blocks as the cluster has cores.
    exclude : DataFrame, optional
        Pairs never to recommend, with columns ``src_col`` and ``dst_col`` (e.g. the
        training ratings: "leave out what the user already rated").

    Returns
    -------
    DataFrame
        ``src_col`` and ``recommendations``: array of ``struct<dst_col, rating: float>``,
        best first.
    """
    if not isinstance(k, int) or k < 1:
        raise ParamError(f"the number of recommendations must be an integer >= 1, got {k!r}")
    spark = src.sparkSession
    n_src, n_dst = src.count(), dst.count()
    cores = parallelism(spark)
    src_blocks = max(1, min(n_src, max(math.ceil(n_src / block_size), cores)))
    dst_blocks = max(1, math.ceil(n_dst / block_size))
    src_type, dst_type = src.schema["id"].dataType, dst.schema["id"].dataType
    pairs = _blocks(src, src_blocks, "src").crossJoin(_blocks(dst, dst_blocks, "dst"))
    if exclude is not None:
        seen = _seen_by_block_pair(exclude, src_col, dst_col, src_type, dst_type,
                                   src_blocks, dst_blocks)
        pairs = pairs.join(seen, (pairs.src_block == seen.src_block)
                           & (pairs.dst_block == seen.dst_block), "left").drop("src_block",
                                                                              "dst_block")
    pairs = pairs.repartition(min(src_blocks * dst_blocks, 4 * cores))
    schema = T.StructType([T.StructField("src", src_type), T.StructField("dst", dst_type),
                           T.StructField("score", T.DoubleType())])
    candidates = pairs.mapInArrow(_scorer(mu, k, exclude is not None), schema)
    best = F.slice(F.sort_array(F.collect_list(F.struct("score", "dst")), asc=False), 1, k)
    return (candidates.groupBy("src").agg(best.alias("best"))
            .select(F.col("src").alias(src_col),
                    F.transform("best", lambda x: F.struct(
                        x["dst"].alias(dst_col),
                        x["score"].cast("float").alias("rating"))).alias("recommendations")))


def flatten(recs: DataFrame, src_col: str, dst_col: str) -> DataFrame:
    """MLlib-shaped recommendations as one row per recommendation: ``src_col``, ``rank``
    (1 = best), ``dst_col``, ``score`` (for CSV, which has no arrays)."""
    return (recs.select(src_col, F.posexplode("recommendations").alias("pos", "r"))
            .select(src_col, (F.col("pos") + 1).alias("rank"), F.col("r")[dst_col].alias(dst_col),
                    F.col("r")["rating"].alias("score")))
