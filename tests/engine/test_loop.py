"""The distributed ALS loop against the pure-NumPy reference and other oracles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfspark.config import ALSParams
from mfspark.core import reference
from mfspark.core.state import init_factors
from mfspark.core.normal import block_memory_bound
from mfspark.engine.halfstep import memory_probe
from mfspark.engine.loop import fit, partition

from conftest import fit_spark, indexed_frame, random_ratings, rel_err


@pytest.mark.parametrize("reg_scale,reg", [("none", 2.0), ("count", 0.1)])
@pytest.mark.parametrize("iterations", [1, 5])
def test_spark_equals_numpy_reference(spark, tmp_path, reg_scale, reg, iterations):
    users, items, ratings = random_ratings(40, 25, 0.3, seed=11)
    params = ALSParams(rank=4, reg=reg, reg_scale=reg_scale, iterations=iterations,
                       num_user_blocks=3, num_item_blocks=2)
    V0 = init_factors(25, 4, seed=5)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path), V0)
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
        parts = partition(frame, np.bincount(users), np.bincount(items), params)
        try:
            fits[blocks] = fit(parts, params, str(tmp_path / str(blocks)))
        finally:
            parts.unpersist()
    for blocks in (3, 8):
        for side in ("users", "items"):
            a, b = getattr(fits[1], side), getattr(fits[blocks], side)
            np.testing.assert_allclose(b.factors, a.factors, rtol=0, atol=1e-9)
            np.testing.assert_allclose(b.bias, a.bias, rtol=0, atol=1e-9)
        assert [h["objective"] for h in fits[blocks].history] == pytest.approx(
            [h["objective"] for h in fits[1].history], rel=1e-12)


N_RATINGS, HEAVY, N_ITEMS = 1_000_000, 200_000, 200_000


def skewed_ratings(seed: int = 0) -> pd.DataFrame:
    """User 0 rates 200K distinct items; 20K other users rate 40 items each (1M in all)."""
    rng = np.random.default_rng(seed)
    others = N_RATINGS - HEAVY
    users = np.concatenate([np.zeros(HEAVY, np.int32),
                            np.repeat(np.arange(1, others // 40 + 1, dtype=np.int32), 40)])
    items = np.concatenate([rng.permutation(N_ITEMS).astype(np.int32),
                            rng.integers(0, N_ITEMS, others, dtype=np.int32)])
    return pd.DataFrame({"user_idx": users, "item_idx": items,
                         "rating": rng.integers(1, 11, N_RATINGS) / 2.0})


def test_skewed_user_trains_within_the_block_memory_bound(spark, tmp_path):
    pdf = skewed_ratings()
    assert len(pdf) == N_RATINGS and (pdf.user_idx == 0).sum() == HEAVY
    params = ALSParams(rank=4, reg=0.1, iterations=2, num_user_blocks=4, num_item_blocks=4,
                       block_memory_mb=8)
    user_counts = np.bincount(pdf.user_idx)
    item_counts = np.bincount(pdf.item_idx, minlength=N_ITEMS)
    parts = partition(spark.createDataFrame(pdf), user_counts, item_counts, params)
    probe = memory_probe(spark)
    try:
        fitted = fit(parts, params, str(tmp_path), probe=probe)
    finally:
        parts.unpersist()
    assert np.isfinite(fitted.users.factors).all() and fitted.history[-1]["train_rmse"] < 2
    blocks = probe.value
    assert len(blocks) == 2 * (4 + 4)  # every block of every half-step was measured
    assert sum(n for n, _, _ in blocks) == 2 * 2 * N_RATINGS
    for n, rows, peak in blocks:
        assert peak <= block_memory_bound(n, rows, params.rank, params.block_memory_mb), \
            (n, rows, peak)
    heavy = max(blocks, key=lambda b: b[0])
    assert heavy[0] >= HEAVY  # the heavy user's block was among them
    print(f"heaviest block: {heavy[0]} ratings, {heavy[1]} rows, peak {heavy[2] / 2**20:.1f} "
          f"MiB <= bound {block_memory_bound(heavy[0], heavy[1], 4, 8) / 2**20:.1f} MiB; "
          f"max peak of all blocks {max(b[2] for b in blocks) / 2**20:.1f} MiB")
