"""The distributed ALS loop against the pure-NumPy reference and other oracles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfspark.config import ALSParams
from mfspark.core import reference
from mfspark.core.state import init_factors
from mfspark.core.normal import block_memory_bound
from mfspark.engine.loop import fit, partition
from mfspark.io.factors import STATS, read_solution

from conftest import Fitted, fit_spark, indexed_frame, random_ratings, rel_err


@pytest.mark.parametrize("reg_scale,reg", [("none", 2.0), ("count", 0.1)])
@pytest.mark.parametrize("iterations", [1, 5])
def test_spark_equals_numpy_reference(spark, tmp_path, reg_scale, reg, iterations):
    users, items, ratings = random_ratings(40, 25, 0.3, seed=11)
    params = ALSParams(rank=4, reg=reg, reg_scale=reg_scale, iterations=iterations,
                       num_user_blocks=3, num_item_blocks=2, seed=5)
    V0 = init_factors(25, 4, seed=5)  # the seeded start: a function of each item's key
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path))
    ref = reference.als(users, items, ratings, 40, 25, V0, reg, reg_scale, iterations)
    assert got.mu == pytest.approx(ref.mu, rel=1e-12)
    for mine, theirs in [(got.users.factors, ref.user_factors), (got.users.bias, ref.user_bias),
                         (got.items.factors, ref.item_factors), (got.items.bias, ref.item_bias)]:
        assert rel_err(mine, theirs) <= 1e-6
    objectives = [h["objective"] for h in got.history]
    np.testing.assert_allclose(objectives, ref.objectives, rtol=1e-9)


def test_objective_never_increases(spark, tmp_path):
    users, items, ratings = random_ratings(60, 40, 0.2, seed=3)
    params = ALSParams(rank=6, reg=0.05, reg_scale="count", iterations=8, num_user_blocks=2,
                       num_item_blocks=3)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path), init_factors(40, 6, 1))
    trail = []
    for h in got.history:
        trail += [h["objective_after_user_step"], h["objective"]]
    steps = np.diff(trail)
    assert np.all(steps <= 1e-9 * np.abs(np.array(trail[:-1]))), trail
    assert trail[-1] < trail[0]


def test_planted_low_rank_is_recovered(spark, tmp_path):
    rng = np.random.default_rng(0)
    n_users, n_items, rank = 80, 60, 3
    U, V = rng.standard_normal((n_users, rank)), rng.standard_normal((n_items, rank))
    b, c = rng.standard_normal(n_users), rng.standard_normal(n_items)
    users, items, _ = random_ratings(n_users, n_items, 0.5, seed=4)
    ratings = np.sum(U[users] * V[items], axis=1) + b[users] + c[items] + 3.0
    params = ALSParams(rank=rank, reg=1e-6, reg_scale="none", iterations=25,
                       num_user_blocks=2, num_item_blocks=2)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path),
                    init_factors(n_items, rank, 9))
    assert got.history[-1]["train_rmse"] < 1e-3
    assert got.history[0]["train_rmse"] > 10 * got.history[-1]["train_rmse"]


def test_stored_items_are_exact_least_squares_given_stored_users(spark, tmp_path):
    users, items, ratings = random_ratings(30, 20, 0.3, seed=8)
    params = ALSParams(rank=3, reg=0.3, reg_scale="count", iterations=3, num_user_blocks=2,
                       num_item_blocks=2)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path), init_factors(20, 3, 2))
    U, b, mu = got.users.factors, got.users.bias, got.mu
    for j in range(20):
        sel = items == j
        X = np.hstack([U[users[sel]], np.ones((sel.sum(), 1))])
        y = ratings[sel] - b[users[sel]] - mu
        lam = 0.3 * sel.sum()
        A = np.vstack([X, np.sqrt(lam) * np.eye(4)])
        w = np.linalg.lstsq(A, np.concatenate([y, np.zeros(4)]), rcond=None)[0]
        np.testing.assert_allclose(got.items.factors[j], w[:3], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(got.items.bias[j], w[3], rtol=1e-8, atol=1e-10)


def test_same_model_whatever_the_blocks_and_partitions(spark, tmp_path):
    """Same data, seed and settings: the same factors (<= 1e-9) with 1, 3 and 8 blocks per
    side, the input spread over different partition counts."""
    users, items, ratings = random_ratings(50, 35, 0.25, seed=13)
    fits = {}
    for blocks, slices in [(1, 1), (3, 5), (8, 2)]:
        params = ALSParams(rank=5, reg=0.1, iterations=4, num_user_blocks=blocks,
                           num_item_blocks=blocks)
        frame = indexed_frame(spark, users, items, ratings).repartition(slices)
        parts = partition(frame, params)
        try:
            fits[blocks] = Fitted(spark, fit(parts, params, str(tmp_path / str(blocks))), 50,
                                  35, 5)
        finally:
            parts.unpersist()
    for blocks in (3, 8):
        for side in ("users", "items"):
            a, b = getattr(fits[1], side), getattr(fits[blocks], side)
            np.testing.assert_allclose(b.factors, a.factors, rtol=0, atol=1e-9)
            np.testing.assert_allclose(b.bias, a.bias, rtol=0, atol=1e-9)
        assert [h["objective"] for h in fits[blocks].history] == pytest.approx(
            [h["objective"] for h in fits[1].history], rel=1e-12)


@pytest.mark.parametrize("variant", [
    {}, {"implicit_prefs": True, "alpha": 2.0}, {"implicit_prefs": True, "biases": True},
    {"nonnegative": True}, {"implicit_prefs": True, "cg_steps": 2}])
def test_routed_fixed_rows_give_the_whole_sides_factors(spark, tmp_path, variant):
    """Routing each block only the fixed rows it references (a budget of 0 MiB) gives the
    factors and objectives of sending the whole side (1e-10), for every variant."""
    users, items, ratings = random_ratings(50, 35, 0.25, seed=17)
    fits = {}
    for budget in (128, 0):
        params = ALSParams(rank=4, reg=0.1, iterations=3, num_user_blocks=3, num_item_blocks=2,
                           broadcast_mb=budget, **variant)
        fits[budget] = fit_spark(spark, users, items, ratings, params,
                                 str(tmp_path / str(budget)))
    for side in ("users", "items"):
        a, b = getattr(fits[128], side), getattr(fits[0], side)
        np.testing.assert_allclose(b.factors, a.factors, rtol=0, atol=1e-10)
        np.testing.assert_allclose(b.bias, a.bias, rtol=0, atol=1e-10)
    assert [h["objective"] for h in fits[0].history] == pytest.approx(
        [h["objective"] for h in fits[128].history], rel=1e-12)


def test_float32_factors_train_to_nearly_the_same_model(spark, tmp_path):
    """Factors stored and shipped as float32 (MLlib's storage), solved in float64: the
    objective follows the float64 fit's closely and the factors are float32 values."""
    users, items, ratings = random_ratings(60, 40, 0.3, seed=19)
    fits = {}
    for dtype in ("float64", "float32"):
        params = ALSParams(rank=5, reg=0.1, iterations=5, num_user_blocks=2,
                           num_item_blocks=2, factor_dtype=dtype)
        fits[dtype] = fit_spark(spark, users, items, ratings, params, str(tmp_path / dtype))
    low = fits["float32"].users.factors
    assert np.array_equal(low, low.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose([h["objective"] for h in fits["float32"].history],
                               [h["objective"] for h in fits["float64"].history], rtol=1e-5)
    np.testing.assert_allclose(low, fits["float64"].users.factors, atol=1e-5)


@pytest.mark.parametrize("clip,budget", [(None, 128), ((1.0, 4.2), 128), (None, 0)])
def test_held_out_error_is_the_models_error_on_them(spark, tmp_path, clip, budget):
    """The test RMSE and MAE each iteration reports (computed inside the item half-steps)
    are the fitted model's errors on the held-out ratings, with docs/model.md's fallbacks for a
    user or item unseen in training and predictions clipped when asked; the same when the
    users are routed (a budget of 0 MiB) and held-out ratings reference users that no
    training rating of their item block does."""
    from pyspark.sql import functions as F

    from mfspark.core.local import predict

    users, items, ratings = random_ratings(300, 30, 0.05, seed=23)
    rng = np.random.default_rng(29)
    known = (rng.integers(0, 300, 40), rng.integers(0, 30, 40), rng.uniform(1, 5, 40))
    test = tuple(np.concatenate([a, b]) for a, b in zip(
        (np.array([0, 5, 377, 3, 378, 39]), np.array([1, 88, 2, 29, 89, 0]),
         np.array([4.0, 2.0, 5.0, 1.0, 3.0, 4.5])), known))  # unknown item, user, both
    frame = (indexed_frame(spark, users, items, ratings).withColumn("test", F.lit(False))
             .unionByName(indexed_frame(spark, *test).withColumn("test", F.lit(True))))
    params = ALSParams(rank=3, reg=0.2, iterations=2, num_user_blocks=2, num_item_blocks=3,
                       broadcast_mb=budget)
    parts = partition(frame, params, held_out=True)
    try:
        done = fit(parts, params, str(tmp_path), clip=clip)
        got = Fitted(spark, done, 300, 30, 3)
    finally:
        parts.unpersist()
    known_u = np.where(test[0] < 300, test[0], -1)
    known_i = np.where(test[1] < 30, test[1], -1)
    pred = predict(known_u, known_i, got.users, got.items, got.mu)
    if clip is not None:
        pred = np.clip(pred, *clip)
    err = test[2] - pred
    entry = done.history[-1]
    assert entry["test_rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-12)
    assert entry["test_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)


N_RATINGS, HEAVY, N_ITEMS = 1_000_000, 200_000, 200_000


def skewed_ratings(seed: int = 0) -> pd.DataFrame:
    """User 0 rates 200K distinct items; 20K other users rate 40 items each (1M in all)."""
    rng = np.random.default_rng(seed)
    others = N_RATINGS - HEAVY
    users = np.concatenate([np.zeros(HEAVY, np.int32),
                            np.repeat(np.arange(1, others // 40 + 1, dtype=np.int32), 40)])
    items = np.concatenate([rng.permutation(N_ITEMS).astype(np.int32),
                            rng.integers(0, N_ITEMS, others, dtype=np.int32)])
    return pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64),
                         "rating": rng.integers(1, 11, N_RATINGS) / 2.0})


def test_skewed_user_trains_within_the_block_memory_bound(spark, tmp_path):
    pdf = skewed_ratings()
    assert len(pdf) == N_RATINGS and (pdf.user == 0).sum() == HEAVY
    params = ALSParams(rank=4, reg=0.1, iterations=2, num_user_blocks=4, num_item_blocks=4,
                       block_memory_mb=8)
    parts = partition(spark.createDataFrame(pdf), params)
    try:
        fitted = fit(parts, params, str(tmp_path), probe=True)
    finally:
        parts.unpersist()
    assert np.isfinite(fitted.history[-1]["objective"]) and fitted.history[-1]["train_rmse"] < 2
    blocks = [(r["ratings"], r["rows"], r["peak"]) for it in (1, 2) for side in ("user", "item")
              for r in read_solution(spark, f"{tmp_path}/iter-{it:04d}/{side}")
              .filter(f"kind = {STATS}").collect()]
    assert len(blocks) == 2 * (4 + 4)  # every block of every half-step was measured
    assert sum(n for n, _, _ in blocks) == 2 * 2 * N_RATINGS
    for n, rows, peak in blocks:
        assert 0 < peak <= block_memory_bound(n, rows, params.rank, params.block_memory_mb), \
            (n, rows, peak)
    heavy = max(blocks, key=lambda b: b[0])
    assert heavy[0] >= HEAVY  # the heavy user's block was among them
    print(f"heaviest block: {heavy[0]} ratings, {heavy[1]} rows, peak {heavy[2] / 2**20:.1f} "
          f"MiB <= bound {block_memory_bound(heavy[0], heavy[1], 4, 8) / 2**20:.1f} MiB; "
          f"max peak of all blocks {max(b[2] for b in blocks) / 2**20:.1f} MiB")
