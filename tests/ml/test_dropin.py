"""The drop-in flow a user of MLlib's ALS runs, on whichever session the suite has: fit,
transform, every ``recommendFor*``, save and load, and a Pipeline tuned by CrossValidator
and reloaded.  ``tests/ml/test_connect.py`` runs this module on a Spark Connect session."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

from mfspark import ALS, ALSModel
from mfspark.core import reference
from mfspark.core.state import init_factors

from conftest import random_ratings

N_USERS, N_ITEMS = 40, 25


@pytest.fixture(scope="module")
def ratings(spark):
    users, items, values = random_ratings(N_USERS, N_ITEMS, 0.3, seed=31)
    frame = spark.createDataFrame(list(zip(users.tolist(), items.tolist(), values.tolist())),
                                  "user int, item int, rating double")
    return users, items, values, frame


@pytest.fixture(scope="module")
def model(ratings):
    return ALS(rank=3, maxIter=3, regParam=0.5, regScale="none", seed=2, numUserBlocks=2,
               numItemBlocks=2).fit(ratings[3])


def test_fit_is_the_reference_fit(ratings, model):
    users, items, values, _ = ratings
    ref = reference.als(users, items, values, N_USERS, N_ITEMS, init_factors(N_ITEMS, 3, 2),
                        0.5, "none", 3)
    uf = {r["id"]: r for r in model.userFactors.collect()}
    got = np.array([uf[u]["features"] for u in range(N_USERS)])
    np.testing.assert_allclose(got, ref.user_factors, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([h["objective"] for h in model.history], ref.objectives,
                               rtol=1e-9)


def test_transform_and_recommendations(spark, ratings, model):
    _, _, _, frame = ratings
    pairs = spark.createDataFrame([(0, 1), (3, 2), (999, 1)], "user int, item int")
    scored = {(r["user"], r["item"]): r["prediction"] for r in model.transform(pairs).collect()}
    assert np.isfinite(scored[(0, 1)]) and np.isfinite(scored[(3, 2)])
    assert np.isnan(scored[(999, 1)])  # coldStartStrategy "nan": MLlib's default
    every = model.recommendForAllUsers(4)
    assert every.count() == N_USERS
    assert model.recommendForAllItems(3).count() == N_ITEMS
    some = model.recommendForUserSubset(frame.select("user").distinct().limit(2), 5)
    assert some.count() == 2 and all(len(r["recommendations"]) == 5 for r in some.collect())
    assert model.recommendForItemSubset(frame.select("item").distinct().limit(3), 2).count() == 3
    unseen = model.recommendForAllUsers(4, exclude=frame)
    rated = {(r["user"], r["item"]) for r in frame.collect()}
    assert all((row["user"], rec["item"]) not in rated
               for row in unseen.collect() for rec in row["recommendations"])


def test_save_and_load_give_the_same_predictions(spark, ratings, model, tmp_path):
    _, _, _, frame = ratings
    path = str(tmp_path / "model")
    model.save(path)
    loaded = ALSModel.load(path)
    want = {(r["user"], r["item"]): r["prediction"] for r in model.transform(frame).collect()}
    got = {(r["user"], r["item"]): r["prediction"] for r in loaded.transform(frame).collect()}
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k], rel=1e-12) for k in want)
    model.write().overwrite().save(path)  # replaced in place
    assert ALSModel.load(path).rank == 3


def test_pipeline_with_cross_validator_saves_and_reloads(spark, ratings, tmp_path):
    _, _, _, frame = ratings
    als = ALS(rank=2, maxIter=2, numUserBlocks=2, numItemBlocks=2, coldStartStrategy="drop")
    grid = ParamGridBuilder().addGrid(als.regParam, [0.05, 5.0]).build()
    cv = CrossValidator(estimator=Pipeline(stages=[als]), estimatorParamMaps=grid,
                        evaluator=RegressionEvaluator(metricName="rmse", labelCol="rating"),
                        numFolds=2, seed=7)
    fitted = cv.fit(frame)
    assert len(fitted.avgMetrics) == 2 and np.isfinite(fitted.avgMetrics).all()
    assert fitted.avgMetrics[0] != fitted.avgMetrics[1]
    best = fitted.bestModel
    # the chosen stage is the fit of the lambda with the lower cross-validated RMSE
    assert best.stages[0].metadata["reg"] == [0.05, 5.0][int(np.argmin(fitted.avgMetrics))]
    best.save(str(tmp_path / "best"))
    loaded = PipelineModel.load(str(tmp_path / "best"))
    want = sorted(r["prediction"] for r in best.transform(frame).collect())
    got = sorted(r["prediction"] for r in loaded.transform(frame).collect())
    np.testing.assert_allclose(got, want, rtol=1e-12)
