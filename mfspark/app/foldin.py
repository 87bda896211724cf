"""Fold new ratings into a saved model (``jobs/foldin.py --model DIR --ratings NEW --out DIR2``).

The users (``--side item``: the items) of ``--ratings`` get the factors and biases of one
exact half-step against the model's other side, which stays as it is
(:func:`mfspark.ml.freshness.fold_in`): rows not in the ratings are unchanged, new IDs are
added, and ratings of items (users) the model does not know are ignored and counted.  The
new model is written to ``--out`` atomically, as ``jobs/train.py`` writes its model, with
the fold-in's summary appended to its metadata (``fold_ins``).
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from pyspark.sql import SparkSession

from mfspark.app.cli import (add_debug_flag, add_ratings_flags, job, read_flagged_ratings,
                             setup_logging)
from mfspark.app.session import get_session
from mfspark.io import fs
from mfspark.io.model import check_writable, write_model
from mfspark.ml.freshness import fold_in
from mfspark.ml.model import ALSModel


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="foldin.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, metavar="DIR",
                   help="saved model directory (jobs/train.py's OUT/model, or ALSModel.save)")
    add_ratings_flags(p, "ratings", "ratings of the users (items) to fold in: all of each "
                      "one's ratings, since its row is solved on them alone", required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="directory of the new model")
    p.add_argument("--side", choices=("user", "item"), default="user",
                   help="the side solved; the other stays fixed (default: user)")
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model at --out")
    add_debug_flag(p)
    return p


def fold_in_saved(spark: SparkSession, model_dir: str, ratings_args: argparse.Namespace, out: str,
                  side: str, overwrite: bool) -> dict[str, Any]:
    """Load the model at ``model_dir``, fold in the ratings named by ``ratings_args``
    (``--ratings`` and its format flags) and commit the new model at ``out``; returns the
    fold-in's summary with the paths and the seconds taken."""
    began = time.perf_counter()
    out = fs.qualify(spark, out)
    check_writable(spark, out, overwrite)
    model = ALSModel.load(model_dir).setUserCol("user").setItemCol("item")
    ratings = read_flagged_ratings(spark, ratings_args, "ratings")
    parent = out.rstrip("/").rsplit("/", 1)[0]
    work_dir = f"{parent}/.foldin-work-{uuid.uuid4().hex[:12]}"
    try:
        folded, summary = fold_in(model, ratings, side, work_dir=work_dir)
        metadata = {**folded.metadata, "mu": folded.mu}
        metadata["fold_ins"] = [*metadata["fold_ins"][:-1],
                                {**summary, "model": model_dir,
                                 "ratings_path": ratings_args.ratings}]
        write_model(spark, out, folded.userFactors, folded.itemFactors, metadata, overwrite)
    finally:
        fs.delete(spark, work_dir)
    return {**summary, "model": model_dir, "out": out, "seconds": time.perf_counter() - began}


@job
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    setup_logging()
    spark = get_session(args.master, app_name="mfspark-foldin")
    summary = fold_in_saved(spark, args.model, args, args.out, args.side, args.overwrite)
    other = "item" if args.side == "user" else "user"
    print(f"\nmodel written to {summary['out']}")
    print(f"{summary['solved']} {args.side}s solved ({summary['new']} new, "
          f"{summary['updated']} updated, {summary['skipped']} skipped: no rating of a known "
          f"{other}) from {summary['ratings_used']} ratings; {summary['ratings_ignored']} "
          f"ratings of {other}s unknown to the model ignored; {summary['seconds']:.1f}s")
    return summary
