"""``mfspark.ALS`` with implicit feedback and nonnegative factors: factors equal the dense
oracle's and recommendations rank by the model's own score."""

from __future__ import annotations

import numpy as np

from mfspark.core import reference
from mfspark.core.state import init_factors

from conftest import random_ratings, signed_ratings


def test_estimator_implicit_and_recommendations_score_without_biases(spark):
    from mfspark import ALS

    users, items, ratings = signed_ratings(30, 20, 0.3, seed=21)
    df = spark.createDataFrame(list(zip(users.tolist(), items.tolist(), ratings.tolist())),
                               "user long, item long, rating double")
    model = ALS(rank=3, maxIter=2, regParam=0.1, implicitPrefs=True, alpha=5.0, seed=4,
                numUserBlocks=2, numItemBlocks=2).fit(df)
    ref = reference.implicit_als(users, items, ratings, 30, 20, init_factors(30, 3, 4), 0.1,
                                 5.0, "count", 2)
    uf = {r["id"]: r for r in model.userFactors.collect()}
    vf = {r["id"]: r for r in model.itemFactors.collect()}
    U = np.array([uf[u]["features"] for u in range(30)])
    V = np.array([vf[i]["features"] for i in range(20)])
    np.testing.assert_allclose(U, ref.user_factors, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(V, ref.item_factors, rtol=1e-8, atol=1e-12)
    assert model.mu == 0.0 and all(r["bias"] == 0.0 for r in uf.values())
    assert model.metadata["implicit_prefs"] and model.metadata["alpha"] == 5.0
    recs = model.recommendForAllUsers(3).collect()
    assert len(recs) == 30
    for row in recs:  # score = u . v, best first, nothing added
        scores = U[row["user"]] @ V.T
        expected = np.sort(scores)[::-1][:3]
        got = [r["rating"] for r in row["recommendations"]]
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        assert [r["item"] for r in row["recommendations"]][0] == int(np.argmax(scores))


def test_estimator_implicit_with_biases_scores_with_them(spark):
    """implicitPrefs=True, biases=True: the estimator's factors and biases are the dense
    reference's, and recommendForAllUsers ranks by u . v + b_u + c_i (the item bias moves
    the ranking)."""
    from mfspark import ALS

    users, items, ratings = signed_ratings(30, 20, 0.3, seed=23)
    df = spark.createDataFrame(list(zip(users.tolist(), items.tolist(), ratings.tolist())),
                               "user long, item long, rating double")
    model = ALS(rank=3, maxIter=2, regParam=0.1, implicitPrefs=True, alpha=5.0, seed=4,
                biases=True, numUserBlocks=2, numItemBlocks=2).fit(df)
    ref = reference.implicit_als(users, items, ratings, 30, 20, init_factors(30, 3, 4), 0.1,
                                 5.0, "count", 2, biases=True)
    uf = {r["id"]: r for r in model.userFactors.collect()}
    vf = {r["id"]: r for r in model.itemFactors.collect()}
    U = np.array([uf[u]["features"] for u in range(30)])
    V = np.array([vf[i]["features"] for i in range(20)])
    c = np.array([vf[i]["bias"] for i in range(20)])
    np.testing.assert_allclose(U, ref.user_factors, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(c, ref.item_bias, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose([uf[u]["bias"] for u in range(30)], ref.user_bias, rtol=1e-8,
                               atol=1e-12)
    assert model.mu == 0.0 and model.metadata["biases"]
    changed = 0
    for row in model.recommendForAllUsers(3).collect():
        scores = U[row["user"]] @ V.T + uf[row["user"]]["bias"] + c
        np.testing.assert_allclose([r["rating"] for r in row["recommendations"]],
                                   np.sort(scores)[::-1][:3], rtol=1e-5)
        changed += int(np.argmax(scores) != np.argmax(U[row["user"]] @ V.T))
    assert changed > 0  # without the biases some users' best item would differ


def test_estimator_nonnegative_keeps_free_biases(spark):
    from mfspark import ALS

    users, items, ratings = random_ratings(30, 20, 0.3, seed=22)
    df = spark.createDataFrame(list(zip(users.tolist(), items.tolist(), ratings.tolist())),
                               "user long, item long, rating double")
    model = ALS(rank=3, maxIter=3, nonnegative=True, numUserBlocks=2, numItemBlocks=2).fit(df)
    for side in (model.userFactors, model.itemFactors):
        rows = side.collect()
        assert all(min(r["features"]) >= 0 for r in rows)
        assert any(r["bias"] < 0 for r in rows) and any(r["bias"] > 0 for r in rows)
    hist = [h["objective"] for h in model.history]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(hist, hist[1:]))
