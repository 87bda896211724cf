"""Saving and loading ``ALSModel`` (the estimator's model): the model layout of
``jobs/train.py``, parameters kept, a saved ``PipelineModel`` that loads and predicts the
same values, and the training job's model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer

from mfspark import ALSModel
from mfspark.config import ALSParams, JobConfig
from mfspark.io.model import ModelExistsError
from mfspark.app.train import train
from conftest import id_frame


@pytest.fixture(scope="module")
def model(spark):
    rng = np.random.default_rng(0)

    def frame(ids):
        n = len(ids)
        return id_frame(spark, ids, rng.standard_normal((n, 3)), rng.standard_normal(n))
    made = ALSModel(frame(["a", "b", "c"]), frame(["x", "y"]), 3.25,
                    {"rank": 3, "history": [{"iteration": 1, "objective": 2.0}]})
    return made._set(userCol="who", itemCol="what", coldStartStrategy="fallback",
                     predictionCol="p", minRating=1.0, maxRating=5.0)


def pairs(spark):
    return spark.createDataFrame([("a", "x"), ("b", "y"), ("c", "x"), ("new", "y")],
                                 "who string, what string")


def predictions(model, df):
    return {(r["who"], r["what"]): r["p"] for r in model.transform(df).collect()}


def test_save_load_roundtrip(spark, model, tmp_path):
    path = str(tmp_path / "m")
    model.save(path)
    for name in ("user_factors", "item_factors", "metadata.json", "_COMPLETE", "metadata"):
        assert (tmp_path / "m" / name).exists(), name
    assert json.loads((tmp_path / "m" / "metadata.json").read_text())["mu"] == 3.25
    loaded = ALSModel.load(path)
    assert loaded.uid == model.uid
    assert (loaded.getUserCol(), loaded.getColdStartStrategy(), loaded.clipRange()) == \
        ("who", "fallback", (1.0, 5.0))
    assert loaded.rank == 3 and loaded.mu == 3.25 and loaded.history == model.history
    assert predictions(loaded, pairs(spark)) == pytest.approx(predictions(model, pairs(spark)))
    with pytest.raises(ModelExistsError):
        model.save(path)
    model.write().overwrite().save(path)
    assert ALSModel.load(path).mu == 3.25


def test_pipeline_model_saves_and_loads(spark, model, tmp_path):
    prep = SQLTransformer(statement="SELECT lower(who) AS who, what FROM __THIS__")
    pipeline = PipelineModel(stages=[prep, model])
    pipeline.save(str(tmp_path / "pipe"))
    loaded = PipelineModel.load(str(tmp_path / "pipe"))
    assert isinstance(loaded.stages[1], ALSModel)
    df = pairs(spark)
    assert predictions(loaded, df) == pytest.approx(predictions(pipeline, df))


def test_loads_the_training_jobs_model(spark, tmp_path):
    config = JobConfig(als=ALSParams(rank=2, iterations=1, num_user_blocks=2,
                                     num_item_blocks=2), out=str(tmp_path), test_fraction=0.0)
    result = train(spark, config)
    loaded = ALSModel.load(result.model_dir)
    assert loaded.rank == 2 and loaded.mu == pytest.approx(result.metadata["mu"])
    user = loaded.userFactors.orderBy("id").collect()[3]
    item = loaded.itemFactors.orderBy("id").collect()[5]
    u, i = user["id"], item["id"]
    want = (result.metadata["mu"] + user["bias"] + item["bias"]
            + float(np.dot(user["features"], item["features"])))
    df = spark.createDataFrame([(u, i)], "user long, item long")
    assert loaded.transform(df).first()["prediction"] == pytest.approx(want, rel=1e-12)
    recs = loaded.recommendForUserSubset(df, 3).first()
    assert recs["user"] == u and len(recs["recommendations"]) == 3
