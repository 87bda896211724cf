"""Factor Parquet: a half-step's files give back its factors as one row per key, its terms
of J, and a failed block (non-finite factors) is named by iteration, side and block."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.config import ALSParams
from mfspark.engine.loop import fit, partition
from mfspark.io.factors import (FACTORS, STATS, NonFiniteFactorsError, factor_rows,
                                read_solution, read_terms)

from conftest import indexed_frame, random_ratings


def test_factor_files_give_one_row_per_key_and_the_recorded_terms(spark, tmp_path):
    users, items, ratings = random_ratings(30, 20, 0.3, seed=1)
    params = ALSParams(rank=3, reg=0.2, iterations=2, num_user_blocks=3, num_item_blocks=2)
    parts = partition(indexed_frame(spark, users, items, ratings), params)
    try:
        done = fit(parts, params, str(tmp_path))
    finally:
        parts.unpersist()
    path = done.path("user")
    rows = factor_rows(spark, path, rank=3).toPandas()
    assert sorted(rows["key"]) == list(range(30))
    assert all(len(f) == 3 for f in rows["features"]) and np.isfinite(rows["bias"]).all()
    files = read_solution(spark, path)
    assert files.filter(f"kind = {FACTORS}").select("block").distinct().count() == 3
    assert files.filter(f"kind = {STATS}").count() == 3  # one per block
    terms = read_terms(spark, path)
    assert terms.penalty == pytest.approx(done.penalty["user"], rel=1e-12)
    entry = done.history[-1]
    after_user = entry["objective_after_user_step"]
    assert after_user == pytest.approx(
        terms.sse + terms.penalty + read_terms(spark, f"{tmp_path}/iter-0001/item").penalty,
        rel=1e-12)
    from mfspark.io.factors import FactorLayoutError

    with pytest.raises(Exception, match="holds rank 3 factors, expected 4"):
        factor_rows(spark, path, rank=4).collect()
    assert issubclass(FactorLayoutError, ValueError)


def test_non_finite_factors_name_iteration_side_and_block(spark, tmp_path):
    users, items, ratings = random_ratings(20, 10, 0.4, seed=2)
    ratings = ratings.astype(np.float64)
    ratings[items == 3] = np.inf  # the engine is handed what validation would refuse
    params = ALSParams(rank=2, iterations=2, num_user_blocks=2, num_item_blocks=2)
    parts = partition(indexed_frame(spark, users, items, ratings), params)
    try:
        with pytest.raises(NonFiniteFactorsError,
                           match=r"iteration 1, user step: NaN or infinite values in user "
                                 r"block \d+; lower the rank or raise the regularization"):
            fit(parts, params, str(tmp_path))
    finally:
        parts.unpersist()
