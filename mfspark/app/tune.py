"""Find the best rank, lambda, reg_scale and iterations by cross-validation (jobs/tune.py).

Settings of the data and of the fixed parameters come from ``--config FILE`` (the TOML that
``jobs/train.py`` reads) and flags; the search space from ``--grid FILE`` (a ``[grid]`` table)
and ``--rank``, ``--reg``, ``--reg-scale``, ``--iterations``.  Writes the results table and
``best.toml`` (``jobs/train.py --config OUT/best.toml`` trains the best setting).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tomllib
from pathlib import Path

from mfspark import config as cfg
from mfspark.app import report
from mfspark.app.cli import add_debug_flag, add_settings_flags, job, settings, setup_logging
from mfspark.app.session import get_session
from mfspark.data.split import SplitError
from mfspark.evaluation import grid as grids
from mfspark.evaluation import tune
from mfspark.io import fs
from mfspark.io.settings import dumps

log = logging.getLogger("mfspark")
TABLE_FORMATS = ("csv", "parquet", "both")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tune.py", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML settings ([input], [als], [output]) of the data and "
                                    "the parameters not searched")
    add_settings_flags(p, only=("path", "format", "delimiter", "seed", "num_user_blocks",
                                "num_item_blocks"))
    p.add_argument("--out", required=True, help="output directory: results table, best.toml")
    p.add_argument("--grid", help="TOML file with a [grid] table of value lists, e.g. "
                                  "rank = [10, 20]; flags below replace its entries")
    p.add_argument("--rank", type=int, nargs="+", help="ranks to try")
    p.add_argument("--reg", type=float, nargs="+", help="lambdas to try")
    p.add_argument("--reg-scale", nargs="+", help="reg scales to try (none, count)")
    p.add_argument("--iterations", type=int, nargs="+",
                   help="iteration counts to try (one fit per setting serves them all)")
    p.add_argument("--search", choices=("grid", "random"), default="grid",
                   help="every combination (default) or --trials random ones")
    p.add_argument("--trials", type=int, default=10, help="random search: candidates (10)")
    p.add_argument("--reg-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="random search: draw lambda log-uniformly from [LOW, HIGH]")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the random search (0)")
    p.add_argument("--folds", type=int, default=5, help="k of k-fold cross-validation (5)")
    p.add_argument("--holdout", choices=tune.HOLDOUTS,
                   help="one holdout instead of k folds: random, user (per-user fraction) or "
                        "temporal (latest ratings)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="holdout size (0.2)")
    p.add_argument("--split-seed", type=int, help="seed of the folds or holdout "
                                                  "(default: output.split_seed, 0)")
    p.add_argument("--metric", default="rmse",
                   help="selection metric: rmse (default), mae, or with --ranking-k K: "
                        "precisionAtK@K, ndcgAtK@K, meanAveragePrecisionAtK@K")
    p.add_argument("--ranking-k", type=int, help="also compute ranking metrics of the top K "
                                                 "at every candidate (slower)")
    p.add_argument("--patience", type=int, help="stop a fit once its validation RMSE has not "
                                                "improved for this many iterations")
    p.add_argument("--clip", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="clip predictions to [MIN, MAX] before RMSE/MAE (default: no "
                        "clipping, as jobs/train.py reports)")
    p.add_argument("--table-format", choices=TABLE_FORMATS, default="csv",
                   help="results table as csv (default), parquet or both")
    p.add_argument("--report", metavar="DIR", help="write metrics and plots to DIR (local path)")
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in --out")
    add_debug_flag(p)
    return p


def search_space(args: argparse.Namespace) -> dict[str, list]:
    """The [grid] table of --grid, with the value flags replacing its entries."""
    space: dict[str, list] = {}
    if args.grid:
        try:
            data = tomllib.loads(Path(args.grid).read_text())
        except FileNotFoundError:
            raise grids.GridError(f"grid file {args.grid} does not exist") from None
        except tomllib.TOMLDecodeError as err:
            raise grids.GridError(f"grid file {args.grid} is not valid TOML: {err}") from None
        if set(data) != {"grid"}:
            raise grids.GridError(f"grid file {args.grid} must hold one [grid] table, found "
                                  f"{sorted(data)}")
        space.update(data["grid"])
    for name in grids.TUNABLE:
        if getattr(args, name) is not None:
            space[name] = getattr(args, name)
    return space


def plan(args: argparse.Namespace) -> tuple[cfg.JobConfig, list[grids.Candidate], tune.Protocol]:
    """Everything checked before Spark starts: settings, candidates, protocol."""
    config = settings(argparse.Namespace(
        config=args.config, path=args.path, format=args.format, delimiter=args.delimiter,
        seed=args.seed, num_user_blocks=args.num_user_blocks,
        num_item_blocks=args.num_item_blocks))
    space = search_space(args)
    if args.search == "random":
        candidates = grids.random_candidates(space, config.als, args.trials, args.search_seed,
                                             tuple(args.reg_range) if args.reg_range else None)
    else:
        if args.reg_range:
            raise grids.GridError("--reg-range is for --search random; give --reg values")
        candidates = grids.grid_candidates(space, config.als)
    tune.check_metric(args.metric, args.ranking_k)
    if args.clip is not None and not args.clip[0] < args.clip[1]:
        raise tune.TuneError(f"--clip needs MIN < MAX, got {args.clip}")
    if args.patience is not None and args.patience < 1:
        raise tune.TuneError(f"--patience must be >= 1, got {args.patience}")
    seed = config.split_seed if args.split_seed is None else args.split_seed
    protocol = tune.Protocol(folds=None if args.holdout else args.folds,
                             holdout=args.holdout or "random",
                             test_fraction=args.test_fraction, seed=seed)
    return config, candidates, protocol


def write_results(spark, out: str, result: tune.TuneResult, best: cfg.JobConfig,
                  table_format: str, command: str, shown: str) -> None:
    if table_format in ("csv", "both"):
        fs.write_text(spark, f"{out}/results.csv", result.results.to_csv(index=False))
    if table_format in ("parquet", "both"):
        (spark.createDataFrame(result.results).coalesce(1).write.mode("overwrite")
         .parquet(f"{out}/results.parquet"))
    fs.write_text(spark, f"{out}/fold_results.csv", result.fold_results.to_csv(index=False))
    comment = (f"Best setting found by jobs/tune.py: mean {result.metric} "
               f"{result.best_score:.4f} over {result.results['folds'].max()} fold(s).\n"
               f"Command: {command}\n"
               f"Train it: python jobs/train.py --config {shown}/best.toml")
    fs.write_text(spark, f"{out}/best.toml", dumps(best, comment))


def progress(line: str) -> None:
    """Print a progress line at once (also when stdout is a file or a pipe)."""
    print(line, flush=True)


@job
def main(argv: list[str] | None = None) -> tune.TuneResult:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    setup_logging()
    try:
        config, candidates, protocol = plan(args)
    except (cfg.ConfigError, grids.GridError, tune.TuneError) as err:
        parser().error(str(err))
    spark = get_session(args.master, app_name="mfspark-tune")
    out = fs.qualify(spark, args.out)
    if fs.exists(spark, f"{out}/best.toml") and not args.overwrite:
        parser().error(f"{out} already holds results (best.toml); use --overwrite")
    how = (f"{protocol.folds}-fold cross-validation" if protocol.folds
           else f"{protocol.holdout} holdout of {protocol.test_fraction}")
    progress(f"{len(candidates)} candidates, {how} (seed {protocol.seed}), "
             f"metric {args.metric}")
    try:
        result = tune.tune(spark, config, candidates, protocol, f"{out}/work", args.metric,
                           args.ranking_k, args.patience,
                           tuple(args.clip) if args.clip else None, on_progress=progress)
    except (tune.TuneError, SplitError) as err:
        parser().error(str(err))
    finally:
        fs.delete(spark, f"{out}/work")
    best = tune.best_config(config, result)
    command = "python jobs/tune.py " + shlex.join(argv)
    write_results(spark, out, result, best, args.table_format, command, args.out)
    cols = ["rank", "reg", "reg_scale", "iterations",
            f"{args.metric}_mean", f"{args.metric}_std", "seconds", "status"]
    print(result.results.sort_values(f"{args.metric}_mean",
                                     ascending=args.metric in tune.LOWER_IS_BETTER)[cols]
          .head(10).to_string(index=False))
    print(f"\nbest: {' '.join(f'{k}={v}' for k, v in result.best.items())}  "
          f"{args.metric} {result.best_score:.4f}  ({result.seconds:.0f}s)")
    print(f"results in {args.out}; train the best with: "
          f"python jobs/train.py --config {args.out}/best.toml")
    if args.report:
        summary = {"command": command, "metric": result.metric, "clip": args.clip,
                   "best": result.best,
                   "best_score": result.best_score, "seconds": result.seconds,
                   "protocol": {"folds": protocol.folds, "holdout": protocol.holdout,
                                "test_fraction": protocol.test_fraction, "seed": protocol.seed},
                   "candidates": len(candidates), "settings": cfg.to_dict(best)}
        made = report.tune_report(args.report, summary, result.results, result.curves,
                                  result.best)
        print(made if isinstance(made, str) else f"report in {args.report}: {', '.join(made)}")
    return result
