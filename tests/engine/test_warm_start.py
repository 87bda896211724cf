"""Warm starts of the training job (``init_model``, ``--init-model``): the fit starts from a
saved model's factors matched by ID, new IDs start as a cold fit would, the first iteration
equals the NumPy oracle's from that start, the objective starts near the initial model's and
never increases, mismatched models are refused, and a warm run resumes like a cold one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mfspark import config as cfg
from mfspark.app.train import parser, settings, train
from mfspark.core import reference
from mfspark.core.state import seeded_factors
from mfspark.engine.resume import ResumeError
from mfspark.io.model import read_model
from mfspark.ml.freshness import WarmStartError, fingerprint

from conftest import dense_side, random_ratings

RANK = 3
SMALL = dict(rank=RANK, reg=0.1, test_fraction=0.0, num_user_blocks=2, num_item_blocks=2)


def write_csv(path, users, items, ratings):
    lines = ["user,item,rating"] + [f"{u},{i},{r}" for u, i, r in zip(users, items, ratings)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(spark, path, out, iterations, **options):
    settings_ = {**SMALL, **{k: v for k, v in options.items()
                             if k not in ("overwrite", "resume_run")}}
    config = cfg.override(cfg.JobConfig(), path=path, out=str(out), iterations=iterations,
                          **settings_)
    return train(spark, config, overwrite=options.get("overwrite", False),
                 resume_run=options.get("resume_run", False))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """All ratings (40 users, 25 items) and an older log: items 0..19 only, plus item 99
    that the newer log no longer has."""
    tmp = tmp_path_factory.mktemp("warm")
    users, items, ratings = random_ratings(40, 25, 0.3, seed=1)
    old = items < 20
    extra = np.arange(0, 40, 5)
    old_u = np.r_[users[old], extra]
    old_i = np.r_[items[old], np.full(len(extra), 99)]
    old_r = np.r_[ratings[old], np.full(len(extra), 4.0)]
    return {"tmp": tmp, "all": (users, items, ratings),
            "all_path": write_csv(tmp / "all.csv", users, items, ratings),
            "old_path": write_csv(tmp / "old.csv", old_u, old_i, old_r)}


@pytest.fixture(scope="module")
def converged(spark, data):
    """A model trained on all the ratings (10 iterations)."""
    return run(spark, data["all_path"], data["tmp"] / "converged", 10)


@pytest.fixture(scope="module")
def older(spark, data):
    """A model of the older log (2 iterations: any model is a start)."""
    return run(spark, data["old_path"], data["tmp"] / "older", 2)


def test_init_model_flag_is_generated():
    args = parser().parse_args(["--init-model", "yesterday/model"])
    assert settings(args).init_model == "yesterday/model"
    assert cfg.JobConfig().init_model is None


def test_warm_start_begins_at_the_initial_objective_and_never_increases(spark, data, converged):
    warm = run(spark, data["all_path"], data["tmp"] / "warm", 3, init_model=converged.model_dir)
    cold = converged.metadata["history"]
    start = cold[-1]["objective"]
    trail = [v for h in warm.metadata["history"]
             for v in (h["objective_after_user_step"], h["objective"])]
    # the first half-step solves the users given the initial items: the fit continues where
    # the initial one stopped, so J goes down, by less than in the initial fit's last iteration
    assert 0 < start - trail[0] <= cold[-2]["objective"] - start
    assert np.all(np.diff(trail) <= 1e-12 * np.abs(trail[:-1]))
    assert trail[-1] < cold[2]["objective"]  # far below a cold fit after as many iterations
    meta = json.loads(open(f"{warm.model_dir.removeprefix('file:')}/metadata.json").read())
    initial = json.loads(open(f"{converged.model_dir.removeprefix('file:')}/metadata.json")
                         .read())
    assert meta["initial_model"]["path"] == converged.model_dir
    assert meta["initial_model"]["fingerprint"] == fingerprint(initial)


def test_new_and_vanished_ids_and_the_first_iteration_equal_the_oracle(spark, data, older):
    """Items 20..24 are new (seeded start, zero bias), item 99 vanished; users are solved
    first and need no start."""
    users, items, ratings = data["all"]
    warm = run(spark, data["all_path"], data["tmp"] / "new-ids", 1, init_model=older.model_dir)
    start = read_model(spark, older.model_dir)
    assert 99 in {r.id for r in start.item_factors.collect()}
    V0 = dense_side(start.item_factors.filter("id < 25"), 25, RANK)
    assert np.all(V0.factors[20:] == 0)  # the older model does not know items 20..24
    V0.factors[20:] = seeded_factors(np.arange(20, 25), RANK, 0)
    mu = ratings.mean()
    U, b = reference._half_step(users, items, ratings, 40, V0.factors, V0.bias, mu, 0.1,
                                "count")
    V1, c1 = reference._half_step(items, users, ratings, 25, U, b, mu, 0.1, "count")
    model = read_model(spark, warm.model_dir)
    got_users = dense_side(model.user_factors, 40, RANK)
    got_items = dense_side(model.item_factors, 25, RANK)
    np.testing.assert_allclose(got_users.factors, U, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got_users.bias, b, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got_items.factors, V1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got_items.bias, c1, rtol=0, atol=1e-10)
    assert {r.id for r in model.item_factors.collect()} == set(range(25))  # 99 left out
    assert warm.counts["read"] == warm.counts["used"] == len(ratings)


def test_a_warm_run_resumes_like_a_cold_one(spark, data, older, converged):
    out = data["tmp"] / "resumed"
    first = run(spark, data["all_path"], out, 1, init_model=older.model_dir)
    resumed = run(spark, data["all_path"], out, 2, init_model=older.model_dir,
                  overwrite=True, resume_run=True)
    assert resumed.metadata["resumed_after_iteration"] == 1
    assert resumed.metadata["history"][0] == first.metadata["history"][0]
    assert resumed.metadata["initial_model"] == first.metadata["initial_model"]
    with pytest.raises(ResumeError, match="init_model"):  # another initial model: another run
        run(spark, data["all_path"], out, 3, init_model=converged.model_dir, overwrite=True,
            resume_run=True)


@pytest.mark.parametrize("change,message", [
    ({"rank": 4}, "rank is 3 there and 4 here"),
    ({"implicit_prefs": True}, "implicit_prefs is False there and True here"),
    ({"biases": False}, "fit_biases is True there and False here"),
    ({"nonnegative": True}, "nonnegative is False there and True here")])
def test_a_mismatched_initial_model_is_refused_before_any_work(spark, data, older, change,
                                                               message):
    out = data["tmp"] / f"refused-{next(iter(change))}"
    with pytest.raises(WarmStartError, match=message) as raised:
        run(spark, data["all_path"], out, 1, init_model=older.model_dir, **change)
    assert isinstance(raised.value, ValueError) and "without an initial model" in str(raised.value)
    assert not out.exists()
