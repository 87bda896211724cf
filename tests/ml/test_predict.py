"""``ALSModel.transform``: mu + b + c + u.v against NumPy, the cold-start strategies for
unknown users and items (long and string IDs), and clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfspark import ALSModel

MU = 3.0
U = np.array([[1.0, 0.5], [-0.5, 2.0]])
B = np.array([0.25, -0.5])
V = np.array([[0.5, 1.0], [2.0, -1.0], [0.0, 0.25]])
C = np.array([0.1, -0.2, 0.3])
from conftest import id_frame


def model_with(spark, user_ids, item_ids, **params):
    def frame(ids, f, b):
        return id_frame(spark, ids, f, b)
    n_u, n_i = len(user_ids), len(item_ids)
    model = ALSModel(frame(user_ids, U[:n_u], B[:n_u]), frame(item_ids, V[:n_i], C[:n_i]), MU,
                     {"rank": 2})
    return model._set(**params) if params else model


def expected(u, i):
    """NumPy prediction; None marks an unknown side."""
    return (MU + (B[u] if u is not None else 0) + (C[i] if i is not None else 0)
            + (U[u] @ V[i] if u is not None and i is not None else 0))


@pytest.mark.parametrize("ids", [
    ([10_000_000_001, 10_000_000_002], [-5, 0, 7_000_000_000], "long"),
    (["ann", "bob"], ["x", "y", "z"], "string"),
])
@pytest.mark.parametrize("strategy", ["nan", "drop", "fallback"])
def test_cold_start_strategies(spark, ids, strategy):
    user_ids, item_ids, kind = ids
    unknown_u = 42 if kind == "long" else "zed"
    unknown_i = 43 if kind == "long" else "nope"
    model = model_with(spark, user_ids, item_ids, userCol="u", itemCol="i",
                       coldStartStrategy=strategy)
    cases = [(0, 0), (0, 1), (1, 2), (1, 0), (None, 1), (0, None), (None, None)]
    rows = [(k, user_ids[u] if u is not None else unknown_u,
             item_ids[i] if i is not None else unknown_i, "keep") for k, (u, i) in enumerate(cases)]
    df = spark.createDataFrame(rows, f"k int, u {kind}, i {kind}, other string")
    out = {r["k"]: r for r in model.transform(df).collect()}
    assert model.transform(df).columns == ["k", "u", "i", "other", "prediction"]
    for k, (u, i) in enumerate(cases):
        cold = u is None or i is None
        if strategy == "drop" and cold:
            assert k not in out
            continue
        got = out[k]["prediction"]
        assert out[k]["other"] == "keep"
        if strategy == "nan" and cold:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(expected(u, i), rel=1e-12)


def test_int_column_matches_long_ids_and_nulls_are_unknown(spark):
    model = model_with(spark, [1, 2], [5, 6, 7], coldStartStrategy="fallback")
    df = spark.createDataFrame([(1, 6), (None, 6), (2, None)], "user int, item int")
    by_pair = {(r["user"], r["item"]): r["prediction"] for r in model.transform(df).collect()}
    assert by_pair[(1, 6)] == pytest.approx(expected(0, 1))
    assert by_pair[(None, 6)] == pytest.approx(expected(None, 1))
    assert by_pair[(2, None)] == pytest.approx(expected(1, None))


def test_clipping_to_the_rating_scale(spark):
    model = model_with(spark, [1, 2], [5, 6, 7], minRating=3.0, maxRating=4.0,
                       coldStartStrategy="nan", predictionCol="score")
    df = spark.createDataFrame([(1, 5), (1, 6), (2, 6), (3, 5)], "user long, item long")
    got = {(r["user"], r["item"]): r["score"] for r in model.transform(df).collect()}
    raw = {(1, 5): expected(0, 0), (1, 6): expected(0, 1), (2, 6): expected(1, 1)}
    for pair, value in raw.items():
        assert got[pair] == pytest.approx(min(max(value, 3.0), 4.0))
    assert min(raw.values()) < 3.0 < 4.0 < max(raw.values())  # both bounds exercised
    assert math.isnan(got[(3, 5)])  # NaN is not clipped into range


def test_bad_strategy_and_missing_column(spark):
    model = model_with(spark, [1], [5], coldStartStrategy="mean")
    df = spark.createDataFrame([(1, 5)], "user long, item long")
    with pytest.raises(ValueError, match="coldStartStrategy must be one of"):
        model.transform(df)
    with pytest.raises(ValueError, match="column 'item' not found"):
        model_with(spark, [1], [5]).transform(df.select("user"))
