"""The Python workers' interpreter is checked before ``ALS.fit`` runs a job: one clear
error naming ``PYSPARK_PYTHON`` / ``spark.pyspark.python`` and this interpreter, instead of
a ``ModuleNotFoundError`` deep in a worker.  The fake interpreters are shell scripts; the
shared session's own interpreter is only read, never changed, except in the one test that
sets it (restored by ``monkeypatch``) and expects the error before any job."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from mfspark import ALS
from mfspark.errors import MfsparkValueError
from mfspark.ml import workers
from mfspark.ml.workers import WorkerPythonError, check_interpreter, check_workers

from conftest import ROOT


def script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def no_pandas(tmp_path):
    """A Python without pandas: this interpreter with ``import pandas`` failing, as the
    system ``python3`` a virtualenv's script would start workers with."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pandas.py").write_text("raise ModuleNotFoundError(\"No module named 'pandas'\")\n")
    return script(tmp_path / "python3", f'PYTHONPATH={shadow} exec {sys.executable} "$@"\n')


def test_the_session_workers_are_checked_and_pass(spark):
    # the suite's session starts its workers with this interpreter (tests/conftest.py)
    assert workers.worker_python(spark) == spark.sparkContext.pythonExec
    check_workers(spark)


def test_an_interpreter_without_pandas_is_refused(no_pandas):
    with pytest.raises(WorkerPythonError) as caught:
        check_interpreter(no_pandas)
    message = str(caught.value)
    for expected in ("PYSPARK_PYTHON", "spark.pyspark.python", sys.executable, no_pandas,
                     "pandas"):
        assert expected in message
    assert isinstance(caught.value, MfsparkValueError) and isinstance(caught.value, ValueError)


def test_a_missing_or_broken_interpreter_is_refused(tmp_path):
    with pytest.raises(WorkerPythonError, match="not found on the PATH"):
        check_interpreter("no-such-python-mfspark")
    with pytest.raises(WorkerPythonError, match="not found"):
        check_interpreter(str(tmp_path / "missing" / "python"))
    broken = script(tmp_path / "broken", "echo 'cannot start' >&2\nexit 3\n")
    with pytest.raises(WorkerPythonError, match="status 3.*cannot start"):
        check_interpreter(broken)


def test_another_python_version_is_refused(tmp_path):
    fake = script(tmp_path / "python2", "echo 2.7\necho\n")
    with pytest.raises(WorkerPythonError, match="Python 2.7 and this driver Python 3"):
        check_interpreter(fake)


def test_the_probe_runs_once_per_interpreter(tmp_path):
    counter = tmp_path / "runs"
    fake = script(tmp_path / "counted", f'echo run >> {counter}\nexec {sys.executable} "$@"\n')
    check_interpreter(fake)
    check_interpreter(fake)
    assert counter.read_text().count("run") == 1


def test_fit_stops_before_any_job(spark, no_pandas, monkeypatch):
    """``ALS.fit`` with workers that cannot import pandas raises the error before Spark runs
    a job (a job would have failed in the worker, with another error)."""
    ratings = spark.createDataFrame([(0, 0, 1.0), (1, 1, 2.0)], "user int, item int, rating double")
    tracker = spark.sparkContext.statusTracker()
    group = "mfspark-worker-check"
    spark.sparkContext.setJobGroup(group, "the worker check")
    monkeypatch.setattr(spark.sparkContext, "pythonExec", no_pandas)
    try:
        with pytest.raises(WorkerPythonError, match="PYSPARK_PYTHON"):
            ALS(rank=1, maxIter=1).fit(ratings)
    finally:
        monkeypatch.undo()
        spark.sparkContext.setJobGroup("", "")
    assert tracker.getJobIdsForGroup(group) == []


def test_cluster_masters_are_not_checked(spark, monkeypatch):
    monkeypatch.setattr(spark.sparkContext, "master", "yarn")
    assert workers.worker_python(spark) is None


def test_a_venv_script_without_pyspark_python_gets_one_message(no_pandas, tmp_path):
    """The user's case, end to end: a script run without ``PYSPARK_PYTHON`` whose default
    worker interpreter (``python3`` on the ``PATH``) lacks pandas.  It prints one message
    and no worker traceback."""
    user_script = tmp_path / "train.py"
    user_script.write_text(textwrap.dedent("""
        from pyspark.sql import SparkSession
        from mfspark import ALS
        spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
                 .getOrCreate())
        ratings = spark.createDataFrame([(0, 0, 1.0), (1, 1, 2.0)],
                                        "user int, item int, rating double")
        try:
            ALS(rank=1, maxIter=1).fit(ratings)
        except ValueError as err:
            print(type(err).__name__ + ": " + str(err))
        spark.stop()
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_PYTHON"}
    env.update(PATH=f"{os.path.dirname(no_pandas)}{os.pathsep}{env['PATH']}",
               PYTHONPATH=str(ROOT), SPARK_LOCAL_IP="127.0.0.1")
    done = subprocess.run([sys.executable, str(user_script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "WorkerPythonError: Spark starts its Python workers with 'python3'" in done.stdout
    assert f"PYSPARK_PYTHON={sys.executable}" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
