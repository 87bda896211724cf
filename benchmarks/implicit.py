"""Implicit feedback and nonnegative factors: mfspark against Spark MLlib's ALS on MovieLens 100K,
both fitted in one SparkSession with the same rank, regParam, alpha, iterations and blocks.

1. Implicit (``implicitPrefs=True``): a per-user holdout (``--holdout`` of each user's ratings,
   seeded); both systems train on the rest with the rating as the feedback strength; each
   user's top ``--k`` unseen items (training items excluded) are scored against the held-out
   items rated >= 4 (users with at least one such item), precision@k and NDCG@k as MLlib's
   ``RankingEvaluator`` defines them, and the implicit objective J each fit reached on the
   training data (same formula for both: which optimizer got further).  Also with
   ``nonnegative=True``.  ``mfspark-biases`` is mfspark with ``biases=True`` (a user and an
   item bias, scored ``u . v + b_u + c_i``; its J includes the biases' penalty).
2. Nonnegative explicit (``nonnegative=True``): test RMSE on a random 80/20 split (unknown
   users/items dropped), mfspark with its biases (default) and without.

Fit times are wall seconds of ``fit`` after one untimed warm-up fit of each system.

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/implicit.py [--alphas 1 10] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # MLlib native BLAS and NumPy: 1 thread/task

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.ml.evaluation import RankingEvaluator, RegressionEvaluator  # noqa: E402
from pyspark.ml.recommendation import ALS as MLlibALS  # noqa: E402

from mfspark import ALS  # noqa: E402
from mfspark.core.reference import implicit_objective  # noqa: E402
from mfspark.evaluation.benchmark import mllib_blas  # noqa: E402
from mfspark.app.session import get_session  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from implicit_seeds import per_user_holdout  # noqa: E402  (one split for both scripts)


def factors(frame) -> tuple[np.ndarray, np.ndarray]:
    pdf = frame.select("id", "features").toPandas()
    return pdf["id"].to_numpy(), np.stack(pdf["features"].to_numpy()).astype(np.float64)


def biases(frame, n: int) -> np.ndarray:
    """mfspark's ``bias`` column in ``factors``' row order; zeros for MLlib (none)."""
    if "bias" not in frame.columns:
        return np.zeros(n)
    return frame.select("id", "bias").toPandas()["bias"].to_numpy(dtype=np.float64)


def ranking(spark, model, train: pd.DataFrame, test: pd.DataFrame, k: int, alpha: float,
            reg: float) -> dict[str, float]:
    """precision@k and NDCG@k (RankingEvaluator) of each user's top-k unseen items, and the
    implicit objective J the model reached on the training data (MLlib's regularization)."""
    uid, U = factors(model.userFactors)
    iid, V = factors(model.itemFactors)
    b, c = biases(model.userFactors, len(uid)), biases(model.itemFactors, len(iid))
    urow = {u: n for n, u in enumerate(uid)}
    icol = {i: n for n, i in enumerate(iid)}
    rows_u = train["user"].map(urow).to_numpy()
    cols_i = train["item"].map(icol).to_numpy()
    r = train["rating"].to_numpy()
    P, C = np.zeros((len(uid), len(iid))), np.ones((len(uid), len(iid)))
    P[rows_u, cols_i], C[rows_u, cols_i] = (r > 0), 1.0 + alpha * np.abs(r)
    objective = implicit_objective(P, C, U, V, reg, "count", b, c)
    scores = U @ V.T + b[:, None] + c[None, :]
    for u, i in zip(train["user"], train["item"]):  # training items are never recommended
        scores[urow[u], icol[i]] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    relevant = test[test["rating"] >= 4].groupby("user")["item"].apply(list)
    rows = [(list(map(float, items)), [float(iid[j]) for j in top[urow[u]]])
            for u, items in relevant.items() if u in urow]
    frame = spark.createDataFrame(rows, "label array<double>, prediction array<double>")
    out = {"users": len(rows), "train_objective": objective}
    for metric, name in (("precisionAtK", f"precision@{k}"), ("ndcgAtK", f"ndcg@{k}")):
        out[name] = RankingEvaluator(metricName=metric, k=k).evaluate(frame)
    return out


def timed_fit(estimator, data) -> tuple[object, float]:
    began = time.perf_counter()
    model = estimator.fit(data)
    return model, time.perf_counter() - began


SYSTEMS = ("mllib", "mfspark", "mfspark-biases")


def estimators(common: dict, nonnegative: bool, implicit: bool, alpha: float,
               mf_extra: dict | None = None,
               systems: tuple[str, ...] = ("mllib", "mfspark")) -> dict[str, object]:
    kw = dict(common, implicitPrefs=implicit, alpha=alpha, nonnegative=nonnegative)
    make = {"mllib": lambda: MLlibALS(**kw), "mfspark": lambda: ALS(**kw, **(mf_extra or {})),
            "mfspark-biases": lambda: ALS(**kw, **(mf_extra or {}), biases=True)}
    return {name: make[name]() for name in systems}


def warm_up(train_df, common: dict) -> None:
    """One untimed short fit of each system (JIT, Python workers, BLAS loading)."""
    short = dict(common, maxIter=1)
    for est in estimators(short, False, True, 1.0).values():
        est.fit(train_df)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"
                                         / "data" / "ml-100k" / "u.data"))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--reg", type=float, default=0.1, help="regParam (MLlib's meaning)")
    p.add_argument("--alphas", type=float, nargs="+", default=[1.0])
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--blocks", type=int, default=2, help="user and item blocks of both")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="model seeds (the split uses --split-seed)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--skip-explicit", action="store_true", help="no nonnegative RMSE part")
    p.add_argument("--skip-implicit", action="store_true", help="no implicit ranking part")
    p.add_argument("--skip-nonnegative", action="store_true",
                   help="implicit part: only nonnegative=False")
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                   help="implicit part: which systems to fit (mfspark-biases: mfspark with "
                        "biases=True)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    spark = get_session(args.master, "mfspark-implicit-benchmark",
                        extra={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"})
    print(f"environment: master={args.master} cores={os.cpu_count()} "
          f"mllib_blas={mllib_blas(spark)} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}", flush=True)
    ratings = pd.read_csv(args.data, sep="\t", names=["user", "item", "rating", "ts"])
    ratings = ratings[["user", "item", "rating"]].astype({"rating": "float64"})
    train, test = per_user_holdout(ratings, args.holdout, args.split_seed)
    schema = "user long, item long, rating double"
    train_df = spark.createDataFrame(train, schema).cache()
    print(f"data: {args.data}: {len(train)} train / {len(test)} held-out ratings "
          f"(per-user holdout {args.holdout}), positives: held-out rating >= 4", flush=True)
    common = dict(rank=args.rank, maxIter=args.iterations, regParam=args.reg,
                  userCol="user", itemCol="item", ratingCol="rating",
                  numUserBlocks=args.blocks, numItemBlocks=args.blocks)
    warm_up(train_df, common)
    rows = []
    for alpha in ([] if args.skip_implicit else args.alphas):
        for nonnegative in (False,) if args.skip_nonnegative else (False, True):
            for seed in args.seeds:
                for system, est in estimators(dict(common, seed=seed), nonnegative, True,
                                              alpha, systems=tuple(args.systems)).items():
                    model, seconds = timed_fit(est, train_df)
                    row = {"part": "implicit", "system": system, "alpha": alpha,
                           "nonnegative": nonnegative, "seed": seed, "rank": args.rank,
                           "reg": args.reg, "iterations": args.iterations,
                           "holdout": args.holdout, "split_seed": args.split_seed,
                           "fit_seconds": seconds,
                           **ranking(spark, model, train, test, args.k, alpha, args.reg)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if not args.skip_explicit:
        full = spark.createDataFrame(ratings, schema)
        tr, te = full.randomSplit([0.8, 0.2], seed=args.split_seed)
        tr, te = tr.cache(), te.cache()
        rmse = RegressionEvaluator(metricName="rmse", labelCol="rating")
        for seed in args.seeds:
            variants = [("mllib", MLlibALS, {}), ("mfspark", ALS, {}),
                        ("mfspark biases=False", ALS, {"biases": False})]
            for system, cls, extra in variants:
                est = cls(**dict(common, seed=seed), nonnegative=True, coldStartStrategy="drop",
                          **extra)
                model, seconds = timed_fit(est, tr)
                factors_min = min(float(np.min(factors(f)[1]))
                                  for f in (model.userFactors, model.itemFactors))
                row = {"part": "nonnegative explicit", "system": system, "seed": seed,
                       "fit_seconds": seconds, "test_rmse": rmse.evaluate(model.transform(te)),
                       "min_factor": factors_min}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print_tables(rows, args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def seed_list(seeds: list[int]) -> str:
    """``0-139`` for a run of consecutive seeds, else the list."""
    consecutive = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}-{seeds[-1]}" if consecutive and len(seeds) > 2 else str(seeds)


def print_tables(rows: list[dict], args: argparse.Namespace) -> None:
    frame = pd.DataFrame(rows)
    k = args.k
    imp = frame[frame["part"] == "implicit"]
    if len(imp):
        keys = ["alpha", "nonnegative", "system"]
        metrics = [f"precision@{k}", f"ndcg@{k}"]
        groups = imp.groupby(keys, sort=False)
        table = groups[metrics + ["train_objective", "fit_seconds"]].mean()
        for m in metrics:  # standard error of the mean over the seeds (NaN for one seed)
            table[f"{m} se"] = groups[m].sem()
        print(f"\nimplicit feedback, rank {args.rank}, regParam {args.reg}, {args.iterations} "
              f"iterations, mean over {len(args.seeds)} seeds {seed_list(args.seeds)}")
        print(table.reset_index().to_string(index=False, float_format="%.4f"))
        print("\nper seed")
        print(imp.pivot_table(index="seed", columns=keys[1:], values=metrics)
              .to_string(float_format="%.4f"))
    exp = frame[frame["part"] == "nonnegative explicit"]
    if len(exp):
        table = (exp.groupby("system", sort=False)[["test_rmse", "fit_seconds", "min_factor"]]
                 .mean().reset_index())
        print(f"\nnonnegative=True, explicit, rank {args.rank}, regParam {args.reg}, "
              f"80/20 random split, mean over seeds {args.seeds}")
        print(table.to_string(index=False, float_format="%.4f"))


if __name__ == "__main__":
    main()
