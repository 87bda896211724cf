"""The same ALS in one process, on NumPy arrays: the "no distribution" floor.

It runs :func:`mfspark.solve.solve_block` on all rows at once for each half-step, so it
shares the distributed job's math exactly and differs only by having no Spark around it.
The benchmark times it to show what the distribution costs.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mfspark.als import ALSResult, objective
from mfspark.config import ALSParams
from mfspark.halfstep import Side, sort_order
from mfspark.solve import init_factors, solve_block


def _solve_side(rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray, fixed: Side,
                mu: float, params: ALSParams, counts: np.ndarray) -> tuple[Side, float]:
    sol = solve_block(rows, cols, ratings, fixed.factors, fixed.bias, mu, params.reg,
                      params.reg_scale)
    side = Side.zeros(counts, params.rank)
    side.factors[sol.rows], side.bias[sol.rows] = sol.factors, sol.bias
    return side, float(sol.sse.sum())


def fit_in_memory(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                  n_items: int, params: ALSParams,
                  initial_items: np.ndarray | None = None) -> ALSResult:
    """ALS on in-memory index arrays; same updates, history and result type as
    :func:`mfspark.als.fit`."""
    ratings = np.asarray(ratings, dtype=np.float64)
    mu = float(ratings.mean())
    user_counts = np.bincount(users, minlength=n_users)
    item_counts = np.bincount(items, minlength=n_items)
    start = initial_items if initial_items is not None else init_factors(
        n_items, params.rank, params.seed)
    item_side = Side(np.array(start, dtype=np.float64), np.zeros(n_items), item_counts)
    result = ALSResult(mu=mu, users=Side.zeros(user_counts, params.rank), items=item_side)
    # each side's copy sorted once, as the distributed job partitions once
    by_user = sort_order(users, items, ratings)
    u_rows, u_cols, u_ratings = users[by_user], items[by_user], ratings[by_user]
    by_item = sort_order(items, users, ratings)
    i_rows, i_cols, i_ratings = items[by_item], users[by_item], ratings[by_item]
    for it in range(1, params.iterations + 1):
        began = time.perf_counter()
        user_side, sse_user = _solve_side(u_rows, u_cols, u_ratings, result.items, mu, params,
                                          user_counts)
        item_side, sse = _solve_side(i_rows, i_cols, i_ratings, user_side, mu, params,
                                     item_counts)
        result.history.append({
            "iteration": it,
            "objective_after_user_step": objective(sse_user, user_side, result.items, params),
            "objective": objective(sse, user_side, item_side, params),
            "train_rmse": math.sqrt(sse / len(ratings)),
            "seconds": time.perf_counter() - began})
        result.users, result.items = user_side, item_side
    return result
