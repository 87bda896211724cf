"""Crash and resume: a SIGKILLed run leaves no model, ``--resume`` finishes it with the same
model as an uninterrupted run, a different run is refused, and no plan grows with the loop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrameWriter

from mfspark import config as cfg
from mfspark.config import ALSParams
from mfspark.io.checkpoints import last_complete
from mfspark.io.model import IncompleteModelError, read_model
from mfspark.engine.resume import ResumeError
from mfspark.app.train import train
from mfspark.engine.loop import fit, partition

from conftest import ROOT, random_ratings

ITERATIONS = 8
FLAGS = {"rank": 4, "iterations": ITERATIONS, "num_user_blocks": 3, "num_item_blocks": 2,
         "test_fraction": 0.1}
CLI = ["--rank", "4", "--iterations", str(ITERATIONS), "--user-blocks", "3",
       "--item-blocks", "2", "--test-fraction", "0.1", "--master", "local[2]"]


def write_csv(path):
    users, items, ratings = random_ratings(300, 150, 0.1, seed=21)
    pd.DataFrame({"user": users, "item": items, "rating": ratings}).to_csv(path, index=False)
    return str(path)


def run_job(args, **popen):
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.Popen([sys.executable, str(ROOT / "jobs" / "train.py"), *args], env=env,
                            start_new_session=True, **popen)


def kill_after_iteration(proc, out, iteration, timeout=900.0):
    """SIGKILL the job as soon as ``iteration`` is committed; return when it is dead."""
    marker = out / "iterations" / f"iter-{iteration:04d}" / "history.json"
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "iteration 2 never completed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    try:  # the JVM exits when its parent's pipe closes; make sure of it
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def factors(spark, model_dir):
    model = read_model(spark, model_dir)
    out = {}
    for side in ("user_factors", "item_factors"):
        pdf = getattr(model, side).toPandas().sort_values("id")
        out[side] = (pdf["id"].to_numpy(), np.stack(pdf["features"].to_numpy()),
                     pdf["bias"].to_numpy())
    return out, model.metadata


def test_killed_run_resumes_to_the_uninterrupted_model(spark, tmp_path):
    csv = write_csv(tmp_path / "r.csv")
    killed = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        proc = run_job(["--ratings", csv, "--out", str(killed), *CLI], stdout=log, stderr=log)
        kill_after_iteration(proc, killed, 2)
    assert proc.returncode == -signal.SIGKILL

    # nothing that loads as a model anywhere in the output
    assert not (killed / "model").exists()
    for candidate in [killed / "model", *killed.iterdir()]:
        with pytest.raises(IncompleteModelError):
            read_model(spark, str(candidate))
    done = last_complete(spark, f"file:{killed}/iterations", ITERATIONS)
    assert 2 <= done < ITERATIONS

    # another run's settings are refused, naming the difference
    other = cfg.override(cfg.JobConfig(), path=csv, out=str(killed), seed=1, **FLAGS)
    with pytest.raises(ResumeError, match=r"als.seed: 0 then, 1 now"):
        train(spark, other, resume_run=True)

    began = time.perf_counter()
    resumed = run_job(["--ratings", csv, "--out", str(killed), "--resume", *CLI],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = resumed.communicate(timeout=900)
    print(f"resume after iteration {done}: {time.perf_counter() - began:.1f}s")
    assert resumed.returncode == 0, stderr[-3000:]
    assert f"resuming after iteration {done} of {ITERATIONS}" in stderr
    assert stderr.count("INFO iteration") == ITERATIONS - done  # only the missing ones ran

    config = cfg.override(cfg.JobConfig(), path=csv, out=str(tmp_path / "whole"), **FLAGS)
    whole = train(spark, config)
    got, got_meta = factors(spark, f"file:{killed}/model")
    want, want_meta = factors(spark, whole.model_dir)
    for side in got:
        np.testing.assert_array_equal(got[side][0], want[side][0])
        np.testing.assert_allclose(got[side][1], want[side][1], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got[side][2], want[side][2], rtol=0, atol=1e-9)
    assert got_meta["resumed_after_iteration"] == done
    assert [h["objective"] for h in got_meta["history"]] == pytest.approx(
        [h["objective"] for h in want_meta["history"]], rel=1e-12)
    assert got_meta["counts"] == want_meta["counts"]


def test_implicit_run_resumes_from_its_seeded_users(spark, tmp_path):
    """Implicit feedback seeds the users (``iter-0000/user``) and solves items first: a run
    cut after its seeded start or after iteration 1, with the next item step half-written,
    resumes to the uninterrupted model."""
    csv = write_csv(tmp_path / "r.csv")
    flags = {**FLAGS, "iterations": 3, "implicit_prefs": True, "alpha": 2.0}
    whole = train(spark, cfg.override(cfg.JobConfig(), path=csv, out=str(tmp_path / "whole"),
                                      **flags))
    seeded = tmp_path / "whole" / "iterations" / "iter-0000"
    assert (seeded / "user" / "_SUCCESS").exists() and not (seeded / "item").exists()
    want, _ = factors(spark, whole.model_dir)
    for done in (0, 1):
        out = tmp_path / f"cut-{done}"
        shutil.copytree(tmp_path / "whole", out)
        shutil.rmtree(out / "model")
        for it in range(done + 1, 4):
            shutil.rmtree(out / "iterations" / f"iter-{it:04d}")
        (out / "iterations" / f"iter-{done + 1:04d}" / "item").mkdir(parents=True)  # no commit
        assert last_complete(spark, f"file:{out}/iterations", 3, "user") == done
        config = cfg.override(cfg.JobConfig(), path=csv, out=str(out), **flags)
        resumed = train(spark, config, resume_run=True)
        assert resumed.metadata["resumed_after_iteration"] == done
        assert [h["iteration"] for h in resumed.metadata["history"]] == [1, 2, 3]
        got, _ = factors(spark, resumed.model_dir)
        for side in got:
            np.testing.assert_array_equal(got[side][0], want[side][0])
            np.testing.assert_allclose(got[side][1], want[side][1], rtol=0, atol=1e-9)


def test_no_plan_grows_with_the_iteration_count(spark, tmp_path, monkeypatch):
    """Every half-step writes a DataFrame whose plan has as many nodes at iteration 10 as at
    iteration 2: the Parquet round-trip cuts the lineage."""
    nodes: dict[str, int] = {}
    write = DataFrameWriter.parquet

    def recording(self, path, *args, **kwargs):
        plan = self._df._jdf.queryExecution().analyzed().treeString()
        nodes[path] = len(plan.strip().splitlines())
        return write(self, path, *args, **kwargs)

    monkeypatch.setattr(DataFrameWriter, "parquet", recording)
    users, items, ratings = random_ratings(30, 20, 0.3, seed=2)
    pdf = pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64),
                        "rating": ratings})
    params = ALSParams(rank=2, iterations=10, num_user_blocks=2, num_item_blocks=2)
    parts = partition(spark.createDataFrame(pdf), params)
    try:
        fit(parts, params, str(tmp_path))
    finally:
        parts.unpersist()
    for side in ("user", "item"):
        at = {it: nodes[f"{tmp_path}/iter-{it:04d}/{side}"] for it in (2, 10)}
        assert at[2] == at[10], (side, at)
