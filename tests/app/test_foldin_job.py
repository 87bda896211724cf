"""``jobs/foldin.py`` end to end on a tiny dataset: a trained model, new ratings with new
users and unknown items, the new model written atomically with the exact solutions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mfspark import config as cfg
from mfspark.app import foldin
from mfspark.app.train import train
from mfspark.io.model import read_model

from conftest import ROOT, random_ratings


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("foldin-job")
    users, items, ratings = random_ratings(20, 12, 0.4, seed=3)
    lines = ["user,item,rating"] + [f"{u},{i},{r}" for u, i, r in zip(users, items, ratings)]
    (tmp / "train.csv").write_text("\n".join(lines) + "\n")
    config = cfg.override(cfg.JobConfig(), path=str(tmp / "train.csv"), out=str(tmp / "run"),
                          rank=2, reg=0.2, iterations=3, test_fraction=0.0)
    return tmp, train(spark, config)


def test_foldin_job_writes_the_exact_solutions(spark, trained):
    tmp, result = trained
    # user 3 re-rated, users 100 and 101 are new; item 77 is unknown to the model
    new = [(3, 0, 5.0), (3, 4, 1.0), (3, 77, 2.0), (100, 1, 4.0), (100, 2, 3.5),
           (100, 5, 2.0), (101, 7, 1.0), (101, 77, 5.0)]
    (tmp / "new.csv").write_text("user,item,rating\n"
                                 + "".join(f"{u},{i},{r}\n" for u, i, r in new))
    out = tmp / "folded"
    summary = foldin.main(["--model", result.model_dir, "--ratings", str(tmp / "new.csv"),
                           "--out", str(out), "--master", "local[2]"])
    assert {k: summary[k] for k in ("ratings", "ratings_used", "ratings_ignored", "solved",
                                    "new", "updated", "skipped")} == {
        "ratings": 8, "ratings_used": 6, "ratings_ignored": 2, "solved": 3, "new": 2,
        "updated": 1, "skipped": 0}
    assert (out / "_COMPLETE").exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".")]  # no work dir left
    before, after = read_model(spark, result.model_dir), read_model(spark, str(out))
    items = {r.id: (np.array(r.features), r.bias) for r in before.item_factors.collect()}
    old_users = {r.id: (np.array(r.features), r.bias) for r in before.user_factors.collect()}
    got = {r.id: (np.array(r.features), r.bias) for r in after.user_factors.collect()}
    mu, reg = result.metadata["mu"], result.metadata["reg"]
    for user in (3, 100, 101):
        mine = [(i, r) for u, i, r in new if u == user and i in items]
        X = np.array([np.r_[items[i][0], 1.0] for i, _ in mine])
        y = np.array([r - mu - items[i][1] for i, r in mine])
        w = np.linalg.solve(X.T @ X + reg * len(mine) * np.eye(3), X.T @ y)
        np.testing.assert_allclose(np.r_[got[user][0], got[user][1]], w, rtol=0, atol=1e-10)
    assert set(got) == set(old_users) | {100, 101}
    assert all(np.array_equal(got[u][0], old_users[u][0]) for u in old_users if u != 3)
    assert {r.id for r in after.item_factors.collect()} == set(items)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["mu"] == mu and meta["fold_ins"][-1]["ratings_path"] == str(tmp / "new.csv")
    # an existing model is not replaced without --overwrite
    with pytest.raises(SystemExit) as stopped:
        foldin.main(["--model", result.model_dir, "--ratings", str(tmp / "new.csv"),
                     "--out", str(out), "--master", "local[2]"])
    assert stopped.value.code == 2


def test_foldin_script_help():
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / "foldin.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: foldin.py")
    assert "--side {user,item}" in proc.stdout and "--ratings-format" in proc.stdout
