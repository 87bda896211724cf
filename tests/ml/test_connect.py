"""The drop-in flow on Spark Connect: ``tests/ml/test_dropin.py`` run in a fresh process
whose session is a Spark Connect client of a server started in that process
(``SparkSession.builder.remote("local[2]")``; a classic and a Connect session cannot share
one Python process), and the training job with ``--remote``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import CONNECT_ENV, ROOT


def test_drop_in_flow_passes_on_spark_connect(tmp_path):
    env = {**os.environ, CONNECT_ENV: "1", "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "base"),
                           str(ROOT / "tests" / "ml" / "test_dropin.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert re.search(r"\b4 passed\b", summary), summary
    print(f"\n[spark connect] {summary}")


def test_training_job_runs_on_spark_connect(tmp_path):
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, str(ROOT / "jobs" / "train.py"), "--remote",
                           "local[2]", "--iterations", "2", "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "test RMSE" in done.stdout
    assert (tmp_path / "out" / "model" / "_COMPLETE").exists()
