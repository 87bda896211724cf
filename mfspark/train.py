"""The training job as a library call: read, validate, split, index, fit, save.

``jobs/train.py`` only parses flags and calls :func:`train`; tests call it directly.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyspark
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from mfspark import __version__, als, evaluate
from mfspark.config import JobConfig
from mfspark.halfstep import SOLUTION_SCHEMA, Side
from mfspark.indexing import IdIndex, attach_ids, build_index, with_indices
from mfspark.io import fs
from mfspark.io.model import check_writable, write_model
from mfspark.io.ratings import read_ratings
from mfspark.split import random_split
from mfspark.validate import typed_ratings

log = logging.getLogger("mfspark")


@dataclass
class TrainResult:
    """What a training run produced (the model is already saved at ``model_dir``)."""

    model_dir: str
    metadata: dict[str, Any]
    fitted: als.ALSResult
    users: IdIndex
    items: IdIndex
    train: DataFrame
    test: DataFrame | None
    baselines: dict[str, float]


def versions() -> dict[str, str]:
    return {"mfspark": __version__, "pyspark": pyspark.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "pyarrow": pa.__version__,
            "python": platform.python_version()}


def log_iteration(entry: dict[str, float]) -> None:
    test = f"  test_rmse={entry['test_rmse']:.4f}" if "test_rmse" in entry else ""
    log.info("iteration %3d  objective=%.6g  train_rmse=%.4f%s  %.2fs", entry["iteration"],
             entry["objective"], entry["train_rmse"], test, entry["seconds"])


def baselines(ratings: als.PartitionedRatings, config: JobConfig, test: DataFrame,
              work_dir: str) -> dict[str, float]:
    """Test RMSE of the global mean and of the biases-only model (rank 0, same lambda)."""
    zero_u = Side.zeros(ratings.user_counts, 0)
    zero_i = Side.zeros(ratings.item_counts, 0)
    biases = als.fit(ratings, replace(config.als, rank=0), work_dir)
    return {"global_mean": evaluate.rmse(test, zero_u, zero_i, ratings.mu),
            "biases_only": evaluate.rmse(test, biases.users, biases.items, ratings.mu)}


def _factor_frame(spark: SparkSession, path: str, index: IdIndex) -> DataFrame:
    solved = spark.read.schema(SOLUTION_SCHEMA).parquet(path).select("idx", "bias", "features")
    return attach_ids(solved, index)


def train(spark: SparkSession, config: JobConfig, overwrite: bool = False,
          with_baselines: bool = False) -> TrainResult:
    """Train the model described by ``config`` and save it under ``config.out``/model."""
    began = time.perf_counter()
    out = fs.qualify(spark, config.out)
    model_dir, work_dir = f"{out}/model", f"{out}/iterations"
    check_writable(spark, model_dir, overwrite)
    source = config.input.path or "the embedded sample"
    ratings, stats = typed_ratings(read_ratings(spark, config.input), source)
    ratings = ratings.persist(StorageLevel.MEMORY_AND_DISK)
    train_df, test_df = (random_split(ratings, config.test_fraction, config.split_seed)
                         if config.test_fraction > 0 else (ratings, None))
    users = build_index(spark, train_df, "user")
    items = build_index(spark, train_df, "item")
    indexed = with_indices(train_df, users, items)
    test = None
    if test_df is not None:
        test = with_indices(test_df, users, items, how="left").persist(StorageLevel.MEMORY_AND_DISK)
    parts = als.partition(indexed, users.counts, items.counts, config.als)
    num_test = test.count() if test is not None else 0
    log.info("%d ratings read from %s: %d train (%d users, %d items), %d test; mu=%.4f",
             stats.rows, source, parts.count, len(users), len(items), num_test, parts.mu)
    fs.delete(spark, work_dir)
    base = baselines(parts, config, test, f"{out}/baselines") if with_baselines and test else {}
    if base:
        fs.delete(spark, f"{out}/baselines")
    fitted = als.fit(parts, config.als, work_dir, test=test, on_iteration=log_iteration)
    last = f"{work_dir}/iter-{config.als.iterations:04d}"
    metadata = {
        "format": "mfspark-model", "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mu": fitted.mu, **asdict(config.als),
        "user_id_type": stats.user_type, "item_id_type": stats.item_type,
        "num_users": len(users), "num_items": len(items),
        "rows_read": stats.rows, "num_train": parts.count, "num_test": num_test,
        "input": {"path": source, "format": config.input.format},
        "test_fraction": config.test_fraction, "split_seed": config.split_seed,
        "baselines": base, "history": fitted.history, "versions": versions(),
    }
    write_model(spark, model_dir, _factor_frame(spark, f"{last}/user", users),
                _factor_frame(spark, f"{last}/item", items), metadata, overwrite)
    parts.unpersist()
    ratings.unpersist()
    metadata["seconds"] = time.perf_counter() - began
    return TrainResult(model_dir=model_dir, metadata=metadata, fitted=fitted, users=users,
                       items=items, train=indexed, test=test, baselines=base)
