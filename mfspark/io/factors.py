"""Factor Parquet: what each half-step writes and the driver reads back for the next
broadcast (columns ``idx``, ``bias``, ``features``, ``sse``, ``n``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession

from mfspark.halfstep import SOLUTION_SCHEMA, Side


class NonFiniteFactorsError(FloatingPointError):
    """A half-step produced NaN or infinite factors."""


def features_array(factors: np.ndarray) -> pa.Array:
    """An (n, K) array as an Arrow ``list<double>`` column of n rows."""
    n, k = factors.shape
    offsets = pa.array((np.arange(n + 1) * k).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(factors.reshape(-1)))


def write_side(spark: SparkSession, path: str, side: Side) -> None:
    """Write a driver-side state (the seeded initial factors) in the half-step layout."""
    table = pa.table({"idx": pa.array(np.arange(len(side.bias), dtype=np.int32)),
                      "bias": pa.array(side.bias), "features": features_array(side.factors),
                      "sse": pa.array(np.zeros(len(side.bias))),
                      "n": pa.array(side.counts.astype(np.int64))})
    spark.createDataFrame(table).write.mode("overwrite").parquet(path)


def read_side(spark: SparkSession, path: str, counts: np.ndarray, rank: int,
              what: str = "factors") -> tuple[Side, float]:
    """Read a half-step's output into a dense :class:`Side` (rows absent from the file keep
    zeros) and return it with the summed squared residuals it recorded.

    Raises :class:`NonFiniteFactorsError` naming ``what`` if any value is NaN or infinite.
    """
    table = (spark.read.schema(SOLUTION_SCHEMA).parquet(path)
             .select("idx", "bias", "features", "sse").toArrow())
    idx = table.column("idx").to_numpy()
    side = Side.zeros(counts, rank)
    features = pa.chunked_array(table.column("features")).combine_chunks()
    side.factors[idx] = features.flatten().to_numpy().reshape(len(idx), rank)
    side.bias[idx] = table.column("bias").to_numpy()
    sse = float(np.sum(table.column("sse").to_numpy()))
    if not (np.isfinite(side.factors).all() and np.isfinite(side.bias).all() and np.isfinite(sse)):
        raise NonFiniteFactorsError(f"{what}: NaN or infinite values in {path}; lower the rank "
                                    "or raise the regularization")
    return side, sse
