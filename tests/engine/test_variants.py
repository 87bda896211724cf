"""The distributed fit of every model variant (implicit feedback, nonnegative factors,
conjugate gradient, with and without biases) against the dense pure-NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest

from mfspark.config import ALSParams
from mfspark.core import reference
from mfspark.core.nnls import kkt_violation
from mfspark.core.state import init_factors

from conftest import fit_spark, random_ratings, rel_err, signed_ratings


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
