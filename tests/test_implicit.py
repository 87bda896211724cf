"""Implicit feedback (mfspark.implicit) and nonnegative factors, block solver and Spark loop,
against the dense pure-NumPy oracle of mfspark.reference."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark import reference
from mfspark.config import ALSParams, ConfigError
from mfspark.implicit import confidence_terms
from mfspark.nnls import kkt_violation
from mfspark.solve import SolveError, init_factors
from mfspark.variants import solve_variant_block

from conftest import random_ratings
from test_als import fit_spark, rel_err


def signed_ratings(n_users, n_items, density, seed):
    """Ratings in {-1, -0.5, 0, 0.5, ..., 4}: negative, zero and positive values."""
    users, items, ratings = random_ratings(n_users, n_items, density, seed)
    return users, items, ratings - 1.0


def test_confidence_and_preference_follow_mllib():
    extra, target = confidence_terms(np.array([-2.0, 0.0, 0.5, 3.0]), alpha=2.0)
    np.testing.assert_array_equal(extra, [4.0, 0.0, 1.0, 6.0])  # c - 1 = alpha |r|
    np.testing.assert_array_equal(target, [0.0, 0.0, 2.0, 7.0])  # c p, p = [r > 0]


@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize("reg_scale,lam", [("count", 0.1), ("none", 1.5)])
def test_block_equals_dense_solve(reg_scale, lam, biases, row_loop):
    """Each row's solution and data term equal the dense solve over every column; with
    biases, [x_u; b_u] against [y_i, 1] and the targets p - c_i of all columns."""
    users, items, ratings = signed_ratings(30, 20, 0.25, seed=0)
    Y = init_factors(20, 4, seed=1)
    c = np.random.default_rng(2).normal(0.0, 0.3, 20) if biases else np.zeros(20)
    sol = solve_variant_block(users, items, ratings, Y, c, 0.7, lam, reg_scale,
                              max_gather=40, biases=biases, alpha=3.0)
    P, C = reference.implicit_dense(users, items, ratings, 30, 20, 3.0)
    X, b = reference._implicit_half_step(P, C, Y, lam, reg_scale, c if biases else None)
    np.testing.assert_allclose(sol.factors, X[sol.rows], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.bias, b[sol.rows], rtol=1e-9, atol=1e-12)
    assert np.any(sol.bias != 0) if biases else np.all(sol.bias == 0)
    loss = np.sum(C * (P - X @ Y.T - b[:, None] - c[None, :]) ** 2, axis=1)
    np.testing.assert_allclose(sol.sse, loss[sol.rows], rtol=1e-9)  # mu (0.7) is ignored


@pytest.mark.parametrize("biases", [False, True])
def test_nonnegative_implicit_block_satisfies_kkt(biases, row_loop):
    users, items, ratings = signed_ratings(30, 20, 0.25, seed=2)
    Y = init_factors(20, 5, seed=3)
    # item biases around 0.5: some rows' free biases come out negative
    c = np.random.default_rng(4).normal(0.5, 0.3, 20) if biases else np.zeros(20)
    lam, alpha = 0.1, 2.0
    sol = solve_variant_block(users, items, ratings, Y, c, 0.0, lam, "count",
                              biases=biases, nonnegative=True, alpha=alpha)
    assert np.all(sol.factors >= 0) and np.any(sol.factors == 0)
    if biases:  # the bias stays free
        assert np.any(sol.bias < 0)
    P, C = reference.implicit_dense(users, items, ratings, 30, 20, alpha)
    Yt = np.hstack([Y, np.ones((20, 1))]) if biases else Y
    free = np.arange(Yt.shape[1]) == 5
    for n, u in enumerate(sol.rows):  # dense system of the row, every column
        A = (Yt.T * C[u]) @ Yt + lam * np.sum(P[u] > 0) * np.eye(Yt.shape[1])
        b = (Yt.T * C[u]) @ (P[u] - c)
        w = np.r_[sol.factors[n], sol.bias[n]] if biases else sol.factors[n]
        assert kkt_violation(A[None], b[None], w[None], free=free)[0] < 1e-9


@pytest.mark.parametrize("values,message", [
    ({"alpha": -1.0}, "als.alpha must be a finite number >= 0, got -1.0"),
    ({"alpha": float("nan")}, "als.alpha must be a finite number >= 0"),
    ({"implicit_prefs": "yes"}, "als.implicit_prefs must be true or false, got 'yes'"),
    ({"nonnegative": 1}, "als.nonnegative must be true or false, got 1"),
    ({"implicit_prefs": True, "rank": 0}, "als.rank must be >= 1"),
    ({"cg_steps": 3}, "als.cg_steps must be 0 unless als.implicit_prefs is true"),
    ({"implicit_prefs": True, "nonnegative": True, "cg_steps": 3},
     "als.cg_steps must be 0 unless als.implicit_prefs is true and als.nonnegative false"),
    ({"implicit_prefs": True, "cg_steps": -1}, "als.cg_steps must be an integer >= 0"),
])
def test_bad_settings_are_named(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ALSParams(**values)


def test_biases_default_by_mode():
    assert ALSParams().fit_biases and not ALSParams(implicit_prefs=True).fit_biases
    assert not ALSParams(biases=False).fit_biases
    assert ALSParams(implicit_prefs=True, biases=True).fit_biases  # asked for: fitted


@pytest.mark.parametrize("biases", [False, True])
def test_spark_implicit_equals_dense_reference(spark, tmp_path, biases):
    users, items, ratings = signed_ratings(40, 25, 0.3, seed=11)
    params = ALSParams(rank=4, reg=0.05, iterations=3, implicit_prefs=True, alpha=2.0,
                       num_user_blocks=3, num_item_blocks=2, biases=biases)
    U0 = init_factors(40, 4, seed=5)  # implicit: the users start seeded, items solved first
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path), U0)
    ref = reference.implicit_als(users, items, ratings, 40, 25, U0, 0.05, 2.0, "count", 3,
                                 biases=biases)
    assert got.mu == 0.0
    assert rel_err(got.users.factors, ref.user_factors) <= 1e-8
    assert rel_err(got.items.factors, ref.item_factors) <= 1e-8
    if biases:
        assert rel_err(got.users.bias, ref.user_bias) <= 1e-8
        assert rel_err(got.items.bias, ref.item_bias) <= 1e-8
        assert np.abs(got.items.bias).max() > 0.01
    else:
        assert np.all(got.users.bias == 0) and np.all(got.items.bias == 0)
    np.testing.assert_allclose([h["objective"] for h in got.history], ref.objectives,
                               rtol=1e-9)


@pytest.mark.parametrize("implicit,nonnegative,biases", [
    (True, False, None), (True, True, None), (False, True, None), (True, False, True),
    (True, True, True)])
def test_spark_objective_never_increases(spark, tmp_path, implicit, nonnegative, biases):
    users, items, ratings = (signed_ratings if implicit else random_ratings)(50, 30, 0.2, 3)
    params = ALSParams(rank=5, reg=0.05, iterations=6, implicit_prefs=implicit, alpha=4.0,
                       nonnegative=nonnegative, num_user_blocks=2, num_item_blocks=2,
                       biases=biases)
    first, seeded = ("item", "user") if implicit else ("user", "item")  # MLlib's implicit order
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path),
                    np.abs(init_factors(50 if seeded == "user" else 30, 5, 1)))
    trail = []
    for h in got.history:
        trail += [h[f"objective_after_{first}_step"], h["objective"]]
    assert np.all(np.diff(trail) <= 1e-9 * np.abs(np.array(trail[:-1]))), trail
    assert trail[-1] < trail[0]
    if nonnegative:
        assert np.all(got.users.factors >= 0) and np.all(got.items.factors >= 0)
        assert np.any(got.users.factors == 0) and np.any(got.items.factors == 0)
    if implicit:
        P, C = reference.implicit_dense(users, items, ratings, 50, 30, 4.0)
        assert trail[-1] == pytest.approx(reference.implicit_objective(
            P, C, got.users.factors, got.items.factors, 0.05, "count", got.users.bias,
            got.items.bias), rel=1e-9)
    if biases:
        assert np.abs(got.items.bias).max() > 0.01


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


def test_singular_implicit_row_is_named(row_loop):
    # alpha = 0 and no positive value: lam_u = 0, and Y^T Y of a rank-1 Y is singular
    Y = np.ones((3, 2))
    with pytest.raises(SolveError, match="not positive definite") as err:
        solve_variant_block(np.array([4, 4]), np.array([0, 1]), np.array([-1.0, 0.0]), Y,
                            np.zeros(3), 0.0, 0.1, "count", biases=False, alpha=0.0)
    if row_loop == "compiled":
        assert "row 4, 2 ratings" in str(err.value)


def test_gather_budget_smaller_than_a_row_gives_the_same_systems(row_loop):
    users, items, ratings = signed_ratings(12, 40, 0.6, seed=8)
    Y = init_factors(40, 3, seed=2)
    args = (users, items, ratings, Y, np.zeros(40), 0.0, 0.1, "count")
    big = solve_variant_block(*args, biases=False, alpha=2.0)
    tiny = solve_variant_block(*args, max_gather=7, biases=False, alpha=2.0)  # 2 ratings/slice
    np.testing.assert_allclose(tiny.factors, big.factors, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(tiny.sse, big.sse, rtol=1e-10)


def test_spark_nonnegative_without_biases_is_mllibs_model(spark, tmp_path):
    """u . v >= 0 on top of a fixed mu could never predict below the mean: without biases the
    nonnegative model is MLlib's u . v (mu = 0), and each stored side solves its NNLS."""
    users, items, ratings = random_ratings(30, 20, 0.3, seed=9)
    params = ALSParams(rank=3, reg=0.1, iterations=3, nonnegative=True, biases=False,
                       num_user_blocks=2, num_item_blocks=2)
    got = fit_spark(spark, users, items, ratings, params, str(tmp_path),
                    np.abs(init_factors(20, 3, 2)))
    assert got.mu == 0.0
    U, V = got.users.factors, got.items.factors
    for j in range(20):  # item step given the stored users: NNLS on ratings themselves
        sel = items == j
        X = U[users[sel]]
        A = X.T @ X + 0.1 * sel.sum() * np.eye(3)
        assert kkt_violation(A[None], (X.T @ ratings[sel])[None], V[j][None])[0] < 1e-9


@pytest.mark.parametrize("biases", [False, True])
def test_conjugate_gradient_block_decreases_each_row_and_converges(biases, row_loop):
    """cg_steps: a few steps from the previous factors (and biases) lower every row's
    quadratic (never raise it), the loss is that of the approximate solution, and K (+ 1)
    steps are the exact solve; the compiled loop and the NumPy stack give the same
    iterates."""
    users, items, ratings = signed_ratings(30, 20, 0.25, seed=5)
    Y, lam, alpha = init_factors(20, 4, seed=6), 0.1, 2.0
    c = np.random.default_rng(8).normal(0.0, 0.3, 20) if biases else np.zeros(20)
    Yt = np.hstack([Y, np.ones((20, 1))]) if biases else Y
    k1 = Yt.shape[1]
    previous = init_factors(30, k1, seed=7)
    P, C = reference.implicit_dense(users, items, ratings, 30, 20, alpha)
    args = (users, items, ratings, Y, c, 0.0, lam, "count")
    kw = dict(biases=biases, alpha=alpha)
    exact = solve_variant_block(*args, **kw)
    two = solve_variant_block(*args, **kw, cg_steps=2, previous=previous)
    full = solve_variant_block(*args, **kw, cg_steps=k1, previous=previous)
    unknowns = lambda s: np.column_stack([s.factors, s.bias]) if biases else s.factors  # noqa
    np.testing.assert_allclose(unknowns(full), unknowns(exact), rtol=1e-8, atol=1e-10)
    assert np.abs(unknowns(two) - unknowns(exact)).max() > 1e-4  # not the solution yet
    for n, u in enumerate(two.rows):
        A = (Yt.T * C[u]) @ Yt + lam * np.sum(P[u] > 0) * np.eye(k1)
        b = (Yt.T * C[u]) @ (P[u] - c)
        f = lambda x: 0.5 * x @ A @ x - b @ x  # noqa: E731
        assert f(unknowns(two)[n]) <= f(previous[u]) + 1e-12
        assert f(unknowns(full)[n]) <= f(unknowns(two)[n]) + 1e-12
        loss = np.sum(C[u] * (P[u] - c - Yt @ unknowns(two)[n]) ** 2)
        assert two.sse[n] == pytest.approx(loss, rel=1e-9)
    np.testing.assert_allclose(unknowns(two), reference_cg(users, items, ratings, Yt, c,
                                                           previous, lam, alpha, 2),
                               rtol=1e-9, atol=1e-12)


def reference_cg(users, items, ratings, Y, c, previous, lam, alpha, steps):
    """Textbook conjugate gradient, one dense row at a time (targets ``p - c``)."""
    P, C = reference.implicit_dense(users, items, ratings, len(previous), len(Y), alpha)
    out = np.array(previous, dtype=float)
    for u in range(len(previous)):
        A = (Y.T * C[u]) @ Y + lam * np.sum(P[u] > 0) * np.eye(Y.shape[1])
        x = out[u]
        r = (Y.T * C[u]) @ (P[u] - c) - A @ x
        p = r.copy()
        for _ in range(steps):
            a = (r @ r) / (p @ A @ p)
            x = x + a * p
            r_next = r - a * (A @ p)
            p = r_next + (r_next @ r_next) / (r @ r) * p
            r = r_next
        out[u] = x
    return out


@pytest.mark.parametrize("biases", [False, True])
def test_spark_conjugate_gradient_never_increases_the_objective(spark, tmp_path, biases):
    users, items, ratings = signed_ratings(50, 30, 0.2, 3)
    common = dict(rank=5, reg=0.05, iterations=5, implicit_prefs=True, alpha=4.0,
                  num_user_blocks=2, num_item_blocks=2, biases=biases)
    U0 = init_factors(50, 5, 1)
    cg = fit_spark(spark, users, items, ratings, ALSParams(**common, cg_steps=2),
                   str(tmp_path / "cg"), U0)
    trail = []
    for h in cg.history:
        trail += [h["objective_after_item_step"], h["objective"]]
    assert np.all(np.diff(trail) <= 1e-9 * np.abs(np.array(trail[:-1]))), trail
    P, C = reference.implicit_dense(users, items, ratings, 50, 30, 4.0)
    assert trail[-1] == pytest.approx(reference.implicit_objective(
        P, C, cg.users.factors, cg.items.factors, 0.05, "count", cg.users.bias,
        cg.items.bias), rel=1e-9)
    exact = fit_spark(spark, users, items, ratings, ALSParams(**common), str(tmp_path / "x"), U0)
    many = fit_spark(spark, users, items, ratings,
                     ALSParams(**common, cg_steps=6 if biases else 5),
                     str(tmp_path / "many"), U0)  # K (+ 1 bias) steps: the exact solve
    np.testing.assert_allclose(many.users.factors, exact.users.factors, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(many.items.bias, exact.items.bias, rtol=1e-7, atol=1e-9)
    assert not np.allclose(cg.users.factors, exact.users.factors, atol=1e-6)
