"""``recommendForAllUsers(k)``: mfspark against MLlib on the same planted factors.

Top-k needs factors, not ratings, so the benchmark plants seeded random factors at the
dimensions of a synthetic rating set (default: 5M ratings over 50,000 users x 10,000 items,
rank 10) instead of fitting: mfspark's model is built from them directly, MLlib's through its
``ALSModel(uid, rank, userFactors, itemFactors)`` constructor.  Biases and mu are zero, so
both rank by the same ``u . v``; the benchmark checks that the top-k agree on a sample of
users, then prints each side's wall time (best of ``--repeat``) and the ratio.

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/recommend_all.py [--users N] [--items N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.ml.recommendation import ALSModel as MLlibALSModel  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from mfspark import ALSModel  # noqa: E402
from mfspark.app.session import get_session  # noqa: E402


def planted(spark, n: int, rank: int, seed: int):
    """``n`` rows ``id, features, bias``: N(0, 1/rank) factors drawn on the executors (Spark's
    ``randn`` per coordinate, seeded), zero biases."""
    features = F.array(*[F.randn(seed * 1000 + k) / float(np.sqrt(rank)) for k in range(rank)])
    return (spark.range(n).select(F.col("id").cast("int").alias("id"),
                                  features.alias("features"), F.lit(0.0).alias("bias"))
            .cache())


def timed(action, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--master", default="local[2]")
    args = p.parse_args()
    spark = get_session(args.master, "mfspark-bench-recommend")
    users, items = planted(spark, args.users, args.rank, 1), planted(spark, args.items,
                                                                     args.rank, 2)
    ours = ALSModel(users, items, 0.0, {"rank": args.rank})
    as_float = F.col("features").cast("array<float>").alias("features")
    jmodel = spark._jvm.org.apache.spark.ml.recommendation.ALSModel(
        "mllib-bench", args.rank, users.select("id", as_float)._jdf,
        items.select("id", as_float)._jdf).setUserCol("user").setItemCol("item")
    theirs = MLlibALSModel(jmodel)
    sample = spark.createDataFrame([(u,) for u in range(0, args.users, args.users // 20)],
                                   "user int")
    a = {r["user"]: [x["item"] for x in r["recommendations"]]
         for r in ours.recommendForUserSubset(sample, args.k).collect()}
    b = {r["user"]: [x["item"] for x in r["recommendations"]]
         for r in theirs.recommendForUserSubset(sample, args.k).collect()}
    agree = np.mean([len(set(a[u]) & set(b[u])) / args.k for u in a])
    print(f"top-{args.k} overlap with MLlib on {len(a)} sampled users: {agree:.3f}")
    results = {}
    for name, model in (("mllib", theirs), ("mfspark", ours)):
        results[name] = timed(lambda m=model: m.recommendForAllUsers(args.k).write
                              .format("noop").mode("overwrite").save(), args.repeat)
        print(f"{name:8s} recommendForAllUsers({args.k}): {results[name]:.1f}s", flush=True)
    print(f"{args.users} users x {args.items} items, rank {args.rank}, {args.master}: "
          f"mfspark / MLlib time = {results['mfspark'] / results['mllib']:.2f}")


if __name__ == "__main__":
    main()
