"""Implicit feedback and nonnegative factors through jobs/train.py and its TOML keys."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from mfspark import ALSModel
from mfspark import config as cfg
from mfspark.app import train as train_job
from mfspark.app.train import train
from mfspark.io import settings

from conftest import ROOT


def test_flags_and_toml_keys_reach_the_config(tmp_path):
    default = train_job.settings(train_job.parser().parse_args([])).als
    assert (default.implicit_prefs, default.alpha, default.nonnegative, default.fit_biases) \
        == (False, 1.0, False, True)
    c = train_job.settings(train_job.parser().parse_args(
        ["--implicit-prefs", "--alpha", "40", "--nonnegative"])).als
    assert (c.implicit_prefs, c.alpha, c.nonnegative, c.fit_biases) == (True, 40.0, True, False)
    assert not train_job.settings(train_job.parser().parse_args(["--no-biases"])).als.fit_biases
    assert train_job.settings(train_job.parser().parse_args(
        ["--implicit-prefs", "--cg-steps", "3"])).als.cg_steps == 3
    path = tmp_path / "implicit.toml"
    path.write_text("[als]\nimplicit_prefs = true\nalpha = 10\nnonnegative = true\n")
    c = settings.load(path).als
    assert (c.implicit_prefs, c.alpha, c.nonnegative, c.biases) == (True, 10, True, None)
    path.write_text("[als]\nimplicit_prefs = true\nbiases = true\n")
    assert settings.load(path).als.fit_biases  # implicit feedback with biases, asked for
    assert train_job.settings(train_job.parser().parse_args(
        ["--implicit-prefs", "--biases"])).als.fit_biases


def test_bad_alpha_flag_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / "train.py"), "--implicit-prefs",
                           "--alpha", "-1", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "als.alpha must be a finite number >= 0, got -1.0" in proc.stderr


class SavedSide:
    """One side of a saved model as arrays: ``features`` (n x rank) and ``bias``."""

    def __init__(self, frame):
        pdf = frame.toPandas()
        self.features = np.stack(pdf["features"].to_numpy())
        self.bias = pdf["bias"].to_numpy()


def saved_sides(result) -> tuple[SavedSide, SavedSide]:
    model = ALSModel.load(result.model_dir)
    return SavedSide(model.userFactors), SavedSide(model.itemFactors)


def test_train_implicit_nonnegative_on_embedded_sample(spark, tmp_path):
    config = cfg.override(cfg.JobConfig(), out=str(tmp_path), iterations=3,
                          implicit_prefs=True, alpha=5.0, nonnegative=True)
    result = train(spark, config, with_baselines=True)
    md = result.metadata
    assert md["implicit_prefs"] and md["nonnegative"] and md["mu"] == 0.0
    assert md["baselines"] == {}  # rating baselines make no sense for preferences
    objectives = [h["objective"] for h in md["history"]]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(objectives, objectives[1:]))
    users, items = saved_sides(result)
    assert (users.features >= 0).all() and (items.features >= 0).all()
    assert (users.bias == 0).all() and (items.bias == 0).all()
    assert "test_rmse" not in md["history"][-1]


def test_train_implicit_with_biases_on_embedded_sample(spark, tmp_path):
    """jobs/train.py's path with --implicit-prefs --biases: both sides' biases are fitted
    and J never increases (its equality with the dense oracle: tests/test_implicit.py)."""
    config = cfg.override(cfg.JobConfig(), out=str(tmp_path), iterations=3,
                          implicit_prefs=True, alpha=5.0, biases=True)
    result = train(spark, config)
    md = result.metadata
    assert md["implicit_prefs"] and md["biases"] and md["mu"] == 0.0
    objectives = [h["objective"] for h in md["history"]]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(objectives, objectives[1:]))
    users, items = saved_sides(result)
    assert np.abs(items.bias).max() > 0.01 and np.abs(users.bias).max() > 0.01

