"""MovieLens 100K: the Spark docs' ALS example flow with MLlib's ALS and with mfspark's,
on the same 80/20 split, then mfspark's rating and ranking metrics.

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/ml100k.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.ml.evaluation import RegressionEvaluator  # noqa: E402
from pyspark.ml.recommendation import ALS as MLlibALS  # noqa: E402

from mfspark import ALS  # noqa: E402
from mfspark.evaluation.metrics import ranking_metrics, rating_metrics  # noqa: E402
from mfspark.app.session import get_session  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()
    spark = get_session(args.master, "mfspark-ml100k")
    ratings = spark.read.csv(f"{args.data}/ml-100k/u.data", sep="\t",
                             schema="userId int, movieId int, rating float, timestamp long")
    training, test = ratings.randomSplit([0.8, 0.2], seed=1)
    training, test = training.cache(), test.cache()
    evaluator = RegressionEvaluator(metricName="rmse", labelCol="rating",
                                    predictionCol="prediction")
    report = {}
    for name, cls in (("mllib", MLlibALS), ("mfspark", ALS)):
        als = cls(rank=10, maxIter=10, regParam=0.1, userCol="userId", itemCol="movieId",
                  ratingCol="rating", coldStartStrategy="drop", seed=1)
        began = time.perf_counter()
        model = als.fit(training)
        fit_s = time.perf_counter() - began
        rmse = evaluator.evaluate(model.transform(test))
        began = time.perf_counter()
        model.recommendForAllUsers(args.k).write.format("noop").mode("overwrite").save()
        report[name] = {"rmse": rmse, "fit_seconds": fit_s,
                        "recommendForAllUsers_seconds": time.perf_counter() - began}
        print(name, json.dumps(report[name]), flush=True)
        if name == "mfspark":
            report[name]["rating"] = rating_metrics(model.transform(test))
            for threshold in (None, 4.0):
                key = f"ranking@{args.k}" + ("" if threshold is None else f"_rating>={threshold}")
                report[name][key] = ranking_metrics(model, test, args.k, exclude=training,
                                                    relevance_threshold=threshold)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
