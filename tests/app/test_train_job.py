"""The training job end to end: real data, the saved layout, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mfspark import config as cfg
from mfspark.io import settings
from mfspark.io.model import ModelExistsError, read_model
from mfspark.app.train import train

from conftest import ROOT


@pytest.fixture(scope="module")
def ml100k_run(spark, ml100k_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("ml100k")
    config = cfg.override(settings.load(ROOT / "conf" / "movielens.toml"), path=ml100k_path,
                          out=str(out))
    return train(spark, config), out


def test_movielens_100k_test_rmse(ml100k_run):
    result, _ = ml100k_run
    history = result.metadata["history"]
    assert len(history) == result.metadata["iterations"]
    assert history[-1]["test_rmse"] <= 0.93
    objectives = [h["objective"] for h in history]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(objectives, objectives[1:]))


def test_phases_account_for_the_run(ml100k_run):
    meta = ml100k_run[0].metadata
    phases = meta["phases"]
    assert list(phases)[-3:] == ["fit: start", "fit: iterations", "write model"]
    assert all(seconds >= 0 for seconds in phases.values())
    # consecutive laps: together they cover the run up to its last phase's end
    assert sum(phases.values()) == pytest.approx(meta["seconds"], abs=0.5)
    assert phases["fit: iterations"] >= sum(h["seconds"] for h in meta["history"])


def test_saved_model_layout(spark, ml100k_run):
    result, out = ml100k_run
    model = read_model(spark, str(out / "model"))
    assert dict(model.user_factors.dtypes) == {"id": "bigint", "bias": "double",
                                               "features": "array<double>"}
    assert model.user_factors.count() == 943
    assert model.item_factors.count() == result.metadata["num_items"]
    row = model.user_factors.filter("id = 196").first()
    assert len(row.features) == result.metadata["rank"]
    assert np.isfinite(row.features).all() and np.isfinite(row.bias)
    meta = json.loads((out / "model" / "metadata.json").read_text())
    for key in ("mu", "rank", "reg", "reg_scale", "iterations", "seed", "user_id_type",
                "item_id_type", "versions", "history"):
        assert key in meta, key
    assert set(meta["history"][0]) >= {"objective", "train_rmse", "test_rmse", "seconds"}
    assert meta["versions"]["pyspark"] == "4.3.0"
    assert (out / "iterations" / "iter-0010" / "item").is_dir()
    assert (out / "model" / "_COMPLETE").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_existing_model_is_not_overwritten(spark, ml100k_run):
    _, out = ml100k_run
    config = cfg.override(cfg.JobConfig(), out=str(out), iterations=1)
    with pytest.raises(ModelExistsError, match="--overwrite"):
        train(spark, config)


def test_string_ids_key_the_outputs(spark, tmp_path):
    rng = np.random.default_rng(0)
    lines = ["who,what,stars"] + [f"user-{u},film {i},{rng.integers(1, 6)}"
                                  for u in range(15) for i in range(12) if rng.random() < 0.6]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    config = cfg.override(cfg.JobConfig(), path=str(tmp_path / "r.csv"), user_col="who",
                          item_col="what", rating_col="stars", out=str(tmp_path / "o"),
                          rank=2, iterations=2, test_fraction=0.0)
    result = train(spark, config)
    model = read_model(spark, result.model_dir)
    assert result.metadata["user_id_type"] == "string"
    ids = {r.id for r in model.user_factors.collect()}
    assert ids == {f"user-{u}" for u in range(15)}
    assert {r.id for r in model.item_factors.collect()} <= {f"film {i}" for i in range(12)}


def test_command_line_on_embedded_sample(tmp_path):
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train.py"), "--config",
         str(ROOT / "conf" / "default.toml"), "--out", str(tmp_path), "--iterations", "3",
         "--master", "local[2]", "--baselines", "--show", "2"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"model written to file:{tmp_path}/model" in proc.stdout
    assert "(global-mean baseline)" in proc.stdout and "(biases-only baseline)" in proc.stdout
    assert proc.stdout.count("top unseen items") == 2
    assert proc.stderr.count("INFO iteration") == 3


def test_bad_flag_value_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / "train.py"), "--rank", "-2",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "als.rank must be an integer >= 0, got -2" in proc.stderr


def test_missing_java_stops_with_instructions():
    proc = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "check-java")], capture_output=True,
                          text=True, env={"PATH": "/nonexistent"}, timeout=30)
    assert proc.returncode == 1
    assert "apt-get install openjdk-17-jre-headless" in proc.stderr


def test_dirty_input_is_accounted_for_in_the_metadata(spark, tmp_path):
    """Quarantine + mean: every row read is used, rejected (with its reason) or merged."""
    rng = np.random.default_rng(1)
    good = [f"{u},{i},{rng.integers(1, 6)},{100 + u}" for u in range(12) for i in range(8)
            if rng.random() < 0.7]
    bad = ["3,1,seven,5", "4,2,,5", "5,3,NaN,5", ",1,3,5", "6,,3,5", "7,1,9.5,5"]
    dups = ["0,0,1,1", "0,0,5,2", "1,1,2,3"]  # pairs that may also appear in `good`
    (tmp_path / "r.csv").write_text("\n".join(["user,item,rating,timestamp", *good, *bad, *dups])
                                    + "\n")
    config = cfg.override(cfg.JobConfig(), path=str(tmp_path / "r.csv"), out=str(tmp_path / "o"),
                          rank=2, iterations=1, test_fraction=0.2, on_bad_rows="quarantine",
                          duplicates="mean")
    result = train(spark, config)
    counts = json.loads((tmp_path / "o" / "model" / "metadata.json").read_text())["counts"]
    read = len(good) + len(bad) + len(dups)
    pairs = {tuple(line.split(",")[:2]) for line in good + dups}
    assert counts == {"read": read, "used": len(pairs), "rejected": len(bad),
                      "merged": len(good) + len(dups) - len(pairs)}
    assert counts["read"] == counts["used"] + counts["rejected"] + counts["merged"]
    assert result.metadata["rejected_by_reason"] == {
        "null user ID": 1, "null item ID": 1, "null rating": 1, "non-numeric rating": 1,
        "NaN or infinite rating": 1, "rating outside [0.5, 5.0]": 1}
    rejected = spark.read.parquet(str(tmp_path / "o" / "rejected"))
    assert rejected.count() == len(bad) and "reason" in rejected.columns


def test_rating_range_flags(tmp_path):
    """--rating-range MIN MAX and --no-rating-range reach the config; conflicting ones don't."""
    from mfspark.app import train as job

    assert job.settings(job.parser().parse_args([])).input.rating_range == (0.5, 5.0)
    assert job.settings(job.parser().parse_args(["--rating-range", "1", "10"])).input \
        .rating_range == (1.0, 10.0)
    args = job.parser().parse_args(["--no-rating-range", "--on-bad-rows", "quarantine",
                                    "--duplicates", "last", "--block-memory-mb", "16"])
    c = job.settings(args)
    assert (c.input.rating_range, c.input.on_bad_rows, c.input.duplicates,
            c.als.block_memory_mb) == (None, "quarantine", "last", 16)
    with pytest.raises(SystemExit):
        job.parser().parse_args(["--no-rating-range", "--rating-range", "1", "5"])


@pytest.mark.parametrize("ids", ["integer", "string"])
def test_duplicates_are_refused_wherever_the_split_puts_them(spark, tmp_path, ids):
    """Under the default ``fail`` policy a repeated (user, item) pair stops the job before
    anything is trained or written, with the pair named, whether it lands in the training
    or the held-out part (integer IDs: found by the packing; string IDs: by their own pass)."""
    from mfspark.data.duplicates import DuplicateRatingsError
    from mfspark.data.split import random_split

    name = (lambda k: f"u{k}") if ids == "string" else str
    rows = [(u, i, 1 + (u * i) % 5) for u in range(15) for i in range(6) if (u + i) % 3]
    header = "user,item,rating"
    id_type = "string" if ids == "string" else "long"  # the job's types: the same split
    frame = spark.createDataFrame([((name if ids == "string" else int)(u),
                                    (name if ids == "string" else int)(i), float(r))
                                   for u, i, r in rows],
                                  f"user {id_type}, item {id_type}, rating double")
    train_part, test_part = random_split(frame, 0.3, seed=0)
    for part in (train_part, test_part):
        dup = part.first()
        lines = [f"{name(u)},{name(i)},{r}" for u, i, r in rows]
        lines.append(f"{dup['user']},{dup['item']},2")
        path = tmp_path / f"r-{len(list(tmp_path.iterdir()))}.csv"
        path.write_text("\n".join([header, *lines]) + "\n")
        config = cfg.override(cfg.JobConfig(), path=str(path), out=str(tmp_path / "o"),
                              rank=2, iterations=1, test_fraction=0.3)
        with pytest.raises(DuplicateRatingsError) as err:
            train(spark, config)
        pair = f"'user': {dup['user']!r}, 'item': {dup['item']!r}, 'ratings': 2"
        message = str(err.value)
        assert "1 (user, item) pair(s) are rated more than once (1 extra row(s))" in message
        assert pair in message
        assert not (tmp_path / "o" / "model").exists()
