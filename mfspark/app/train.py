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
from pyspark.sql import functions as F

import mfspark
from mfspark.app.cli import add_debug_flag, add_settings_flags, job, settings, setup_logging
from mfspark.app.report import train_report
from mfspark.app.session import get_session
from mfspark.config import JobConfig, settings_record
from mfspark.data.prepare import Prepared, check_packed_duplicates, load, prepare
from mfspark.data.split import random_split
from mfspark.engine import resume
from mfspark.engine.loop import fit, log_iteration
from mfspark.io import fs
from mfspark.io.model import SavedModel, check_writable, read_model, write_model
from mfspark.ml.freshness import check_compatible, initial_factors, initial_record
from mfspark.ml.metadata import model_metadata

log = logging.getLogger("mfspark")


@dataclass
class TrainResult:
    """What a training run produced (the model is already saved at ``model_dir``)."""

    model_dir: str
    metadata: dict[str, Any]
    baselines: dict[str, float]
    counts: dict[str, int]
    train: DataFrame
    """The training ratings (original IDs), read again if used."""


class PhaseClock:
    """Seconds per phase of a run, each lap ending where the previous one did (Spark is
    lazy: a phase's time is the work its own actions triggered)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._mark = time.perf_counter()

    def lap(self, name: str, at: float | None = None) -> None:
        """End the lap ``name`` now, or at the ``perf_counter`` reading ``at``."""
        now = time.perf_counter() if at is None else at
        self.laps[name] = now - self._mark
        self._mark = now


def global_mean_rmse(test: DataFrame, mu: float) -> float:
    """Test RMSE of predicting the training mean for every held-out rating."""
    row = test.agg(F.sqrt(F.avg((F.col("rating") - F.lit(mu)) ** 2)).alias("rmse")).first()
    return float(row["rmse"]) if row["rmse"] is not None else float("nan")


def baselines(prepared: Prepared, config: JobConfig, test: DataFrame,
              work_dir: str) -> dict[str, float]:
    """Test RMSE of the global mean and of the biases-only model (rank 0, same lambda)."""
    biases = fit(prepared.ratings, replace(config.als, rank=0), work_dir)
    return {"global_mean": global_mean_rmse(test, prepared.ratings.mu),
            "biases_only": biases.history[-1]["test_rmse"]}


def account(read: int, used: int, rejected: int, merged: int) -> dict[str, int]:
    """The row accounting of a run; a row that went missing is a bug, never data."""
    counts = {"read": read, "used": used, "rejected": rejected, "merged": merged}
    if read != used + rejected + merged:
        raise RuntimeError(f"row accounting does not add up: {counts} "
                           "(read must equal used + rejected + merged)")
    return counts


def initial_model(spark: SparkSession, config: JobConfig) -> tuple[SavedModel, dict] | None:
    """The model a warm start begins from (``config.init_model``) and what the new model
    records about it (path, metadata fingerprint), checked against the run's rank and
    variant before any work; None for a cold start."""
    if not config.init_model:
        return None
    path = fs.qualify(spark, config.init_model)
    saved = read_model(spark, path)
    check_compatible(saved.metadata, config.als, path)
    return saved, initial_record(saved.metadata, path)


def train(spark: SparkSession, config: JobConfig, overwrite: bool = False,
          with_baselines: bool = False, resume_run: bool = False) -> TrainResult:
    """Train the model described by ``config`` and save it under ``config.out``/model.

    With ``resume_run`` the run continues from the last complete iteration stored under
    ``config.out``/iterations by an earlier run with the same settings and input
    (:mod:`mfspark.engine.resume`); the model is the same as an uninterrupted run's.
    With ``config.init_model`` the run is warm-started from that saved model's factors
    (:mod:`mfspark.ml.freshness`); a resumed warm run continues from its own iterations.
    """
    began = time.perf_counter()
    clock = PhaseClock()
    out = fs.qualify(spark, config.out)
    model_dir, work_dir = f"{out}/model", f"{out}/iterations"
    check_writable(spark, model_dir, overwrite)
    warm = initial_model(spark, config)
    source = config.input.path or "the embedded sample"
    loaded = load(spark, config.input, f"{out}/rejected", on_phase=clock.lap,
                  pack_checks_duplicates=True)
    ratings = loaded.ratings.persist(StorageLevel.MEMORY_AND_DISK)
    train_df, test_df = (random_split(ratings, config.test_fraction, config.split_seed)
                         if config.test_fraction > 0 else (ratings, None))
    stats = loaded.stats
    prepared = prepare(train_df, config.als, test_df, stats=stats)
    check_packed_duplicates(loaded, prepared, source)
    parts = prepared.ratings
    clock.lap("split, key, partition")
    counts = account(stats.rows, parts.count + parts.num_test, stats.rejected, loaded.merged)
    log.info("%d ratings read from %s: %d used (%d train with %d users and %d items, %d test), "
             "%d rejected, %d merged; mu=%.4f", stats.rows, source, counts["used"], parts.count,
             parts.num_users, parts.num_items, parts.num_test, stats.rejected, loaded.merged,
             parts.mu)
    record = resume.run_record(config, parts, counts)
    if warm is not None:  # the same path holding another model is another run
        record["init_model_fingerprint"] = warm[1]["fingerprint"]
    state = (resume.resume_point(spark, work_dir, record, parts, config.als)
             if resume_run else None)
    if state is None:
        resume.start(spark, work_dir, record)
    # the baselines predict ratings: there are none for implicit feedback
    base = (baselines(prepared, config, test_df, f"{out}/baselines")
            if with_baselines and parts.num_test and not config.als.implicit_prefs else {})
    if base:
        fs.delete(spark, f"{out}/baselines")
        clock.lap("baselines")
    start = None
    if warm is not None and state is None:
        saved = warm[0]
        start = initial_factors(saved.user_factors, saved.item_factors, saved.metadata,
                                prepared, config.als, warm[1]["path"])

    def on_iteration(entry: dict[str, float]) -> None:
        if "fit: start" not in clock.laps:  # the seeded start ended as this iteration began
            clock.lap("fit: start", at=time.perf_counter() - entry["seconds"])
        log_iteration(entry)

    fitted = fit(parts, config.als, work_dir, on_iteration=on_iteration, resume=state,
                 initial=start)
    clock.lap("fit: iterations" if "fit: start" in clock.laps else "fit: start")
    recorded = settings_record(config)
    metadata = model_metadata(
        config.als, fitted, prepared, stats, rows_read=stats.rows, num_test=parts.num_test,
        counts=counts, rejected_by_reason=stats.bad,
        input={"path": source, **{k: recorded["input"][k] for k in
                                  ("format", "on_bad_rows", "duplicates", "rating_range")}},
        resumed_after_iteration=len(state.history) if state is not None else None,
        test_fraction=config.test_fraction, split_seed=config.split_seed, baselines=base,
        initial_model=warm[1] if warm is not None else None)
    write_model(spark, model_dir, prepared.factors(spark, fitted, "user"),
                prepared.factors(spark, fitted, "item"), metadata, overwrite)
    prepared.unpersist()
    ratings.unpersist()
    clock.lap("write model")
    metadata["seconds"] = time.perf_counter() - began
    metadata["phases"] = clock.laps
    log.info("phases: %s", ", ".join(f"{name} {s:.1f}s" for name, s in clock.laps.items()))
    return TrainResult(model_dir=model_dir, metadata=metadata, baselines=base, counts=counts,
                       train=train_df)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py", description="Train a biased ALS model (python jobs/train.py, or "
        "spark-submit jobs/train.py); without --ratings, on the sample shipped in pyspark.")
    p.add_argument("--config", help="TOML settings file (tables [input], [als], [output]); "
                                    "flags override its keys")
    add_settings_flags(p)
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    p.add_argument("--remote", metavar="URL", help="run on Spark Connect: sc://host:port, or "
                   "local[N] for a server in this process")
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
    add_debug_flag(p)
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
    if show > 0:
        show_top(result, show)


def show_top(result: TrainResult, show: int, k: int = 5) -> None:
    """Print the top ``k`` items the first ``show`` users (by ID) have not rated."""
    from mfspark.ml.model import ALSModel

    model = ALSModel.load(result.model_dir)
    users = model.userFactors.select(F.col("id").alias("user")).orderBy("user").limit(show)
    recs = model.recommendForUserSubset(users, k, exclude=result.train).orderBy("user")
    for row in recs.collect():
        shown = ", ".join(f"{r['item']} ({r['rating']:.2f})" for r in row["recommendations"])
        print(f"user {row['user']}: top unseen items {shown}")


@job
def main(argv: list[str] | None = None) -> TrainResult:
    args = parser().parse_args(argv)
    setup_logging()
    # where the code came from: the checkout, an install, or a --py-files archive
    log.info("mfspark %s loaded from %s", mfspark.__version__, Path(mfspark.__file__).parent)
    try:
        config = settings(args)
    except ValueError as err:
        parser().error(str(err))
    started = time.perf_counter()
    spark = get_session(args.master, app_name="mfspark-train", remote=args.remote)
    log.info("Spark session ready in %.1fs", time.perf_counter() - started)
    result = train(spark, config, overwrite=args.overwrite, with_baselines=args.baselines,
                   resume_run=args.resume)
    report(result, args.show)
    if args.report:
        made = train_report(args.report, result.metadata)
        print(made if isinstance(made, str) else f"report in {args.report}: {', '.join(made)}")
    return result
