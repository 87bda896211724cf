"""Top-k recommendations: the block kernel and the Spark job against a brute-force NumPy
ranking, with and without excluding the pairs a user rated."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from mfspark.ml.recommend import recommend
from mfspark.core.topn import block_top_k, top_n

MU = 3.5
from conftest import id_frame


def brute(U, b, V, c, k, seen=()):
    """Every user's k best items by a full sort of the dense score matrix."""
    scores = U @ V.T + c[None, :] + b[:, None] + MU
    for r, j in seen:
        scores[r, j] = -np.inf
    out = []
    for row in scores:
        order = [j for j in np.argsort(-row, kind="stable") if np.isfinite(row[j])]
        out.append([(j, row[j]) for j in order[:k]])
    return out


def factors(seed, n_users=23, n_items=17, rank=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_users, rank)), rng.standard_normal(n_users),
            rng.standard_normal((n_items, rank)), rng.standard_normal(n_items))


@pytest.mark.parametrize("k", [1, 4, 17, 30])
@pytest.mark.parametrize("with_seen", [False, True])
def test_block_top_k_equals_brute_force(k, with_seen):
    U, b, V, c = factors(k)
    rng = np.random.default_rng(99)
    seen = (rng.integers(0, 23, 60), rng.integers(0, 17, 60)) if with_seen else None
    # a tiny chunk budget forces several row chunks
    rows, cols, scores = block_top_k(U, b, V, c, MU, k, seen, max_elements=40)
    expected = brute(U, b, V, c, k, list(zip(*seen)) if seen else ())
    for r in range(len(b)):
        got = sorted(zip(cols[rows == r], scores[rows == r]), key=lambda t: -t[1])
        assert [j for j, _ in got] == [j for j, _ in expected[r]]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected[r]], rtol=1e-12)


def test_driver_top_n_agrees_with_block_kernel():
    U, b, V, c = factors(5)
    best, _ = top_n(U, b, V, c, MU, 5)
    rows, cols, scores = block_top_k(U, b, V, c, MU, 5)
    for r in range(len(b)):
        got = cols[rows == r][np.argsort(-scores[rows == r])]
        assert list(got) == list(best[r])


def _frame(spark, ids, F_, bias):
    return id_frame(spark, ids, F_, bias)


@pytest.mark.parametrize("id_kind", ["long", "string"])
def test_spark_recommend_equals_brute_force(spark, id_kind):
    U, b, V, c = factors(1, n_users=31, n_items=29)
    user_ids = [f"u{i:02d}" for i in range(31)] if id_kind == "string" else \
        [10_000_000_000 + 7 * i for i in range(31)]
    item_ids = [f"i{i:02d}" for i in range(29)] if id_kind == "string" else \
        [5_000_000_000 + 3 * i for i in range(29)]
    users, items = _frame(spark, user_ids, U, b), _frame(spark, item_ids, V, c)
    rng = np.random.default_rng(3)
    seen = sorted({(int(r), int(j)) for r, j in zip(rng.integers(0, 31, 200),
                                                   rng.integers(0, 29, 200))})
    exclude = spark.createDataFrame([(user_ids[r], item_ids[j]) for r, j in seen],
                                    ["user", "item"])
    for pairs in (None, exclude):
        # blockSize 8: 4 user blocks x 4 item blocks
        got = recommend(users, items, MU, 6, 8, "user", "item", pairs).collect()
        expected = brute(U, b, V, c, 6, seen if pairs is not None else ())
        assert len(got) == 31
        for row in got:
            r = user_ids.index(row["user"])
            assert [x["item"] for x in row["recommendations"]] == \
                [item_ids[j] for j, _ in expected[r]]
            np.testing.assert_allclose([x["rating"] for x in row["recommendations"]],
                                       [s for _, s in expected[r]], rtol=1e-6)
    assert got[0]["recommendations"][0].__fields__ == ["item", "rating"]


def test_everything_excluded_leaves_the_user_out(spark):
    U, b, V, c = factors(2, n_users=3, n_items=2)
    users, items = _frame(spark, [1, 2, 3], U, b), _frame(spark, [7, 8], V, c)
    exclude = spark.createDataFrame([(1, 7), (1, 8), (2, 8)], ["u", "i"])
    got = {r["u"]: [x["i"] for x in r["recommendations"]]
           for r in recommend(users, items, MU, 5, 4096, "u", "i", exclude).collect()}
    ids = [7, 8]
    assert got == {2: [7], 3: [ids[j] for j, _ in brute(U, b, V, c, 5)[2]]}


def test_bad_k_is_refused(spark):
    U, b, V, c = factors(2, n_users=3, n_items=2)
    users = _frame(spark, [1, 2, 3], U, b)
    with pytest.raises(ValueError, match="integer >= 1, got 0"):
        recommend(users, users, MU, 0, 10, "u", "i")
    exclude = spark.createDataFrame([(1, 7)], ["user", "x"])
    with pytest.raises(ValueError, match="needs column 'i'"):
        recommend(users, users, MU, 2, 10, "user", "i", exclude.select("user", F.col("x")))


def test_rank_zero_ranks_by_item_bias():
    c = np.array([0.5, 2.0, -1.0, 1.0])
    rows, cols, scores = block_top_k(np.zeros((2, 0)), np.array([0.0, 1.0]), np.zeros((4, 0)),
                                     c, MU, 2)
    for r, b in ((0, 0.0), (1, 1.0)):
        assert sorted(cols[rows == r]) == [1, 3]
        np.testing.assert_allclose(sorted(scores[rows == r]), [MU + b + 1.0, MU + b + 2.0])
