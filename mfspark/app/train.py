"""The training job: read, validate, split, index, fit, save (``jobs/train.py``).

:func:`train` is the job as a library call (the tests call it); :func:`main` parses the
flags, builds the session, calls it and prints the report.  Every row read is accounted
for: ``read = used + rejected + merged`` (``metadata.json``, ``counts``), and the model is
committed only once complete (:mod:`mfspark.io.model`).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

import mfspark
from mfspark.app.cli import add_settings_flags, settings
from mfspark.app.report import train_report
from mfspark.app.session import get_session
from mfspark.config import JobConfig, settings_record
from mfspark.core.state import FitResult, Side
from mfspark.core.topn import top_n
from mfspark.data.indexing import IdIndex, attach_ids, with_indices
from mfspark.data.prepare import Prepared, load, prepare
from mfspark.data.split import random_split
from mfspark.engine import resume
from mfspark.engine.loop import fit, log_iteration
from mfspark.engine.score import rmse
from mfspark.io import fs
from mfspark.io.checkpoints import iteration_dir
from mfspark.io.factors import read_rows
from mfspark.io.model import check_writable, write_model
from mfspark.ml.metadata import model_metadata

log = logging.getLogger("mfspark")


@dataclass
class TrainResult:
    """What a training run produced (the model is already saved at ``model_dir``)."""

    model_dir: str
    metadata: dict[str, Any]
    fitted: FitResult
    users: IdIndex
    items: IdIndex
    train: DataFrame
    test: DataFrame | None
    baselines: dict[str, float]
    counts: dict[str, int]


def baselines(prepared: Prepared, config: JobConfig, work_dir: str) -> dict[str, float]:
    """Test RMSE of the global mean and of the biases-only model (rank 0, same lambda)."""
    ratings = prepared.ratings
    zero_u, zero_i = Side.zeros(ratings.user_counts, 0), Side.zeros(ratings.item_counts, 0)
    biases = fit(ratings, replace(config.als, rank=0), work_dir)
    return {"global_mean": rmse(prepared.test, zero_u, zero_i, ratings.mu),
            "biases_only": rmse(prepared.test, biases.users, biases.items, ratings.mu)}


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
    (:mod:`mfspark.engine.resume`); the model is the same as an uninterrupted run's.
    """
    began = time.perf_counter()
    out = fs.qualify(spark, config.out)
    model_dir, work_dir = f"{out}/model", f"{out}/iterations"
    check_writable(spark, model_dir, overwrite)
    source = config.input.path or "the embedded sample"
    loaded = load(spark, config.input, f"{out}/rejected")
    ratings = loaded.ratings.persist(StorageLevel.MEMORY_AND_DISK)
    train_df, test_df = (random_split(ratings, config.test_fraction, config.split_seed)
                         if config.test_fraction > 0 else (ratings, None))
    prepared = prepare(train_df, config.als, test_df)
    parts, users, items = prepared.ratings, prepared.users, prepared.items
    num_test = prepared.test.count() if prepared.test is not None else 0
    stats = loaded.stats
    counts = account(stats.rows, parts.count + num_test, stats.rejected, loaded.merged)
    log.info("%d ratings read from %s: %d used (%d train with %d users and %d items, %d test), "
             "%d rejected, %d merged; mu=%.4f", stats.rows, source, counts["used"], parts.count,
             len(users), len(items), num_test, stats.rejected, loaded.merged, parts.mu)
    record = resume.run_record(config, parts, counts)
    state = (resume.resume_point(spark, work_dir, record, parts, config.als)
             if resume_run else None)
    if state is None:
        resume.start(spark, work_dir, record)
    # the baselines predict ratings: there are none for implicit feedback
    base = (baselines(prepared, config, f"{out}/baselines")
            if with_baselines and num_test and not config.als.implicit_prefs else {})
    if base:
        fs.delete(spark, f"{out}/baselines")
    fitted = fit(parts, config.als, work_dir, test=prepared.test, on_iteration=log_iteration,
                 resume=state)
    recorded = settings_record(config)
    metadata = model_metadata(
        config.als, fitted, prepared, stats, rows_read=stats.rows, num_test=num_test,
        counts=counts, rejected_by_reason=stats.bad,
        input={"path": source, **{k: recorded["input"][k] for k in
                                  ("format", "on_bad_rows", "duplicates", "rating_range")}},
        resumed_after_iteration=len(state.history) if state is not None else None,
        test_fraction=config.test_fraction, split_seed=config.split_seed, baselines=base)
    last = iteration_dir(work_dir, config.als.iterations)
    write_model(spark, model_dir, attach_ids(read_rows(spark, f"{last}/user"), users),
                attach_ids(read_rows(spark, f"{last}/item"), items), metadata, overwrite)
    prepared.unpersist()
    ratings.unpersist()
    metadata["seconds"] = time.perf_counter() - began
    return TrainResult(model_dir=model_dir, metadata=metadata, fitted=fitted, users=users,
                       items=items, train=with_indices(train_df, users, items),
                       test=prepared.test, baselines=base, counts=counts)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py", description="Train a biased ALS model (python jobs/train.py, or "
        "spark-submit jobs/train.py); without --ratings, on the sample shipped in pyspark.")
    p.add_argument("--config", help="TOML settings file (tables [input], [als], [output]); "
                                    "flags override its keys")
    add_settings_flags(p)
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model")
    p.add_argument("--resume", action="store_true",
                   help="continue the run stored in OUT/iterations from its last complete "
                        "iteration (same settings and input required)")
    p.add_argument("--baselines", action="store_true",
                   help="also report the global-mean and biases-only test RMSE")
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="print the top 5 unseen items of N users")
    p.add_argument("--report", metavar="DIR",
                   help="write metrics (CSV, JSON) and plots (PNG, with matplotlib) to DIR")
    return p


def report(result: TrainResult, show: int) -> None:
    """Print what the run did: where the model is, the row accounting, the RMSEs, and the
    top unseen items of ``show`` users."""
    md = result.metadata
    last = md["history"][-1]
    print(f"\nmodel written to {result.model_dir}")
    print(f"rank={md['rank']} reg={md['reg']} reg_scale={md['reg_scale']} "
          f"iterations={md['iterations']}  train {md['num_train']} / test {md['num_test']} "
          f"ratings  {md['seconds']:.1f}s")
    c = md["counts"]
    print(f"rows: {c['read']} read = {c['used']} used + {c['rejected']} rejected + "
          f"{c['merged']} merged")
    if md.get("implicit_prefs"):
        print(f"implicit feedback (alpha={md['alpha']}): objective {last['objective']:.6g}; "
              "no RMSE (the model predicts preferences, not ratings)")
    else:
        print(f"train RMSE {last['train_rmse']:.4f}")
    if "test_rmse" in last:
        print(f"test RMSE  {last['test_rmse']:.4f}  (model)")
    for name, value in result.baselines.items():
        print(f"test RMSE  {value:.4f}  ({name.replace('_', '-')} baseline)")
    if show <= 0:
        return
    f = result.fitted
    rows = list(range(min(show, len(result.users))))
    seen = (result.train.filter(result.train.user_idx < len(rows))
            .select("user_idx", "item_idx").toPandas().groupby("user_idx")["item_idx"])
    exclude = [seen.get_group(r).to_numpy() if r in seen.groups else [] for r in rows]
    best, scores = top_n(f.users.factors[rows], f.users.bias[rows], f.items.factors,
                         f.items.bias, f.mu, 5, exclude)
    item_ids = result.items.ids.to_pylist()
    for r in rows:
        recs = ", ".join(f"{item_ids[j]} ({s:.2f})" for j, s in zip(best[r], scores[r]) if j >= 0)
        print(f"user {result.users.ids[r].as_py()}: top unseen items {recs}")


def main(argv: list[str] | None = None) -> TrainResult:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # where the code came from: the checkout, an install, or a --py-files archive
    log.info("mfspark %s loaded from %s", mfspark.__version__, Path(mfspark.__file__).parent)
    try:
        config = settings(args)
    except ValueError as err:
        parser().error(str(err))
    spark = get_session(args.master, app_name="mfspark-train")
    result = train(spark, config, overwrite=args.overwrite, with_baselines=args.baselines,
                   resume_run=args.resume)
    report(result, args.show)
    if args.report:
        made = train_report(args.report, result.metadata)
        print(made if isinstance(made, str) else f"report in {args.report}: {', '.join(made)}")
    return result
