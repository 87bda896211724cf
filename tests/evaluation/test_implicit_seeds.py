"""benchmarks/implicit_seeds.py: its in-process fit is mfspark's fit, its metrics are MLlib's."""

from __future__ import annotations

import argparse
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.evaluation import RankingEvaluator

from mfspark import ALS
from mfspark.core import reference
from mfspark.core.state import seeded_factors

from conftest import ROOT, random_ratings


@pytest.fixture(scope="module")
def seeds_script():
    spec = importlib.util.spec_from_file_location("implicit_seeds",
                                                  ROOT / "benchmarks" / "implicit_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_problem(module, alpha=2.0, reg=0.05):
    users, items, ratings = random_ratings(30, 20, 0.3, seed=4)
    frame = pd.DataFrame({"user": users + 100, "item": items + 7, "rating": ratings})
    return frame, module.Problem(*module.per_user_holdout(frame, 0.25, 1), alpha, reg)


def test_mfspark_variant_is_the_estimators_fit(spark, seeds_script):
    frame, problem = small_problem(seeds_script)
    train, _ = seeds_script.per_user_holdout(frame, 0.25, 1)
    U, V = seeds_script.fit(problem, "mfspark", seed=3, rank=3, iterations=2)
    model = ALS(rank=3, maxIter=2, regParam=0.05, implicitPrefs=True, alpha=2.0, seed=3,
                userCol="user", itemCol="item", ratingCol="rating", numUserBlocks=2,
                numItemBlocks=2).fit(spark.createDataFrame(train))
    for got, side in ((U, model.userFactors), (V, model.itemFactors)):
        pdf = side.toPandas().sort_values("id")
        np.testing.assert_allclose(got, np.stack(pdf["features"].to_numpy()), rtol=1e-5,
                                   atol=1e-6)
    # and it is the dense oracle started from the users' seeded factors (keyed by ID)
    ref = reference.implicit_als(problem.u, problem.i, problem.r, problem.n_users,
                                 problem.n_items, seeded_factors(problem.user_keys, 3, 3), 0.05, 2.0,
                                 "count", 2)
    np.testing.assert_allclose(U, ref.user_factors, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(V, ref.item_factors, rtol=1e-9, atol=1e-12)


def test_mfspark_variant_with_conjugate_gradient_is_the_estimators_fit(spark, seeds_script):
    frame, problem = small_problem(seeds_script)
    train, _ = seeds_script.per_user_holdout(frame, 0.25, 1)
    U, V = seeds_script.fit(problem, "mfspark", seed=3, rank=3, iterations=2, cg_steps=1)
    model = ALS(rank=3, maxIter=2, regParam=0.05, implicitPrefs=True, alpha=2.0, seed=3,
                cgSteps=1, userCol="user", itemCol="item", ratingCol="rating",
                numUserBlocks=2, numItemBlocks=2).fit(spark.createDataFrame(train))
    for got, side in ((U, model.userFactors), (V, model.itemFactors)):
        pdf = side.toPandas().sort_values("id")
        np.testing.assert_allclose(got, np.stack(pdf["features"].to_numpy()), rtol=1e-5,
                                   atol=1e-6)
    exact, _ = seeds_script.fit(problem, "mfspark", seed=3, rank=3, iterations=2)
    assert np.abs(U - exact).max() > 1e-3  # one step is not the exact solve


def test_biases_variant_is_the_estimators_fit_with_biases(spark, seeds_script):
    frame, problem = small_problem(seeds_script)
    train, _ = seeds_script.per_user_holdout(frame, 0.25, 1)
    U, V = seeds_script.fit(problem, "biases", seed=3, rank=3, iterations=2)
    model = ALS(rank=3, maxIter=2, regParam=0.05, implicitPrefs=True, alpha=2.0, seed=3,
                biases=True, userCol="user", itemCol="item", ratingCol="rating",
                numUserBlocks=2, numItemBlocks=2).fit(spark.createDataFrame(train))
    for got, side in ((U, model.userFactors), (V, model.itemFactors)):
        pdf = side.toPandas().sort_values("id")
        np.testing.assert_allclose(got[:, :-1], np.stack(pdf["features"].to_numpy()),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[:, -1], pdf["bias"].to_numpy(), rtol=1e-9, atol=1e-12)
    X, Y, b, c = seeds_script.model_parts(U, V, "biases")
    assert np.abs(c).max() > 0.01
    Us, Vs = seeds_script.scoring(U, V, "biases")
    np.testing.assert_allclose(Us @ Vs.T, X @ Y.T + b[:, None] + c[None, :], rtol=1e-12)


def test_unit_norm_variant_only_rescales_the_start(seeds_script):
    _, problem = small_problem(seeds_script)
    U0 = seeded_factors(problem.user_keys, 3, 5)
    U, V = seeds_script.fit(problem, "unit-norm", seed=5, rank=3, iterations=1)
    start = U0 / np.linalg.norm(U0, axis=1, keepdims=True)
    ref = reference.implicit_als(problem.u, problem.i, problem.r, problem.n_users,
                                 problem.n_items, start, 0.05, 2.0, "count", 1)
    np.testing.assert_allclose(U, ref.user_factors, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(V, ref.item_factors, rtol=1e-9, atol=1e-12)


def test_ranking_equals_mllib_ranking_evaluator(spark, seeds_script):
    frame, _ = small_problem(seeds_script)
    train, test = seeds_script.per_user_holdout(frame, 0.25, 1)
    test = pd.concat([test, pd.DataFrame({"user": [100], "item": [999], "rating": [5.0]})])
    problem = seeds_script.Problem(train, test, 2.0, 0.05)  # item 999: relevant, unrankable
    rng = np.random.default_rng(0)
    U, V = rng.standard_normal((problem.n_users, 3)), rng.standard_normal((problem.n_items, 3))
    k = 5
    precision, ndcg = problem.ranking(U, V, k)
    scores = U @ V.T
    scores[problem.seen] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    iid, uid = np.sort(train["item"].unique()), np.sort(train["user"].unique())
    relevant = test[test["rating"] >= 4].groupby("user")["item"].apply(set)
    rows = [(sorted(map(float, items)), [float(iid[j]) for j in top[np.searchsorted(uid, u)]])
            for u, items in relevant.items() if u in set(uid)]
    assert len(rows) == len(problem.relevant) > 3
    assert any(n < k for _, _, n in problem.relevant)  # ideal DCG over fewer than k items
    evaluated = spark.createDataFrame(rows, "label array<double>, prediction array<double>")
    for metric, mine in (("precisionAtK", precision), ("ndcgAtK", ndcg)):
        theirs = RankingEvaluator(metricName=metric, k=k).evaluate(evaluated)
        assert mine == pytest.approx(theirs, rel=1e-12)


def test_non_inferiority_verdict_and_numbers(seeds_script):
    theirs = np.array([0.30, 0.32, 0.34, 0.36])
    ours = np.array([0.33, 0.35, 0.31, 0.29, 0.32])
    line = seeds_script.non_inferiority("ndcg@10", ours, theirs, margin=0.05)
    se = np.sqrt(ours.var(ddof=1) / 5 + theirs.var(ddof=1) / 4)  # Welch, by hand
    assert f"difference {ours.mean() - theirs.mean():+.5f} +- {se:.5f}" in line
    assert f"lower bound {ours.mean() - theirs.mean() - 1.6449 * se:+.5f}" in line
    assert line.endswith("not worse by more than the margin")  # bound -0.0367 > -0.05
    assert seeds_script.non_inferiority("ndcg@10", ours, theirs, 0.03).endswith("NOT shown")


def test_mllib_rows_must_match_the_run_settings(seeds_script, tmp_path):
    row = {"part": "implicit", "system": "mllib", "nonnegative": False, "seed": 0,
           "alpha": 1.0, "rank": 10, "reg": 0.1, "iterations": 10, "holdout": 0.2,
           "split_seed": 0, "precision@10": 0.25, "ndcg@10": 0.35}
    args = argparse.Namespace(alpha=1.0, rank=10, reg=0.1, iterations=10, holdout=0.2,
                              split_seed=0)
    path = tmp_path / "mllib.json"
    path.write_text(json.dumps([row, dict(row, seed=1), dict(row, system="mfspark")]))
    assert list(seeds_script.mllib_rows(path, args)["seed"]) == [0, 1]
    path.write_text(json.dumps([row, dict(row, seed=1, rank=20)]))
    with pytest.raises(SystemExit, match="rank = 10"):
        seeds_script.mllib_rows(path, args)
    path.write_text(json.dumps([row, row]))
    with pytest.raises(SystemExit, match="a seed appears twice"):
        seeds_script.mllib_rows(path, args)
