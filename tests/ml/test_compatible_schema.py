"""``compatibleSchema=True``: the schemas of MLlib's ``ALSModel`` (``array<float>`` factors
without biases, ``float`` predictions, ``int`` IDs), checked against an MLlib model fitted
to the same ratings; the default keeps mfspark's ``array<double>``, ``double`` and the
IDs' own type."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.errors import IllegalArgumentException
from pyspark.ml.recommendation import ALS as MLlibALS
from pyspark.sql import types as T

from mfspark import ALS, ALSModel
from mfspark.ml.params import ParamError

from conftest import random_ratings

N_USERS, N_ITEMS = 12, 9


def _types(df):
    """Column names and types, nested types included (nullability aside)."""
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]


@pytest.fixture(scope="module")
def frames(spark):
    """The same ratings with int IDs and with double IDs (as after ``StringIndexer``)."""
    users, items, values = random_ratings(N_USERS, N_ITEMS, 0.5, seed=5)
    rows = list(zip(users.tolist(), items.tolist(), values.tolist()))
    ints = spark.createDataFrame(rows, "user int, item int, rating double")
    doubles = spark.createDataFrame([(float(u), float(i), r) for u, i, r in rows],
                                    "user double, item double, rating double")
    return ints, doubles


@pytest.fixture(scope="module")
def mllib(frames):
    return MLlibALS(rank=2, maxIter=1, seed=0).fit(frames[1])


@pytest.fixture(scope="module")
def ours(frames):
    """mfspark fitted to the double IDs with MLlib's schema, and with its own."""
    als = ALS(rank=2, maxIter=1, numUserBlocks=2, numItemBlocks=2)
    return (als.copy({als.compatibleSchema: True}).fit(frames[1]), als.fit(frames[1]))


def _outputs(model, frame):
    users = frame.select("user").distinct()
    items = frame.select("item").distinct()
    return {"userFactors": model.userFactors, "itemFactors": model.itemFactors,
            "transform": model.transform(frame),
            "recommendForAllUsers": model.recommendForAllUsers(3),
            "recommendForAllItems": model.recommendForAllItems(3),
            "recommendForUserSubset": model.recommendForUserSubset(users, 2),
            "recommendForItemSubset": model.recommendForItemSubset(items, 2)}


def test_compatible_schema_is_mllibs(frames, mllib, ours):
    theirs, compatible = _outputs(mllib, frames[1]), _outputs(ours[0], frames[1])
    for name, frame in theirs.items():
        assert _types(compatible[name]) == _types(frame), name
    assert _types(compatible["userFactors"]) == [("id", "int"), ("features", "array<float>")]
    assert _types(compatible["transform"])[-1] == ("prediction", "float")
    # the values are the model's, only narrowed: float32 of the double outputs
    wide = {r["id"]: r["features"] for r in ours[1].userFactors.collect()}
    for row in compatible["userFactors"].collect():
        np.testing.assert_array_equal(np.float32(row["features"]), np.float32(wide[row["id"]]))
    want = {(r["user"], r["item"]): r["prediction"] for r in ours[1].transform(frames[1])
            .collect()}
    got = {(r["user"], r["item"]): r["prediction"] for r in compatible["transform"].collect()}
    assert got.keys() == want.keys()
    assert all(np.float32(got[k]) == np.float32(want[k]) for k in want)


def test_default_schema_keeps_doubles_and_the_id_type(frames, ours):
    outputs = _outputs(ours[1], frames[1])
    assert _types(outputs["userFactors"]) == [("id", "double"), ("features", "array<double>"),
                                              ("bias", "double")]
    assert _types(outputs["transform"])[-1] == ("prediction", "double")
    assert _types(outputs["recommendForAllUsers"]) == [
        ("user", "double"), ("recommendations", "array<struct<item:double,rating:float>>")]


def test_the_param_is_kept_by_copy_save_and_load(frames, ours, tmp_path):
    assert ours[0].getCompatibleSchema() and not ours[1].getCompatibleSchema()
    assert not ALS().getCompatibleSchema() and ALS(compatibleSchema=True).getCompatibleSchema()
    path = str(tmp_path / "m")
    ours[0].save(path)
    loaded = ALSModel.load(path)
    assert loaded.getCompatibleSchema()
    assert _types(loaded.userFactors) == [("id", "int"), ("features", "array<float>")]
    # the same model read with mfspark's schema has its biases back
    assert "bias" in loaded.copy({loaded.compatibleSchema: False}).userFactors.columns


def test_int_ids_are_refused_as_mllib_refuses_them(spark, frames):
    """MLlib's fit needs numeric IDs that are integers in the int range; so does
    ``compatibleSchema=True`` (the default takes any ID)."""
    als = ALS(rank=1, maxIter=1, numUserBlocks=1, numItemBlocks=1, compatibleSchema=True)
    strings = frames[0].selectExpr("cast(user as string) as user", "item", "rating")
    with pytest.raises(ParamError, match="numeric user IDs.*compatibleSchema=False"):
        als.fit(strings)
    with pytest.raises(IllegalArgumentException):
        MLlibALS(rank=1, maxIter=1).fit(strings)
    for bad in (1.5, float(2**31)):
        ratings = frames[1].union(spark.createDataFrame([(bad, 0.0, 1.0)], frames[1].schema))
        with pytest.raises(Exception, match="not an integer in the int range"):
            als.fit(ratings)


def test_loaded_long_ids_outside_int_fail_when_read(spark):
    """A model with long IDs asked for MLlib's schema fails the job that reads an ID that
    does not fit an int, naming it, rather than wrapping it around."""
    factors = spark.createDataFrame([(2**40, 0.0, [1.0])],
                                    T.StructType([T.StructField("id", T.LongType()),
                                                  T.StructField("bias", T.DoubleType()),
                                                  T.StructField("features",
                                                                T.ArrayType(T.DoubleType()))]))
    model = ALSModel(factors, factors, 0.0, {"rank": 1}).setCompatibleSchema(True)
    with pytest.raises(Exception, match=f"{2**40}.*not an integer in the int range"):
        model.userFactors.collect()
