"""Factor Parquet: what each half-step writes and the driver reads back for the next
broadcast, in the packed layout :data:`SOLUTION_SCHEMA` (a few rows per block, each holding
many solved rows' indices, biases and factors as bytes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

from mfspark.core.block import BlockSolution
from mfspark.core.state import Side

#: What a half-step writes: each block's solved rows packed like the ratings, a few Parquet
#: rows per block (chunks of at most :data:`SOLUTION_CHUNK_BYTES`): ``n`` rows' dense indices
#: (``int32``), biases (``float64``) and factors (``float64``, ``n x K`` row-major), and the
#: chunk's summed data term and penalty of J.
SOLUTION_SCHEMA = ("block int, chunk int, n int, rank int, idx binary, bias binary, "
                   "features binary, sse double, penalty double")
#: Upper bound on one packed solution chunk's bytes: small enough that the JVM's Arrow and
#: Parquet buffers for a value stay small (a 20 MB value per block at rank 100 exhausted a
#: 1 GB driver heap in local mode), large enough that a block is a handful of rows.
SOLUTION_CHUNK_BYTES = 4 << 20

#: Parquet writer options of the factor files: raw doubles do not compress, and a
#: dictionary or min/max statistics of multi-megabyte binary values only cost time (about
#: 0.1 s per rank-100 half-step, measured).
FACTOR_WRITE_OPTIONS = {"compression": "none", "parquet.enable.dictionary": "false",
                        "parquet.column.statistics.enabled": "false"}


class NonFiniteFactorsError(FloatingPointError):
    """A half-step produced NaN or infinite factors."""


class FactorLayoutError(ValueError):
    """Factor Parquet that does not hold what the reader expects (rank, sizes)."""


def features_array(factors: np.ndarray) -> pa.Array:
    """An (n, K) array as an Arrow ``list<double>`` column of n rows."""
    n, k = factors.shape
    offsets = pa.array((np.arange(n + 1) * k).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(factors.reshape(-1)))


def pack_solution(block: int, sol: BlockSolution,
                  chunk_bytes: int = SOLUTION_CHUNK_BYTES) -> pd.DataFrame:
    """One block's solution as :data:`SOLUTION_SCHEMA` chunks (one Parquet row per chunk
    instead of one per solved row: no per-row Arrow conversion)."""
    rows, factors, bias = sol.rows, sol.factors, sol.bias
    n, rank = factors.shape
    step = max(1, chunk_bytes // (8 * rank + 12))
    out = []
    for k, lo in enumerate(range(0, n, step)):
        sl = slice(lo, lo + step)
        out.append((block, k, len(rows[sl]), rank,
                    np.ascontiguousarray(rows[sl], np.int32).tobytes(),
                    np.ascontiguousarray(bias[sl], np.float64).tobytes(),
                    np.ascontiguousarray(factors[sl], np.float64).tobytes(),
                    float(np.sum(sol.sse[sl])), float(np.sum(sol.penalty[sl]))))
    return pd.DataFrame(out, columns=["block", "chunk", "n", "rank", "idx", "bias", "features",
                                      "sse", "penalty"])


def write_side(spark: SparkSession, path: str, side: Side, penalty: np.ndarray) -> None:
    """Write a driver-side state (the seeded initial factors, with each row's ``penalty``
    of J) in the half-step layout."""
    n = len(side.bias)
    sol = BlockSolution(rows=np.arange(n), factors=side.factors, bias=side.bias,
                        sse=np.zeros(n), penalty=penalty, counts=side.counts)
    chunks = pack_solution(0, sol)
    (spark.createDataFrame(chunks, SOLUTION_SCHEMA).write.mode("overwrite")
     .options(**FACTOR_WRITE_OPTIONS).parquet(path))


def driver_local_path(spark: SparkSession, path: str) -> str | None:
    """``path`` as a directory this (driver) process can open directly, or None.

    That is the case for ``file:`` URIs and, when Hadoop's default filesystem is the local
    one (local mode, Docker), for paths without a scheme.  Paths on HDFS, S3 and the like
    give None: they are read through Spark.
    """
    scheme = urlparse(path).scheme
    if not scheme:
        default_fs = spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or ""
        if default_fs.startswith("file:"):
            return os.path.abspath(path)
        return None
    if scheme == "file":
        return urlparse(path).path
    return None


def read_solution(spark: SparkSession, path: str) -> dict[str, list]:
    """The columns of a half-step's output (:data:`SOLUTION_SCHEMA`) on the driver.

    A directory the driver can open (:func:`driver_local_path`) is read with PyArrow,
    which skips Spark's file listing and job (about 0.15 s per half-step at rank 10);
    anything else through Spark.  Both read the committed part files only (names starting
    with ``_`` or ``.``, such as ``_SUCCESS``, ``_temporary`` and checksums, are skipped).
    """
    local = driver_local_path(spark, path)
    if local is not None and os.path.isdir(local):
        columns = [f.split()[0] for f in SOLUTION_SCHEMA.split(", ")]
        table = pq.read_table(local)
        if table.num_rows == 0:  # no part file, or empty ones: nothing was solved
            return {name: [] for name in columns}
        return table.select(columns).to_pydict()
    return spark.read.schema(SOLUTION_SCHEMA).parquet(path).toArrow().to_pydict()


def _decode(n: int, rank: int, idx: bytes, bias: bytes, features: bytes, path: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.frombuffer(idx, dtype=np.int32)
    b = np.frombuffer(bias, dtype=np.float64)
    f = np.frombuffer(features, dtype=np.float64)
    if not len(rows) == len(b) == n or len(f) != n * rank:
        raise FactorLayoutError(f"{path}: a chunk of {n} rows holds {len(rows)} indices, "
                                f"{len(b)} biases and {len(f)} factor values "
                                f"(expected {n} x rank {rank}); the files are damaged")
    return rows, b, f.reshape(n, rank)


@dataclass(frozen=True)
class SideTerms:
    """The terms of J a half-step's output recorded, summed over its rows."""

    sse: float
    """The data term (explicit ratings: squared training residuals)."""
    penalty: float
    """The side's regularization term."""


def read_side(spark: SparkSession, path: str, counts: np.ndarray, rank: int,
              what: str = "factors") -> tuple[Side, SideTerms]:
    """Read a half-step's output into a dense :class:`Side` (rows absent from the file keep
    zeros) and return it with the terms of J it recorded.

    Raises :class:`NonFiniteFactorsError` naming ``what`` if any value is NaN or infinite,
    and :class:`FactorLayoutError` if the files hold another rank.
    """
    table = read_solution(spark, path)
    side = Side.zeros(counts, rank)
    for n, k, idx, bias, features in zip(table["n"], table["rank"], table["idx"],
                                         table["bias"], table["features"]):
        if k != rank:
            raise FactorLayoutError(f"{what}: {path} holds rank {k} factors, expected {rank}")
        rows, b, f = _decode(n, k, idx, bias, features, path)
        side.factors[rows] = f
        side.bias[rows] = b
    terms = SideTerms(float(np.sum(table["sse"])), float(np.sum(table["penalty"])))
    if not (np.isfinite(side.factors).all() and np.isfinite(side.bias).all()
            and np.isfinite(terms.sse) and np.isfinite(terms.penalty)):
        raise NonFiniteFactorsError(f"{what}: NaN or infinite values in {path}; lower the rank "
                                    "or raise the regularization")
    return side, terms


def read_rows(spark: SparkSession, path: str) -> DataFrame:
    """A half-step's output as a distributed DataFrame of one row per solved row
    (``idx`` int, ``bias`` double, ``features`` array<double>), never collected."""

    def explode(batches):
        for chunks in batches:
            for n, k, idx, bias, features in zip(chunks["n"], chunks["rank"], chunks["idx"],
                                                 chunks["bias"], chunks["features"]):
                rows, b, f = _decode(int(n), int(k), idx, bias, features, path)
                yield pd.DataFrame({"idx": rows, "bias": b, "features": list(f)})

    return (spark.read.schema(SOLUTION_SCHEMA).parquet(path)
            .select("n", "rank", "idx", "bias", "features")
            .mapInPandas(explode, "idx int, bias double, features array<double>"))
