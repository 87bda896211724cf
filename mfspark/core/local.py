"""The same ALS in one process, on NumPy arrays: the "no distribution" floor.

Each half-step is one :func:`mfspark.core.block.solve_block` call on all rows at once, so it
shares the distributed job's math exactly and differs only by having no Spark around it.
The benchmark times it to show what the distribution costs.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mfspark.core.block import BlockSolution, solve_block
from mfspark.core.objective import Objective
from mfspark.core.state import FitResult, Side, init_factors


def _side(sol: BlockSolution, n: int, rank: int) -> Side:
    side = Side.zeros(np.zeros(n, dtype=np.int64), rank)
    side.factors[sol.rows], side.bias[sol.rows] = sol.factors, sol.bias
    side.counts[sol.rows] = sol.counts
    return side


def fit_in_memory(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
                  n_items: int, objective: Objective, rank: int, iterations: int,
                  seed: int = 0, initial_items: np.ndarray | None = None) -> FitResult:
    """Explicit-feedback ALS on in-memory index arrays: users given the items, then items
    given the users, from seeded (or the given) item factors; the same updates, history and
    objective as the distributed fit."""
    if objective.implicit:
        raise ValueError("the in-process fit covers explicit ratings only")
    ratings = np.asarray(ratings, dtype=np.float64)
    # u . v >= 0 on a fixed mu could never predict below the mean: that model has no mu
    mu = 0.0 if objective.nonnegative and not objective.biases else float(ratings.mean())
    start = initial_items if initial_items is not None else init_factors(n_items, rank, seed)
    result = FitResult(mu=mu, users=Side.zeros(np.bincount(users, minlength=n_users), rank),
                       items=Side(np.array(start, dtype=np.float64), np.zeros(n_items),
                                  np.bincount(items, minlength=n_items)))
    # the seeded items' penalty: what J adds before the first item step
    item_penalty = float(objective.penalty(result.items.factors, result.items.bias,
                                           result.items.counts).sum())
    # each side's copy sorted once, as the distributed job partitions once
    by_user = np.lexsort((ratings, items, users))
    by_item = np.lexsort((ratings, users, items))
    for it in range(1, iterations + 1):
        began = time.perf_counter()
        solved = solve_block(users[by_user], items[by_user], ratings[by_user],
                             result.items.factors, result.items.bias, mu, objective)
        user_side = _side(solved, n_users, rank)
        user_penalty = float(solved.penalty.sum())
        after_user = float(solved.sse.sum()) + user_penalty + item_penalty
        solved = solve_block(items[by_item], users[by_item], ratings[by_item],
                             user_side.factors, user_side.bias, mu, objective)
        item_penalty = float(solved.penalty.sum())
        sse = float(solved.sse.sum())
        result.history.append({
            "iteration": it, "objective_after_user_step": after_user,
            "objective": sse + user_penalty + item_penalty,
            "train_rmse": math.sqrt(sse / len(ratings)),
            "seconds": time.perf_counter() - began})
        result.users, result.items = user_side, _side(solved, n_items, rank)
    return result


def predict(users: np.ndarray, items: np.ndarray, user_side: Side, item_side: Side,
            mu: float) -> np.ndarray:
    """``mu + b_i + c_j + u_i . v_j`` for index arrays where -1 marks an unknown ID: an
    unknown side contributes nothing (docs/model.md's fallback)."""
    known_u, known_i = users >= 0, items >= 0
    u, i = np.where(known_u, users, 0), np.where(known_i, items, 0)
    dot = np.einsum("nk,nk->n", user_side.factors[u], item_side.factors[i])
    return (mu + np.where(known_u, user_side.bias[u], 0.0)
            + np.where(known_i, item_side.bias[i], 0.0) + np.where(known_u & known_i, dot, 0.0))
