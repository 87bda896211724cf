"""Side-by-side measurements: mfspark, Spark MLlib ALS, the in-process NumPy floor and, when
installed (``pip install 'mfspark[benchmark]'``), LensKit's single-machine ``BiasedMFScorer``.

Every system trains on the same train split (same rank, iterations and regularization) in
the same SparkSession, and is scored on the same test rows (those whose user and item were
seen in training, since MLlib cannot score the others).  Fit times include everything a
user waits for: mfspark's ID indexing and partitioning, MLlib's blocking.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from mfspark.config import ALSParams, InputSpec
from mfspark.core.local import fit_in_memory, predict
from mfspark.data.prepare import prepare
from mfspark.data.split import random_split
from mfspark.data.validate import RatingStats, typed_ratings
from mfspark.engine.loop import fit
from mfspark.io.ratings import read_ratings


#: The systems :func:`compare` knows.
SYSTEMS = ("mfspark", "mllib", "numpy", "lenskit")


@dataclass
class Split:
    """The benchmark's data: train/test with canonical columns, both persisted."""

    train: DataFrame
    test: DataFrame
    num_train: int
    num_test: int
    stats: RatingStats | None = None
    """The validation's counts of all the ratings read (they size the blocks)."""


def load_split(spark: SparkSession, path: str, test_fraction: float, seed: int) -> Split:
    """The ratings at ``path`` split by :func:`mfspark.data.split.random_split`; the test
    part keeps only ratings whose user and item are in the training part, the rows every
    system can score (MLlib cannot score the others)."""
    ratings, stats = typed_ratings(read_ratings(spark, InputSpec(path=path)), path)
    train, test = random_split(ratings.select("user", "item", "rating"), test_fraction, seed)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    test = (test.join(train.select("user").distinct(), "user", "left_semi")
            .join(train.select("item").distinct(), "item", "left_semi")
            .select("user", "item", "rating").persist(StorageLevel.MEMORY_AND_DISK))
    return Split(train, test, train.count(), test.count(), stats)


def jvm_peak_heap_mb(spark: SparkSession, reset: bool = False) -> float:
    """Peak JVM heap (driver; in local mode also the executors) since the last reset."""
    pools = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans()
    peak = 0
    for pool in pools:
        if str(pool.getType().toString()) == "Heap memory":
            peak += pool.getPeakUsage().getUsed()
            if reset:
                pool.resetPeakUsage()
    return peak / 2**20


def python_peak_rss_mb() -> float:
    """Peak resident memory of this (driver) Python process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mllib_blas(spark: SparkSession) -> str:
    """Which BLAS implementation Spark's MLlib uses (native JNI or a Java fallback)."""
    try:
        return str(spark.sparkContext._jvm.dev.ludovic.netlib.blas.BLAS.getInstance()
                   .getClass().getSimpleName())
    except Exception as err:  # noqa: BLE001 - informational only
        return f"unknown ({type(err).__name__})"


def blas_gflops(n: int = 1500, repeats: int = 3) -> float:
    """Measured float64 matrix-multiply rate of this process's NumPy BLAS."""
    a = np.random.default_rng(0).standard_normal((n, n))
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - began)
    return 2 * n**3 / best / 1e9


def arithmetic_bound_seconds(num_ratings: int, num_users: int, num_items: int, rank: int,
                             iterations: int, gflops: float) -> float:
    """Multiply-adds per iteration, |R|(K+1)^2 + (M+N)(K+1)^3/3, at the measured BLAS rate
    (one multiply-add = 2 flops)."""
    k1 = rank + 1
    madds = num_ratings * k1**2 + (num_users + num_items) * k1**3 / 3
    return iterations * madds * 2 / (gflops * 1e9)


def run_mfspark(data: Split, params: ALSParams, work_dir: str) -> dict[str, Any]:
    spark = data.train.sparkSession
    jvm_peak_heap_mb(spark, reset=True)
    began = time.perf_counter()
    prepared = prepare(data.train, params, None if params.implicit_prefs else data.test,
                       stats=data.stats)
    fitted = fit(prepared.ratings, params, work_dir)
    seconds = time.perf_counter() - began
    # implicit feedback predicts preferences, not ratings: no RMSE (benchmarks/implicit.py
    # compares ranking metrics)
    error = fitted.history[-1].get("test_rmse", math.nan)
    prepared.unpersist()
    return {"fit_seconds": seconds, "seconds_per_iteration": seconds / params.iterations,
            "test_rmse": error, "train_rmse": fitted.history[-1]["train_rmse"],
            "objective": fitted.history[-1]["objective"],
            "jvm_peak_heap_mb": jvm_peak_heap_mb(spark),
            "num_users": prepared.ratings.num_users, "num_items": prepared.ratings.num_items}


def run_mllib(data: Split, params: ALSParams) -> dict[str, Any]:
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.recommendation import ALS

    spark = data.train.sparkSession
    jvm_peak_heap_mb(spark, reset=True)
    began = time.perf_counter()
    model = ALS(rank=params.rank, maxIter=params.iterations, regParam=params.reg,
                userCol="user", itemCol="item", ratingCol="rating", seed=params.seed,
                coldStartStrategy="drop", implicitPrefs=params.implicit_prefs,
                alpha=params.alpha, nonnegative=params.nonnegative).fit(data.train)
    seconds = time.perf_counter() - began
    predictions = model.transform(data.test)
    rmse = (math.nan if params.implicit_prefs else
            RegressionEvaluator(metricName="rmse", labelCol="rating").evaluate(predictions))
    return {"fit_seconds": seconds, "seconds_per_iteration": seconds / params.iterations,
            "test_rmse": rmse, "jvm_peak_heap_mb": jvm_peak_heap_mb(spark)}


def run_numpy(data: Split, params: ALSParams) -> dict[str, Any]:
    """The same math in this process on collected arrays (single-threaded BLAS if
    OPENBLAS_NUM_THREADS=1): what mfspark would cost without any distribution."""
    if params.implicit_prefs or params.nonnegative or not params.fit_biases:
        raise ValueError("the in-process NumPy floor (system 'numpy') covers the default "
                         "model only: drop it from --systems with --implicit-prefs, "
                         "--nonnegative or --no-biases")
    train = data.train.select("user", "item", "rating").toArrow()
    test = data.test.select("user", "item", "rating").toArrow()
    uids = np.unique(train.column("user").to_numpy())
    iids = np.unique(train.column("item").to_numpy())
    u = np.searchsorted(uids, train.column("user").to_numpy())
    i = np.searchsorted(iids, train.column("item").to_numpy())
    began = time.perf_counter()
    fitted = fit_in_memory(u, i, train.column("rating").to_numpy(), len(uids), len(iids),
                           params.objective(), params.rank, params.iterations, params.seed)
    seconds = time.perf_counter() - began
    pred = predict(np.searchsorted(uids, test.column("user").to_numpy()),
                   np.searchsorted(iids, test.column("item").to_numpy()), fitted.users,
                   fitted.items, fitted.mu)
    error = float(np.sqrt(np.mean((test.column("rating").to_numpy() - pred) ** 2)))
    return {"fit_seconds": seconds, "seconds_per_iteration": seconds / params.iterations,
            "test_rmse": error, "python_peak_rss_mb": python_peak_rss_mb()}


def run_lenskit(data: Split, params: ALSParams) -> dict[str, Any]:
    """LensKit's ``BiasedMFScorer``: ALS with biases in one process (its own threads, one
    per core), the single-machine alternative.  Its regularization is count-scaled like
    ``reg_scale = "count"``, and its biases are damped means fitted once before the
    factors (mfspark fits them inside every half-step).  ``fit_seconds`` runs from pandas
    frames to the trained model (the Dataset build included); ``collect_seconds`` is the
    time to bring the split from Spark to pandas, which a user on Spark also pays."""
    if (params.implicit_prefs or params.nonnegative or not params.fit_biases
            or params.reg_scale != "count"):
        raise ValueError("system 'lenskit' (BiasedMFScorer) covers the default model with "
                         "count-scaled regularization only: drop it from --systems with "
                         "--implicit-prefs, --nonnegative, --no-biases or --reg-scale other "
                         "than count")
    try:
        from lenskit.als import BiasedMFScorer
        from lenskit.data import from_interactions_df
    except ImportError as err:
        raise ValueError("system 'lenskit' needs LensKit: pip install 'mfspark[benchmark]', "
                         "or drop it from --systems") from err
    began = time.perf_counter()
    train = data.train.select("user", "item", "rating").toPandas()
    test = data.test.select("user", "item", "rating").toPandas()
    collected = time.perf_counter() - began
    began = time.perf_counter()
    dataset = from_interactions_df(train, user_col="user", item_col="item", rating_col="rating")
    scorer = BiasedMFScorer(features=params.rank, epochs=params.iterations,
                            regularization=params.reg)
    scorer.train(dataset)
    seconds = time.perf_counter() - began
    u = scorer.users.numbers(test["user"].to_numpy(), missing="negative")
    i = scorer.items.numbers(test["item"].to_numpy(), missing="negative")
    if (u < 0).any() or (i < 0).any():  # load_split keeps only IDs seen in training
        raise RuntimeError(f"{int((u < 0).sum())} test users and {int((i < 0).sum())} test "
                           "items are unknown to LensKit's model")
    bias = scorer.bias
    pred = (bias.global_bias + bias.user_biases[u] + bias.item_biases[i]
            + np.einsum("ij,ij->i", scorer.user_embeddings[u], scorer.item_embeddings[i]))
    error = float(np.sqrt(np.mean((test["rating"].to_numpy() - pred) ** 2)))
    return {"fit_seconds": seconds, "seconds_per_iteration": seconds / params.iterations,
            "collect_seconds": collected, "test_rmse": error,
            "python_peak_rss_mb": python_peak_rss_mb()}


#: The systems every other system's fit time is compared with, when they ran.
ANCHORS = ("mllib", "lenskit")


def compare(data: Split, params: ALSParams, work_dir: str, systems: list[str]) -> list[dict]:
    """One row per system for one rank; ratios against MLlib and LensKit when they ran."""
    rows = []
    for system in systems:
        if system == "mfspark":
            row = run_mfspark(data, params, f"{work_dir}/rank-{params.rank}")
        elif system == "mllib":
            row = run_mllib(data, params)
        elif system == "numpy":
            row = run_numpy(data, params)
        elif system == "lenskit":
            row = run_lenskit(data, params)
        else:
            raise ValueError(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")
        rows.append({"system": system, "rank": params.rank, "iterations": params.iterations,
                     "reg": params.reg, "reg_scale": params.reg_scale, **row})
    anchors = {a: next((r for r in rows if r["system"] == a), None) for a in ANCHORS}
    for r in rows:
        for name, anchor in anchors.items():
            if anchor is not None:
                r[f"time_vs_{name}"] = r["fit_seconds"] / anchor["fit_seconds"]
        if anchors["mllib"] is not None:
            r["rmse_vs_mllib"] = r["test_rmse"] - anchors["mllib"]["test_rmse"]
        r.update(implicit_prefs=params.implicit_prefs, alpha=params.alpha,
                 nonnegative=params.nonnegative,
                 biases=params.fit_biases and r["system"] != "mllib",  # MLlib has none
                 cg_steps=params.cg_steps if r["system"] == "mfspark" else 0)
    return rows


def repeated(data: Split, params: ALSParams, work_dir: str, systems: list[str],
             repeats: int) -> list[dict]:
    """``repeats`` runs of :func:`compare`, the systems' order reversed every other run (so
    that no system always runs first, or always right after another); one row per system
    and run, with its ``repeat`` number and, when MLlib ran, the ratio to MLlib's fit in the
    *same* run.  :func:`summarize` reduces them to one row per system."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    runs = []
    for rep in range(repeats):
        order = systems if rep % 2 == 0 else systems[::-1]
        for row in compare(data, params, work_dir, order):
            runs.append({**row, "repeat": rep})
    return runs


#: Columns :func:`summarize` reduces by their maximum (peaks); other numbers by the median.
PEAK_COLUMNS = ("jvm_peak_heap_mb", "python_peak_rss_mb")


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (system, rank), in the order they first appear: the median of each
    float column (the measurements; ints, flags and strings are settings, taken from
    the first run) over the runs (the maximum of the memory peaks), plus ``runs`` and the
    fastest and slowest fit (``fit_seconds_min``, ``fit_seconds_max``).

    ``time_vs_mllib`` is the median of the per-run ratios, each measured against MLlib's fit
    in the same run, minutes apart on the same machine: on a machine whose speed drifts this
    is steadier than the ratio of the two medians.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in runs:
        groups.setdefault((row["system"], row["rank"]), []).append(row)
    out = []
    for (system, rank), rows in groups.items():
        summary: dict[str, Any] = {}
        for key in rows[0]:
            if key == "repeat":
                continue
            values = [r.get(key) for r in rows]
            if all(isinstance(v, float) for v in values):  # measurements; ints are settings
                finite = [v for v in values if not math.isnan(v)]
                reduce = max if key in PEAK_COLUMNS else statistics.median
                summary[key] = reduce(finite) if finite else math.nan
            else:
                summary[key] = values[0]
        fits = [r["fit_seconds"] for r in rows]
        summary.update(runs=len(rows), fit_seconds_min=min(fits), fit_seconds_max=max(fits))
        out.append(summary)
    return out


def warm_up(data: Split, params: ALSParams, work_dir: str, systems: list[str],
            size: int = 20_000) -> None:
    """One untimed one-iteration fit of each Spark system on ``size`` training ratings, so
    that neither timed fit pays the session's warm-up (Python workers and their imports,
    JIT compilation of shared Spark code) for the other."""
    small = data.train.limit(size).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sample = Split(small, small, small.count(), 0)
        compare(sample, replace(params, iterations=1), work_dir,
                [s for s in systems if s in ("mfspark", "mllib")])
    finally:
        small.unpersist()


def environment(spark: SparkSession) -> dict[str, Any]:
    return {"master": spark.conf.get("spark.master"), "cores": os.cpu_count(),
            "mllib_blas": mllib_blas(spark),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
            "numpy_gflops": blas_gflops()}
