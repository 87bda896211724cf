"""Factor Parquet: what each half-step writes, in the work directory, and how it is read.

A half-step (and the seeded start) writes one Parquet dataset of :data:`SOLUTION_SCHEMA`
rows per side, a few per block, told apart by ``kind``:

- ``FACTORS``: chunks of the block's solved rows, each an
  :func:`~mfspark.core.packing.encode_factors` blob (keys, biases, factors);
- ``GRAM``: the block's share of the side's Gram matrix (implicit feedback: the next
  half-step adds it to every row's system), ``float64`` row-major;
- ``ROUTED``: the rows another block (``dest``) references, for the next half-step when the
  side is too large to send whole;
- ``STATS``: the block's terms of the objective (data term, penalty), its held-out error,
  its peak solver memory and, if it failed, why.

The driver never reads the factors: the next half-step joins them to its blocks, and the
model is a DataFrame of them (:func:`factor_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.core.packing import decode_factors

FACTORS, GRAM, ROUTED, STATS = range(4)

SOLUTION_SCHEMA = ("block int, chunk int, kind int, dest int, blob binary, sse double, "
                   "penalty double, test_sse double, test_sae double, test_n long, "
                   "error string, peak long, ratings long, rows long")
#: Upper bound on one factor chunk's bytes: under half a G1 heap region (see
#: :data:`mfspark.engine.blocks.CHUNK_RATINGS`), so that no value the JVM buffers is a
#: "humongous" object, and large enough that the per-row costs vanish.
SOLUTION_CHUNK_BYTES = 256 << 10

#: Parquet writer options of the factor files: raw doubles do not compress, and a
#: dictionary or min/max statistics of large binary values only cost time.  A writer
#: buffers a page and a row group on the heap and checks their sizes only every 100 to
#: 10,000 rows by default: with chunks of hundreds of KiB that is tens of MiB per task.
#: Checked every few rows, with 2 MiB row groups (also what the vectorized reader buffers
#: per batch), a task holds a few chunks whatever the side's size.
FACTOR_WRITE_OPTIONS = {"compression": "none", "parquet.enable.dictionary": "false",
                        "parquet.column.statistics.enabled": "false",
                        "parquet.block.size": str(2 << 20),
                        "parquet.block.size.row.check.min": "1",
                        "parquet.block.size.row.check.max": "4",
                        "parquet.page.size.row.check.min": "1",
                        "parquet.page.size.row.check.max": "4"}

#: One row per factor row of a side: its key, bias and factors.
FACTOR_ROWS_SCHEMA = "key long, bias double, features array<double>"


class NonFiniteFactorsError(FloatingPointError):
    """A half-step produced NaN or infinite factors."""


class FactorLayoutError(ValueError):
    """Factor Parquet that does not hold what the reader expects (rank, sizes)."""


def read_solution(spark: SparkSession, path: str) -> DataFrame:
    """A half-step's output as written (:data:`SOLUTION_SCHEMA`)."""
    return spark.read.schema(SOLUTION_SCHEMA).parquet(path)


def factor_rows(spark: SparkSession, path: str, rank: int | None = None) -> DataFrame:
    """A side's factors as one row per factor row (``key``, ``bias``, ``features``), decoded
    where they are, never collected; ``rank`` checks the files hold that rank."""

    def explode(batches):
        for chunks in batches:
            for blob in chunks.column("blob").to_pylist():
                keys, bias, factors = decode_factors(blob)
                n, k = factors.shape
                if rank is not None and k != rank:
                    raise FactorLayoutError(f"{path} holds rank {k} factors, expected {rank}")
                # one flat Arrow array of values cut into rows by offsets: no object per row
                features = pa.ListArray.from_arrays(
                    pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)),
                    pa.array(factors.astype(np.float64).ravel()))
                yield pa.RecordBatch.from_arrays([pa.array(keys), pa.array(bias), features],
                                                 names=["key", "bias", "features"])

    return (read_solution(spark, path).filter(F.col("kind") == FACTORS).select("blob")
            .mapInArrow(explode, FACTOR_ROWS_SCHEMA))


@dataclass(frozen=True)
class SideTerms:
    """What a half-step's output recorded, summed over its blocks."""

    sse: float
    """The data term (explicit ratings: squared training residuals)."""
    penalty: float
    """The side's regularization term."""


def read_terms(spark: SparkSession, path: str) -> SideTerms:
    """The terms of J a stored half-step recorded (one small aggregation of its
    ``STATS`` rows): what a resumed run continues from."""
    row = (read_solution(spark, path).filter(F.col("kind") == STATS)
           .agg(F.sum("sse").alias("sse"), F.sum("penalty").alias("penalty")).first())
    return SideTerms(float(row["sse"] or 0.0), float(row["penalty"] or 0.0))
