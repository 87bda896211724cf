"""MLlib's contracts, checked against ``pyspark.ml.recommendation.ALS`` itself where it has
one: an existing column is never overwritten, ``coldStartStrategy`` ignores case, bad
parameters raise ``IllegalArgumentException``, the storage-level parameters exist with
MLlib's defaults, and ``explainParams()`` states the rules that ``fit`` applies."""

from __future__ import annotations

import math
import pickle
import re

import pytest
from pyspark import StorageLevel
from pyspark.errors import IllegalArgumentException
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.recommendation import ALS as MLlibALS
from pyspark.sql import functions as F

from mfspark import ALS
from mfspark.config import ConfigError
from mfspark.data.duplicates import DuplicateRatingsError
from mfspark.data.split import SplitError
from mfspark.data.validate import InvalidRatingsError
from mfspark.evaluation.grid import GridError
from mfspark.evaluation.tune import TuneError
from mfspark.ml import estimator
from mfspark.ml.params import ParamError

from conftest import random_ratings

N_USERS, N_ITEMS = 20, 15


@pytest.fixture(scope="module")
def frame(spark):
    users, items, values = random_ratings(N_USERS, N_ITEMS, 0.4, seed=23)
    return spark.createDataFrame(list(zip(users.tolist(), items.tolist(), values.tolist())),
                                 "user int, item int, rating double")


@pytest.fixture(scope="module")
def models(frame):
    """A fitted model of each implementation, on the same ratings."""
    return {"mllib": MLlibALS(rank=2, maxIter=2, seed=0).fit(frame),
            "mfspark": ALS(rank=2, maxIter=2, numUserBlocks=2, numItemBlocks=2).fit(frame)}


@pytest.mark.parametrize("impl", ["mllib", "mfspark"])
@pytest.mark.parametrize("column", ["prediction", "rating", "user", "item"])
def test_transform_refuses_a_column_that_exists(frame, models, impl, column):
    """An input with the prediction column, or a predictionCol naming the label or an ID
    column, is refused as MLlib refuses it; it is never overwritten."""
    model = models[impl].copy({models[impl].predictionCol: column})
    data = frame.withColumn("prediction", F.lit(0.0)) if column == "prediction" else frame
    with pytest.raises(IllegalArgumentException, match=f"Column '?{column}'? already exists"):
        model.transform(data)


def test_the_refusal_names_the_fix(frame, models):
    with pytest.raises(ParamError, match=r"already exists.*setPredictionCol"):
        models["mfspark"].copy({models["mfspark"].predictionCol: "rating"}).transform(frame)


def test_another_prediction_column_keeps_the_label(frame, models):
    model = models["mfspark"].copy({models["mfspark"].predictionCol: "score"})
    scored = model.transform(frame)
    assert scored.columns == ["user", "item", "rating", "score"]
    rows = scored.collect()
    want = {(r["user"], r["item"]): r["rating"] for r in frame.collect()}
    assert {(r["user"], r["item"]): r["rating"] for r in rows} == want
    rmse = RegressionEvaluator(labelCol="rating", predictionCol="score").evaluate(scored)
    assert 0 < rmse < 5  # the label was kept: the prediction is not compared with itself


@pytest.mark.parametrize("impl", ["mllib", "mfspark"])
@pytest.mark.parametrize("given", ["DROP", "Drop", "NaN", "NAN"])
def test_cold_start_strategy_ignores_case(spark, models, impl, given):
    pairs = spark.createDataFrame([(0, 1), (999, 1)], "user int, item int")
    model = models[impl].copy({models[impl].coldStartStrategy: given})
    rows = {r["user"]: r["prediction"] for r in model.transform(pairs).collect()}
    if given.lower() == "drop":
        assert set(rows) == {0}
    else:
        assert set(rows) == {0, 999} and math.isnan(rows[999]) and math.isfinite(rows[0])


def test_cold_start_strategy_is_read_in_lower_case(spark, frame, models):
    assert ALS(coldStartStrategy="DROP").getColdStartStrategy() == "drop"
    ALS(coldStartStrategy="FallBack").checkParams()
    model = models["mfspark"].copy({models["mfspark"].coldStartStrategy: "FALLBACK"})
    pairs = spark.createDataFrame([(999, 1)], "user int, item int")
    assert math.isfinite(model.transform(pairs).first()["prediction"])
    with pytest.raises(ParamError, match=r"coldStartStrategy must be one of .* got 'Zero'"):
        ALS(coldStartStrategy="Zero").fit(frame)


def test_explain_params_states_the_bounds_fit_enforces():
    """The bound shown for maxIter and regParam is the one ``fit`` applies: the bound
    itself (or just above an open one) is accepted, just below it is refused."""
    als = ALS()
    for name in ("maxIter", "regParam"):
        line = als.explainParam(name)
        assert "(>= 0)" not in line, line  # pyspark's shared doc, not mfspark's rule
        op, bound = re.search(r"\((>=|>) ([0-9.]+)\)", line).groups()
        bound = float(bound)
        accepted = bound if op == ">=" else bound + 1e-9
        refused = bound - 1 if op == ">=" else bound
        cast = int if name == "maxIter" else float
        ALS(**{name: cast(accepted)}).training_params()
        with pytest.raises(ParamError, match=name):
            ALS(**{name: cast(refused)}).training_params()


def test_explain_params_shows_the_block_count_fit_uses():
    unset = ALS().explainParam("numUserBlocks")
    assert "(default: 10" not in unset and "twice Spark's default parallelism" in unset
    assert ALS().training_params().num_user_blocks is None  # fit chooses: not 10
    assert ALS().getNumUserBlocks() == MLlibALS().getNumUserBlocks() == 10  # MLlib's getter
    given = ALS(numItemBlocks=3).explainParam("numItemBlocks")
    assert "current: 3" in given and ALS(numItemBlocks=3).training_params().num_item_blocks == 3
    lines = [x for x in ALS().explainParams().splitlines() if "Blocks" in x]
    assert len(lines) == 2 and not any("(default: 10" in x for x in lines)


def test_explain_params_does_not_promise_what_mfspark_does_not_do():
    """pyspark's shared docs of checkpointInterval and blockSize describe MLlib's
    internals; mfspark's say what the values do here."""
    assert "no effect" in ALS().explainParam("checkpointInterval")
    assert "top-N" in ALS().explainParam("blockSize")


@pytest.mark.parametrize("cls", [ParamError, ConfigError, InvalidRatingsError,
                                 DuplicateRatingsError, SplitError, GridError, TuneError])
def test_errors_are_value_errors_and_illegal_argument_exceptions(cls):
    err = cls("rank must be an integer >= 0, got -1")
    assert isinstance(err, ValueError) and isinstance(err, IllegalArgumentException)
    assert str(err) == err.getMessage() == "rank must be an integer >= 0, got -1"
    assert err.getCondition() is None
    again = pickle.loads(pickle.dumps(err))  # as Spark ships errors between processes
    assert type(again) is cls and str(again) == str(err)


@pytest.mark.parametrize("kwargs", [{"rank": -1}, {"coldStartStrategy": "zero"},
                                    {"maxIter": 0}, {"intermediateStorageLevel": "FAST"}])
def test_bad_params_raise_what_mllib_raises(frame, kwargs):
    with pytest.raises(IllegalArgumentException):
        ALS(**kwargs).fit(frame)
    with pytest.raises(ValueError):
        ALS(**kwargs).fit(frame)


def test_mllib_raises_illegal_argument_exception_too(frame):
    with pytest.raises(IllegalArgumentException):
        MLlibALS(rank=-1).fit(frame)


def test_bad_ratings_raise_illegal_argument_exception(spark):
    bad = spark.createDataFrame([(1, 1, 4.0), (1, 2, float("nan")), (2, 1, 3.0)],
                                "user int, item int, rating double")
    with pytest.raises(IllegalArgumentException, match="NaN"):
        ALS(rank=1, maxIter=1).fit(bad)


def test_storage_level_params_have_mllib_names_and_defaults():
    ours, theirs = ALS(), MLlibALS()
    for name in ("intermediateStorageLevel", "finalStorageLevel"):
        assert ours.getOrDefault(name) == theirs.getOrDefault(name) == "MEMORY_AND_DISK"
    als = ALS().setIntermediateStorageLevel("DISK_ONLY").setFinalStorageLevel("MEMORY_ONLY")
    assert (als.getIntermediateStorageLevel(), als.getFinalStorageLevel()) == \
        ("DISK_ONLY", "MEMORY_ONLY")
    assert als.storage_levels() == (StorageLevel.DISK_ONLY, StorageLevel.MEMORY_ONLY)
    # MLlib's serialized names are accepted; pyspark stores DataFrames serialized anyway
    assert ALS(intermediateStorageLevel="MEMORY_AND_DISK_SER").storage_levels()[0] == \
        StorageLevel.MEMORY_AND_DISK
    assert ALS(finalStorageLevel="NONE").storage_levels()[1] == StorageLevel.DISK_ONLY


@pytest.mark.parametrize("kwargs,message", [
    ({"intermediateStorageLevel": "FAST"}, "intermediateStorageLevel must be a StorageLevel "
                                           "name, one of .* got 'FAST'"),
    ({"finalStorageLevel": "memory_and_disk"}, "finalStorageLevel must be a StorageLevel"),
    ({"intermediateStorageLevel": "NONE"}, "intermediateStorageLevel cannot be 'NONE'"),
])
def test_bad_storage_levels_fail_before_any_work(kwargs, message):
    with pytest.raises(ParamError, match=message):
        ALS(**kwargs).checkParams()


def test_storage_levels_reach_the_fit(frame, monkeypatch):
    """The packed rating blocks are persisted at intermediateStorageLevel and the fitted
    factors checkpointed at finalStorageLevel."""
    seen: dict[str, object] = {}
    prepare, checkpoint = estimator.prepare, type(frame).localCheckpoint

    def recording_prepare(*args, **kwargs):
        seen["intermediate"] = kwargs.get("storage")
        return prepare(*args, **kwargs)

    def recording_checkpoint(self, eager=True, storageLevel=None):
        seen.setdefault("final", []).append(storageLevel)
        return checkpoint(self, eager, storageLevel)

    monkeypatch.setattr(estimator, "prepare", recording_prepare)
    monkeypatch.setattr(type(frame), "localCheckpoint", recording_checkpoint)
    model = ALS(rank=2, maxIter=1, numUserBlocks=2, numItemBlocks=2,
                intermediateStorageLevel="DISK_ONLY", finalStorageLevel="MEMORY_ONLY").fit(frame)
    assert seen == {"intermediate": StorageLevel.DISK_ONLY,
                    "final": [StorageLevel.MEMORY_ONLY, StorageLevel.MEMORY_ONLY]}
    assert model.userFactors.count() == N_USERS
