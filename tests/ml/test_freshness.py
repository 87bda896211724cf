"""Fold-in and the estimator's warm start (mfspark.ml.freshness) against exact NumPy solves:
a folded-in row is the ridge (or implicit, or nonnegative) solution on its ratings given the
model's fixed side, and folding in a converged model's rows gives them back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mfspark import ALSModel
from mfspark.config import ALSParams
from mfspark.core import reference
from mfspark.core.nnls import kkt_violation
from mfspark.core.state import seeded_factors
from mfspark.data.prepare import prepare
from mfspark.engine.loop import fit
from mfspark.ml.freshness import (FoldInError, WarmStartError, fold_in, initial_from_model)

from conftest import id_frame, random_ratings

RANK = 3
OTHER = {"user": "item", "item": "user"}


def make_model(spark, ids, factors, bias, mu, **params):
    """An ALSModel with the given factors per side (``ids``, ``factors``, ``biases``: dicts
    by side) and the training parameters ``params`` in its metadata."""
    p = ALSParams(rank=factors["user"].shape[1], **params)
    metadata = {**dataclasses.asdict(p), "mu": mu, "history": []}
    return ALSModel(*(id_frame(spark, ids[s], factors[s], bias[s]) for s in ("user", "item")),
                    mu, metadata)


def by_id(frame):
    """A factor DataFrame as ``{id: (features, bias)}``."""
    return {r["id"]: (np.array(r["features"]), r["bias"]) for r in frame.collect()}


def random_model(spark, id_kind, rng, n_users=8, n_items=12, **params):
    raw = {"user": np.arange(100, 100 + n_users), "item": np.arange(500, 500 + n_items)}
    ids = {s: (v.tolist() if id_kind == "long" else [f"{s[0]}{x}" for x in v])
           for s, v in raw.items()}
    factors = {"user": rng.standard_normal((n_users, RANK)) / 2,
               "item": rng.standard_normal((n_items, RANK)) / 2}
    biases = {s: rng.standard_normal(len(ids[s])) / 4 for s in ids}
    return make_model(spark, ids, factors, biases, 3.0, **params), ids, factors, biases


def ridge_solution(X, y, lam):
    """The exact minimizer of ``||y - X w||^2 + lam ||w||^2``, by NumPy."""
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


@pytest.mark.parametrize("side,id_kind,reg_scale,reg", [
    ("user", "long", "count", 0.1), ("item", "string", "none", 2.0),
    ("user", "string", "count", 0.3)])
def test_fold_in_equals_exact_solve(spark, side, id_kind, reg_scale, reg):
    rng = np.random.default_rng(7)
    model, ids, factors, biases = random_model(spark, id_kind, rng, reg=reg,
                                               reg_scale=reg_scale)
    other = OTHER[side]
    name = (lambda x: x) if id_kind == "long" else (lambda x: f"{side[0]}{x}")
    unknown = [900, 901] if id_kind == "long" else ["zz900", "zz901"]
    known_rows = [ids[side][1], ids[side][4]]                  # existing rows: updated
    new_rows = [name(9000), name(9001)]                        # added
    triples = []
    for r in known_rows + new_rows:
        picked = rng.choice(len(ids[other]), size=5, replace=False)
        triples += [(r, ids[other][j], float(rng.integers(1, 11) / 2)) for j in picked]
        triples.append((r, unknown[0], 4.0))           # ignored
    triples.append((name(9002), unknown[1], 1.0))      # only unknown items: skipped
    rows, cols, values = (list(t) for t in zip(*triples))
    columns = {side: rows, other: cols}
    df = spark.createDataFrame(list(zip(columns["user"], columns["item"], values)),
                               f"user {'long' if id_kind == 'long' else 'string'}, item "
                               f"{'long' if id_kind == 'long' else 'string'}, rating double")
    folded, summary = fold_in(model, df, side)

    assert summary == {**summary, "side": side, "ratings": len(values),
                       "ratings_used": 20, "ratings_ignored": 5, "ids": 5, "solved": 4,
                       "new": 2, "updated": 2, "skipped": 1}
    got = by_id(folded.userFactors if side == "user" else folded.itemFactors)
    position = {i: k for k, i in enumerate(ids[other])}
    for r in known_rows + new_rows:
        mine = [(position[c], v) for rr, c, v in zip(rows, cols, values)
                if rr == r and c in position]
        X = np.column_stack([factors[other][[j for j, _ in mine]], np.ones(len(mine))])
        y = np.array([v for _, v in mine]) - 3.0 - biases[other][[j for j, _ in mine]]
        w = ridge_solution(X, y, reg * len(mine) if reg_scale == "count" else reg)
        np.testing.assert_allclose(got[r][0], w[:RANK], rtol=0, atol=1e-10)
        assert got[r][1] == pytest.approx(w[RANK], abs=1e-10)
    assert name(9002) not in got
    for k, r in enumerate(ids[side]):  # rows not folded in are unchanged, bit for bit
        if r not in known_rows:
            assert np.array_equal(got[r][0], factors[side][k]) and got[r][1] == biases[side][k]
    assert len(got) == len(ids[side]) + 2
    fixed = by_id(folded.itemFactors if side == "user" else folded.userFactors)
    assert all(np.array_equal(fixed[i][0], factors[other][k]) for k, i in enumerate(ids[other]))
    assert folded.metadata["fold_ins"][-1] == summary
    assert folded.getUserCol() == model.getUserCol()


@pytest.mark.parametrize("biases", [False, True])
def test_implicit_fold_in_equals_dense_oracle(spark, biases):
    """Implicit feedback: every unobserved item of the whole model counts (``Y^T Y`` of all
    its items), as in the dense oracle's half-step."""
    rng = np.random.default_rng(3)
    model, ids, factors, bias = random_model(spark, "long", rng, n_items=15,
                                             implicit_prefs=True, alpha=2.0, reg=0.05,
                                             biases=biases)
    users, items, ratings = random_ratings(4, 15, 0.3, seed=5)
    ratings = ratings - 1.0  # negative, zero and positive values
    df = spark.createDataFrame([(7000 + int(u), ids["item"][i], float(r))
                                for u, i, r in zip(users, items, ratings)],
                               "user long, item long, rating double")
    folded, summary = fold_in(model.setUserCol("user"), df, "user")
    P, C = reference.implicit_dense(users, items, ratings, 4, 15, 2.0)
    U, b = reference._implicit_half_step(P, C, factors["item"], 0.05, "count",
                                         bias["item"] if biases else None)
    got = by_id(folded.userFactors)
    for u in range(4):
        np.testing.assert_allclose(got[7000 + u][0], U[u], rtol=0, atol=1e-10)
        assert got[7000 + u][1] == pytest.approx(b[u], abs=1e-10)
    assert summary["new"] == 4 and summary["ratings_ignored"] == 0


def test_nonnegative_fold_in_satisfies_kkt(spark):
    rng = np.random.default_rng(11)
    model, ids, factors, biases = random_model(spark, "long", rng, nonnegative=True, reg=0.1)
    picked = rng.choice(12, size=8, replace=False)
    values = rng.integers(1, 11, 8) / 2
    df = spark.createDataFrame([(42, ids["item"][j], float(v)) for j, v in zip(picked, values)],
                               "user long, item long, rating double")
    folded, _ = fold_in(model, df, "user")
    u, b = by_id(folded.userFactors)[42]
    X = np.column_stack([factors["item"][picked], np.ones(8)])
    gram = X.T @ X + 0.1 * 8 * np.eye(RANK + 1)
    rhs = X.T @ (values - 3.0 - biases["item"][picked])
    w = np.r_[u, b]
    assert np.all(u >= 0) and np.any(u == 0)  # the bound is active: a real NNLS solve
    free = np.r_[np.zeros(RANK, bool), True]
    assert kkt_violation(gram[None], rhs[None], w[None], free)[0] < 1e-10


def test_fold_in_of_a_converged_model_is_a_fixed_point(spark):
    """The half-step is a fixed point of a converged fit: folding in its items (solved last,
    against the final users) gives them back exactly, its users up to the convergence."""
    users, items, ratings = random_ratings(25, 15, 0.3, seed=2)
    ref = reference.als(users, items, ratings, 25, 15, seeded_factors(np.arange(15), 2, 0),
                        0.1, "count", 300)
    assert abs(ref.objectives[-2] - ref.objectives[-1]) <= 1e-13 * ref.objectives[-1]
    model = make_model(spark, {"user": list(range(25)), "item": list(range(15))},
                       {"user": ref.user_factors, "item": ref.item_factors},
                       {"user": ref.user_bias, "item": ref.item_bias}, ref.mu, reg=0.1)
    df = spark.createDataFrame([(int(u), int(i), float(r)) for u, i, r in
                                zip(users, items, ratings)], "user long, item long, rating double")
    for side, factors, bias, tol in (("item", ref.item_factors, ref.item_bias, 1e-10),
                                     ("user", ref.user_factors, ref.user_bias, 1e-8)):
        folded, summary = fold_in(model, df, side)
        got = by_id(folded.userFactors if side == "user" else folded.itemFactors)
        assert summary["updated"] == len(factors) and summary["new"] == 0
        np.testing.assert_allclose(np.stack([got[k][0] for k in range(len(factors))]),
                                   factors, rtol=0, atol=tol)
        np.testing.assert_allclose([got[k][1] for k in range(len(factors))], bias, rtol=0,
                                   atol=tol)


def test_fold_in_refuses_bad_arguments(spark):
    model, *_ = random_model(spark, "long", np.random.default_rng(0))
    df = spark.createDataFrame([(1, 500, 3.0)], "user long, item long, rating double")
    with pytest.raises(FoldInError, match="'user' or 'item'"):
        fold_in(model, df, "users")
    with pytest.raises(FoldInError, match=r"\['stars'\] not found"):
        fold_in(model, df, "user", rating_col="stars")
    strings = spark.createDataFrame([("alice", 500, 3.0)], "user string, item long, rating double")
    with pytest.raises(FoldInError, match="cannot hold"):
        fold_in(model, strings, "user")


def test_estimator_warm_start_matches_ids_and_equals_one_oracle_iteration(spark, tmp_path):
    """``initial_from_model`` (what ``ALS.setInitialModel`` passes to the fit) with string
    IDs: the model's items are matched by ID, a new item starts seeded, a vanished one is
    left out; one iteration then equals NumPy's from that start."""
    rng = np.random.default_rng(5)
    users, items, ratings = random_ratings(20, 10, 0.4, seed=8)
    item_ids = [f"m{i:02d}" for i in range(10)]
    # the model knows items m00..m08 and an item the new data lacks; m09 is new
    model_items = item_ids[:9] + ["gone"]
    V, c = rng.standard_normal((10, RANK)) / 2, rng.standard_normal(10) / 4
    model = make_model(spark, {"user": ["x"], "item": model_items},
                       {"user": np.zeros((1, RANK)), "item": V}, {"user": [0.0], "item": c},
                       3.0, reg=0.1)
    df = spark.createDataFrame([(f"u{u:02d}", item_ids[i], float(r))
                                for u, i, r in zip(users, items, ratings)],
                               "user string, item string, rating double")
    params = ALSParams(rank=RANK, reg=0.1, iterations=1, num_user_blocks=2, num_item_blocks=2)
    prepared = prepare(df, params)
    try:
        done = fit(prepared.ratings, params, str(tmp_path),
                   initial=initial_from_model(model, prepared, params))
        got_items = by_id(prepared.factors(spark, done, "item"))
        got_users = by_id(prepared.factors(spark, done, "user"))
    finally:
        prepared.unpersist()
    start_V = np.vstack([V[:9], seeded_factors(np.array([9]), RANK, 0)])  # key of m09 is 9
    start_c = np.r_[c[:9], 0.0]
    U, b = reference._half_step(users, items, ratings, 20, start_V, start_c, ratings.mean(),
                                0.1, "count")
    V1, c1 = reference._half_step(items, users, ratings, 10, U, b, ratings.mean(), 0.1,
                                  "count")
    for u in range(20):
        np.testing.assert_allclose(got_users[f"u{u:02d}"][0], U[u], rtol=0, atol=1e-10)
    for i in range(10):
        np.testing.assert_allclose(got_items[item_ids[i]][0], V1[i], rtol=0, atol=1e-10)
        assert got_items[item_ids[i]][1] == pytest.approx(c1[i], abs=1e-10)
    with pytest.raises(WarmStartError, match="rank is 3 there and 4 here"):
        initial_from_model(model, prepared, dataclasses.replace(params, rank=4))
