"""Evaluate a saved model on held-out ratings (``jobs/evaluate.py --model DIR --ratings PATH``).

Reports the rating metrics (RMSE, MAE) of the predictions and the ranking metrics of each
held-out user's top-k unseen items (precision@k, recall@k, NDCG@k, MAP, MAP@k).  With
``--test-fraction F --split-seed S`` the ratings are split exactly as ``jobs/train.py``
splits them (same hash of user, item and seed): the held-out part is evaluated and the
training part is excluded from the recommendations.
"""

from __future__ import annotations

import argparse
import json
import time

from mfspark.ml.model import ALSModel
from mfspark.app.cli import (add_debug_flag, add_ratings_flags, job, read_flagged_ratings,
                             setup_logging)
from mfspark.io import fs
from mfspark.evaluation.metrics import ranking_metrics, rating_metrics
from mfspark.ml.params import COLD_START_STRATEGIES
from mfspark.app.session import get_session
from mfspark.data.split import random_split


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="saved model directory")
    add_ratings_flags(p, "ratings", "held-out ratings (or all ratings, with --test-fraction)",
                      required=True)
    p.add_argument("--test-fraction", type=float,
                   help="split --ratings as jobs/train.py does and evaluate the held-out part")
    p.add_argument("--split-seed", type=int, default=0, help="seed of that split (default 0)")
    add_ratings_flags(p, "exclude", "ratings never recommended (default with "
                      "--test-fraction: the training part)")
    p.add_argument("--k", type=int, default=10, help="length of the ranked lists (default 10)")
    p.add_argument("--relevance-threshold", type=float,
                   help="held-out items rated at least this are relevant (default: all)")
    p.add_argument("--cold-start", choices=COLD_START_STRATEGIES, default="fallback",
                   type=str.lower, help="prediction for unknown users/items, any case "
                                        "(default fallback)")
    p.add_argument("--min-rating", type=float, help="clip predictions below")
    p.add_argument("--max-rating", type=float, help="clip predictions above")
    p.add_argument("--json", help="also write the report as JSON to this path")
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    add_debug_flag(p)
    return p


@job
def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.test_fraction is not None and not 0 < args.test_fraction < 1:
        parser().error(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    setup_logging()
    began = time.perf_counter()
    spark = get_session(args.master, app_name="mfspark-evaluate")
    model = ALSModel.load(args.model).setUserCol("user").setItemCol("item") \
        .setColdStartStrategy(args.cold_start)
    if args.min_rating is not None:
        model._set(minRating=args.min_rating)
    if args.max_rating is not None:
        model._set(maxRating=args.max_rating)
    test = read_flagged_ratings(spark, args, "ratings")
    exclude = read_flagged_ratings(spark, args, "exclude")
    if args.test_fraction is not None:
        train, test = random_split(test, args.test_fraction, args.split_seed)
        exclude = train if exclude is None else exclude
    test = test.cache()
    report = {"model": args.model, "ratings": args.ratings, "k": args.k,
              "cold_start": args.cold_start, "relevance_threshold": args.relevance_threshold,
              "rating": rating_metrics(model.transform(test)),
              "ranking": ranking_metrics(model, test, args.k, exclude,
                                         relevance_threshold=args.relevance_threshold)}
    report["seconds"] = time.perf_counter() - began
    r = report["rating"]
    print(f"RMSE {r['rmse']:.4f}  MAE {r['mae']:.4f}  on {r['count']} ratings "
          f"({r['unpredicted']} without a prediction)")
    for name, value in report["ranking"].items():
        print(f"{name:>24} {value:.4f}" if name != "users" else f"{'users ranked':>24} {value:.0f}")
    if args.json:
        fs.write_text(spark, args.json, json.dumps(report, indent=2))
    return report
