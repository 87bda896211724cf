"""Top-N recommendations from a saved model: ``python jobs/recommend.py --model DIR --out PATH``.

Recommends for every user of the model, or for the users given with ``--user`` / ``--users``,
optionally leaving out the items each user rated in ``--exclude`` (e.g. the training
ratings).  Writes one row per recommendation: ``user``, ``rank`` (1 = best), ``item``,
``score``, keyed by the original IDs, as Parquet or CSV.
"""

from __future__ import annotations

import argparse
import time

from mfspark.ml.model import ALSModel
from mfspark.app.cli import (add_debug_flag, add_ratings_flags, job, read_flagged_ratings,
                             setup_logging)
from mfspark.io.tables import TABLE_FORMATS, read_ids, write_table
from mfspark.ml.recommend import flatten
from mfspark.app.session import get_session


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recommend.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="saved model directory (jobs/train.py's "
                   "OUT/model, or ALSModel.save)")
    p.add_argument("--out", required=True, help="output path")
    p.add_argument("--k", type=int, default=10, help="recommendations per user (default 10)")
    p.add_argument("--user", action="append", default=[], metavar="ID",
                   help="recommend for this user (repeatable)")
    p.add_argument("--users", metavar="FILE", help="text file of user IDs, one per line")
    add_ratings_flags(p, "exclude", "ratings whose (user, item) pairs are never recommended")
    p.add_argument("--format", choices=TABLE_FORMATS, default="parquet",
                   help="output format (default parquet)")
    p.add_argument("--block-size", type=int, help="factor rows per block (default 4096)")
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_debug_flag(p)
    return p


@job
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.k < 1:
        parser().error(f"--k must be >= 1, got {args.k}")
    setup_logging()
    began = time.perf_counter()
    spark = get_session(args.master, app_name="mfspark-recommend")
    model = ALSModel.load(args.model).setUserCol("user").setItemCol("item")
    if args.block_size:
        model.setBlockSize(args.block_size)
    exclude = read_flagged_ratings(spark, args, "exclude")
    subset = None
    if args.user:
        subset = spark.createDataFrame([(u,) for u in args.user], "user string")
    if args.users:
        listed = read_ids(spark, args.users, "user")
        subset = listed if subset is None else subset.unionByName(listed)
    recs = (model.recommendForAllUsers(args.k, exclude) if subset is None
            else model.recommendForUserSubset(subset, args.k, exclude))
    write_table(flatten(recs, "user", "item"), args.out, args.format, args.overwrite)
    written = spark.read.parquet(args.out) if args.format == "parquet" else \
        spark.read.option("header", True).csv(args.out)
    summary = {"users": written.select("user").distinct().count(), "rows": written.count(),
               "out": args.out, "seconds": time.perf_counter() - began}
    print(f"{summary['rows']} recommendations for {summary['users']} users written to "
          f"{args.out} ({args.format}) in {summary['seconds']:.1f}s")
    return summary
