"""The training job as a library call: read, validate, split, index, fit, save.

``jobs/train.py`` only parses flags and calls :func:`train`; tests call it directly.
Every row read is accounted for: ``read = used + rejected + merged`` (``metadata.json``,
``counts``), and the model is committed only once complete (:mod:`mfspark.io.model`).
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

from mfspark import __version__, als, evaluate, resume
from mfspark.config import JobConfig
from mfspark.duplicates import merge_duplicates
from mfspark.halfstep import Side
from mfspark.indexing import IdIndex, attach_ids, build_index, with_indices
from mfspark.io import fs
from mfspark.io.checkpoints import iteration_dir
from mfspark.io.factors import read_rows
from mfspark.io.model import check_writable, write_model
from mfspark.io.ratings import read_ratings
from mfspark.quarantine import screen
from mfspark.split import random_split

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
    counts: dict[str, int]


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
    return attach_ids(read_rows(spark, path), index)


def account(read: int, used: int, rejected: int, merged: int) -> dict[str, int]:
    """The row accounting of a run; a row that went missing is a bug, never data."""
    counts = {"read": read, "used": used, "rejected": rejected, "merged": merged}
    if read != used + rejected + merged:
        raise RuntimeError(f"row accounting does not add up: {counts} "
                           "(read must equal used + rejected + merged)")
    return counts


def train(spark: SparkSession, config: JobConfig, overwrite: bool = False,
          with_baselines: bool = False, resume_run: bool = False) -> TrainResult:
    """Train the model described by ``config`` and save it under ``config.out``/model.

    With ``resume_run`` the run continues from the last complete iteration stored under
    ``config.out``/iterations by an earlier run with the same settings and input
    (:mod:`mfspark.resume`); the model is the same as an uninterrupted run's.
    """
    began = time.perf_counter()
    out = fs.qualify(spark, config.out)
    model_dir, work_dir = f"{out}/model", f"{out}/iterations"
    check_writable(spark, model_dir, overwrite)
    source = config.input.path or "the embedded sample"
    good, stats = screen(read_ratings(spark, config.input), config.input, source,
                         f"{out}/rejected")
    ratings, merged = merge_duplicates(good, config.input.duplicates, source)
    ratings = ratings.persist(StorageLevel.MEMORY_AND_DISK)
    train_df, test_df = (random_split(ratings, config.test_fraction, config.split_seed)
                         if config.test_fraction > 0 else (ratings, None))
    users = build_index(spark, train_df, "user")
    items = build_index(spark, train_df, "item")
    test = None
    if test_df is not None:
        test = with_indices(test_df, users, items, how="left").persist(StorageLevel.MEMORY_AND_DISK)
    parts = als.partition_ids(train_df, users, items, config.als)
    num_test = test.count() if test is not None else 0
    counts = account(stats.rows, parts.count + num_test, stats.rejected, merged)
    log.info("%d ratings read from %s: %d used (%d train with %d users and %d items, %d test), "
             "%d rejected, %d merged; mu=%.4f", stats.rows, source, counts["used"], parts.count,
             len(users), len(items), num_test, stats.rejected, merged, parts.mu)
    record = resume.run_record(config, parts, counts)
    state = (resume.resume_point(spark, work_dir, record, parts, config.als)
             if resume_run else None)
    if state is None:
        resume.start(spark, work_dir, record)
    # issue 8: the baselines are rating predictors: none for implicit feedback
    base = (baselines(parts, config, test, f"{out}/baselines")
            if with_baselines and test and not config.als.implicit_prefs else {})
    if base:
        fs.delete(spark, f"{out}/baselines")
    fitted = als.fit(parts, config.als, work_dir, test=test, on_iteration=log_iteration,
                     resume=state)
    last = iteration_dir(work_dir, config.als.iterations)
    metadata = {
        "format": "mfspark-model", "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mu": fitted.mu, **asdict(config.als),
        "user_id_type": stats.user_type, "item_id_type": stats.item_type,
        "num_users": len(users), "num_items": len(items),
        "rows_read": stats.rows, "num_train": parts.count, "num_test": num_test,
        "counts": counts, "rejected_by_reason": stats.bad,
        "input": {"path": source, "format": config.input.format,
                  "on_bad_rows": config.input.on_bad_rows,
                  "duplicates": config.input.duplicates,
                  "rating_range": record["input"]["rating_range"]},
        "resumed_after_iteration": len(state.history) if state is not None else None,
        "test_fraction": config.test_fraction, "split_seed": config.split_seed,
        "baselines": base, "history": fitted.history, "versions": versions(),
    }
    write_model(spark, model_dir, _factor_frame(spark, f"{last}/user", users),
                _factor_frame(spark, f"{last}/item", items), metadata, overwrite)
    parts.unpersist()
    ratings.unpersist()
    metadata["seconds"] = time.perf_counter() - began
    return TrainResult(model_dir=model_dir, metadata=metadata, fitted=fitted, users=users,
                       items=items, train=with_indices(train_df, users, items), test=test,
                       baselines=base, counts=counts)
