"""Keeping a model fresh: retrain, warm start, fold-in, on MovieLens 100K or planted data.

A model is trained on the ratings that arrived before a cutoff. On MovieLens 100K the cutoff
is the 90% quantile of the timestamps. Planted data (``--planted DIR``, the Parquet of
``jobs/generate.py``) has no timestamps, so arrival is drawn by hash: the users with a draw
below ``--new-users`` (2%) arrive after the cutoff with all their ratings, and of the other
ratings those with a draw below ``--late`` (5%) arrive after it. Half of the later ratings (a
hash split) join the training log; the other half is the test set.  On the grown log:

(a) retrain from scratch (``--iterations``, 20 by default);
(b) warm-start from the old model, reporting after a few iterations and after the number
    of iterations it needs to reach the retrain's final objective within 0.1%;
(c) fold in only the users the old model did not know (one exact half-step).

Every row reports the test RMSE on the later ratings (unknown users and items fall back to
``mu`` plus the known biases) and its wall time; (a) and (b) time the whole fit from the
packed ratings on, iteration by iteration, on one session.

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/freshness.py [--data ../shared/data]
    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/freshness.py --planted data/syn-5m \
        --iterations 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from mfspark import ALSModel  # noqa: E402
from mfspark.app.session import get_session  # noqa: E402
from mfspark.config import ALSParams  # noqa: E402
from mfspark.data.prepare import prepare  # noqa: E402
from mfspark.data.split import draw, random_split  # noqa: E402
from mfspark.engine.loop import Fit, fit  # noqa: E402
from mfspark.evaluation.metrics import rating_metrics  # noqa: E402
from mfspark.ml.freshness import fold_in, initial_from_model  # noqa: E402

TOLERANCE = 1e-3  # "within 0.1%" of the retrain's final objective


class Run:
    """A fit on ``ratings`` with the clock read after every iteration; the model of any
    iteration is read back from its work directory."""

    def __init__(self, ratings: DataFrame, params: ALSParams, work_dir: str,
                 start: ALSModel | None = None) -> None:
        began = time.perf_counter()
        self.prepared = prepare(ratings, params)
        initial = (initial_from_model(start, self.prepared, params) if start is not None
                   else None)
        self.ends: list[float] = []
        self.fit = fit(self.prepared.ratings, params, work_dir, initial=initial,
                       on_iteration=lambda _: self.ends.append(time.perf_counter() - began))
        self.params = params

    def objective(self, iteration: int) -> float:
        return self.fit.history[iteration - 1]["objective"]

    def model(self, iteration: int) -> ALSModel:
        """The model after ``iteration`` iterations (keyed by the original IDs)."""
        state = Fit(self.fit.mu, self.fit.work_dir, self.fit.history[:iteration])
        spark = self.prepared.ratings.by_user.sparkSession
        factors = [self.prepared.factors(spark, state, s) for s in ("user", "item")]
        return ALSModel(*factors, self.fit.mu, {**dataclasses.asdict(self.params),
                                                  "mu": self.fit.mu, "history": state.history})


def rmse(model: ALSModel, test: DataFrame) -> float:
    return rating_metrics(model.setColdStartStrategy("fallback").transform(test))["rmse"]


def movielens_arrivals(spark, data: str, quantile: float) -> tuple[DataFrame, DataFrame, str]:
    """(before, after) the ``quantile`` of MovieLens 100K's timestamps."""
    ratings = spark.read.csv(f"{data}/ml-100k/u.data", sep="\t",
                             schema="user int, item int, rating double, timestamp long").cache()
    cutoff = ratings.approxQuantile("timestamp", [quantile], 0.0)[0]
    return (ratings.filter(F.col("timestamp") < cutoff).drop("timestamp"),
            ratings.filter(F.col("timestamp") >= cutoff).drop("timestamp"),
            f"MovieLens 100K, before the {quantile:.0%} time quantile")


def planted_arrivals(spark, path: str, new_users: float,
                     late: float) -> tuple[DataFrame, DataFrame, str]:
    """(before, after) a hash-drawn arrival: new users bring all their ratings after the
    cutoff, and a ``late`` fraction of the other ratings arrives after it too."""
    ratings = spark.read.parquet(path).select("user", "item", "rating")
    user_draw = F.pmod(F.xxhash64("user", F.lit(7)), F.lit(1 << 20)) / (1 << 20)
    is_later = (user_draw < new_users) | (draw(seed=11) < late)
    marked = ratings.withColumn("_later", is_later)
    return (marked.filter(~F.col("_later")).drop("_later"),
            marked.filter(F.col("_later")).drop("_later"),
            f"planted {path.rstrip('/').rsplit('/', 1)[-1]}, before a hash-drawn arrival "
            f"({new_users:.0%} of users new, {late:.0%} of the others' ratings late)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--few", type=int, default=3, help="the warm start's 'few iterations'")
    p.add_argument("--quantile", type=float, default=0.9)
    p.add_argument("--planted", help="planted ratings (Parquet) instead of MovieLens 100K")
    p.add_argument("--new-users", type=float, default=0.02)
    p.add_argument("--late", type=float, default=0.05)
    args = p.parse_args()
    spark = get_session(args.master, "mfspark-freshness")
    if args.planted:
        before, after, source = planted_arrivals(spark, args.planted, args.new_users, args.late)
    else:
        before, after, source = movielens_arrivals(spark, args.data, args.quantile)
    old = before.cache()
    later, test = random_split(after, 0.5, seed=0)
    grown = old.unionByName(later).cache()
    test = test.cache()
    new_users = later.select("user").distinct().join(old.select("user").distinct(), "user",
                                                     "left_anti")
    sizes = {"old": old.count(), "later_train": later.count(), "test": test.count(),
             "new_users": new_users.count()}
    print(json.dumps({"source": source, **sizes}), flush=True)
    params = ALSParams(rank=args.rank, reg=args.reg, iterations=args.iterations)
    scratch = tempfile.mkdtemp(prefix="mfspark-freshness-")
    rows = []
    try:
        base = Run(old, params, f"{scratch}/old")
        old_model = base.model(args.iterations)
        rows.append(("old model, not updated", "-", rmse(old_model, test), None))
        cold = Run(grown, params, f"{scratch}/cold")
        target = cold.objective(args.iterations)
        rows.append(("(a) retrain from scratch", args.iterations,
                     rmse(cold.model(args.iterations), test), cold.ends[-1]))
        warm = Run(grown, params, f"{scratch}/warm", start=old_model)
        reached = next((k for k in range(1, args.iterations + 1)
                        if warm.objective(k) <= target * (1 + TOLERANCE)), None)
        for k in sorted({args.few, reached or args.iterations}):
            rows.append(("(b) warm start from the old model", k, rmse(warm.model(k), test),
                         warm.ends[k - 1]))
        began = time.perf_counter()
        new_ratings = grown.join(new_users, "user", "left_semi")
        folded, summary = fold_in(old_model, new_ratings, "user", work_dir=scratch)
        seconds = time.perf_counter() - began
        rows.append((f"(c) fold in the {summary['solved']} new users", "1 half-step",
                     rmse(folded, test), seconds))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{source}; rank {args.rank}, lambda {args.reg} (count-scaled); trained on "
          f"{sizes['old']} ratings, then {sizes['later_train']} later ratings added; test: the "
          f"other {sizes['test']} later ratings\n")
    print("| model | iterations | test RMSE | wall time (s) |")
    print("|---|---|---|---|")
    for name, its, error, seconds in rows:
        print(f"| {name} | {its} | {error:.4f} | "
              f"{'-' if seconds is None else f'{seconds:.1f}'} |")
    print(f"\nretrain's final objective J = {target:.6g}; the warm start reaches it within "
          f"{TOLERANCE:.1%} after {reached} iteration(s) (retrain: {args.iterations}); "
          f"warm-start objective per iteration: "
          f"{[round(h['objective'], 1) for h in warm.fit.history]}; retrain's: "
          f"{[round(h['objective'], 1) for h in cold.fit.history]}")


if __name__ == "__main__":
    main()
