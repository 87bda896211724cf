"""The jobs report an expected failure as one line on stderr and a non-zero exit, without a
traceback; ``--debug`` (or ``MFSPARK_DEBUG=1``) shows the traceback.  Out-of-memory
failures are named with the settings to change."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.errors import PySparkException

from mfspark.app import cli
from mfspark.data.validate import InvalidRatingsError
from mfspark.engine.resume import ResumeError
from mfspark.io.model import ModelExistsError
from mfspark.io.tables import write_table
from mfspark.ml.params import ParamError

ROOT = Path(__file__).resolve().parents[2]
JOBS = ["train", "tune", "recommend", "evaluate", "generate", "benchmark"]


@pytest.fixture(scope="module")
def nan_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "ratings.csv"
    path.write_text("user,item,rating\n1,1,4\n1,2,NaN\n2,1,3\n2,2,5\n")
    return path


def run_train(*flags: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    environment.pop(cli.DEBUG_ENV, None)
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "train.py"), *flags],
                          capture_output=True, text=True, timeout=600, env=environment)


def test_bad_ratings_are_one_line_without_traceback(nan_csv, tmp_path):
    done = run_train("--ratings", str(nan_csv), "--out", str(tmp_path / "out"),
                     "--master", "local[1]", "--iterations", "1", "--rank", "1")
    assert done.returncode == cli.EXIT_BAD_INPUT, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1, done.stderr
    # what, where and how to fix
    assert "NaN or infinite rating" in errors[0] and str(nan_csv) in errors[0]
    assert "--on-bad-rows quarantine" in errors[0]


def test_debug_shows_the_traceback(nan_csv, tmp_path):
    done = run_train("--ratings", str(nan_csv), "--out", str(tmp_path / "out"),
                     "--master", "local[1]", "--iterations", "1", "--rank", "1", "--debug")
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "InvalidRatingsError" in done.stderr


@pytest.mark.parametrize("job", JOBS)
def test_every_job_is_wrapped_and_has_debug(job, capsys):
    module = importlib.import_module(f"mfspark.app.{job}")
    assert module.main.__wrapped__ is not None  # cli.job
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    assert "--debug" in capsys.readouterr().out


@cli.job
def _failing(argv: list[str] | None) -> str:
    """A job whose failure is chosen by its first argument."""
    failures = {"param": ParamError("rank must be an integer >= 0, got -1"),
                "exists": ModelExistsError("out/model already exists; pass --overwrite"),
                "resume": ResumeError("the stored run used rank 3; this run asks for 4"),
                "missing": FileNotFoundError(2, "No such file or directory", "conf/x.toml"),
                "bug": KeyError("rank")}
    if argv and argv[0] in failures:
        raise failures[argv[0]]
    if argv and argv[0] == "plain":
        int("not a number")  # a ValueError raised inside Python, not a worded check
    return "done"


@pytest.mark.parametrize("kind,message", [
    ("param", "rank must be an integer >= 0, got -1"),
    ("exists", "pass --overwrite"),
    ("resume", "the stored run used rank 3"),
    ("missing", "No such file or directory: conf/x.toml"),
])
def test_expected_errors_exit_2_with_one_line(kind, message, capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as done:
        _failing([kind])
    assert done.value.code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("test_job_errors.py: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("kind,error", [("bug", KeyError), ("plain", ValueError)])
def test_bugs_keep_their_traceback(kind, error, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(error):
        _failing([kind])


def test_debug_flag_and_environment_reraise(monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(ParamError):
        _failing(["param", "--debug"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ParamError):
        _failing(["param"])


def test_a_job_returns_its_result():
    assert _failing([]) == "done"


def test_a_plain_value_error_is_expected_only_from_mfspark_code():
    """A ``raise ValueError(...)`` of mfspark's own checks is a worded input error; the
    same type raised elsewhere (here: in this test) is a bug."""
    try:
        write_table(None, "out", "xml", False)  # type: ignore[arg-type]  # refused at once
    except ValueError as err:
        assert type(err) is ValueError
        assert cli.error_message(err) == (str(err), cli.EXIT_BAD_INPUT)
    else:
        pytest.fail("write_table accepted an unknown format")
    try:
        raise ValueError("no training ratings: nothing to fit")
    except ValueError as err:
        assert cli.error_message(err) is None
    assert cli.error_message(InvalidRatingsError("r.csv: 1 bad row")) == \
        ("r.csv: 1 bad row", cli.EXIT_BAD_INPUT)


JVM_OOM = ("An error occurred while calling o123.count.\n: org.apache.spark.SparkException: "
           "Job aborted due to stage failure: Task 3 in stage 7.0 failed 1 times, most recent "
           "failure: Lost task 3.0 (TID 21): java.lang.OutOfMemoryError: Java heap space\n"
           "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)\n")


def test_out_of_memory_names_the_settings_to_change():
    message = cli.out_of_memory_message(PySparkException(message=JVM_OOM))
    assert message is not None and "java.lang.OutOfMemoryError: Java heap space" in message
    for setting in ("spark.driver.memory", "spark.executor.memory", "--user-blocks",
                    "--item-blocks"):
        assert setting in message
    assert "\n" not in message
    assert cli.error_message(PySparkException(message=JVM_OOM))[1] == cli.EXIT_OUT_OF_MEMORY


def test_out_of_memory_is_found_in_a_cause_and_in_python():
    try:
        try:
            raise PySparkException(message=JVM_OOM)
        except PySparkException as inner:
            raise RuntimeError("fit failed") from inner
    except RuntimeError as outer:
        assert cli.out_of_memory_message(outer) is not None
    assert "MemoryError" in cli.out_of_memory_message(MemoryError())
    assert cli.out_of_memory_message(RuntimeError("Java gateway exited")) is None
    assert cli.error_message(RuntimeError("executor lost")) is None


def test_a_killed_python_worker_is_reported_as_memory():
    """The operating system or a container limit kills a worker that outgrows its memory:
    Spark only says the worker exited; the job names the memory settings and the blocks."""
    killed = PySparkException(message=(
        "Job aborted due to stage failure: Task 1 in stage 12.0 failed 1 times: "
        "org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)"))
    message = cli.out_of_memory_message(killed)
    assert message is not None and "Python worker was killed" in message
    for setting in ("spark.executor.memoryOverhead", "--item-blocks", "--block-memory-mb"):
        assert setting in message
    assert cli.error_message(killed)[1] == cli.EXIT_OUT_OF_MEMORY


def test_an_error_whose_text_fails_is_still_classified():
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("the JVM is gone")

    err = Unprintable()
    err.__cause__ = PySparkException(message=JVM_OOM)
    assert cli.out_of_memory_message(err) is not None


def _lost_jvm_error() -> Exception:
    """The chain a job gets when the JVM stops mid-job: the action's error (which can no
    longer fetch its own text) and, raised while cleaning up after it, py4j's."""
    from py4j.protocol import Py4JError

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ConnectionRefusedError("the JVM is gone")

    try:
        try:
            raise Unprintable()
        except Unprintable:
            raise Py4JError("py4j.reflection.TypeUtil.isInstanceOf does not exist in the JVM")
    except Py4JError as err:
        return err


def _stopping_context_error() -> BaseException:
    """What a call gets from a SparkContext that Spark is stopping (seen at 4M users in a
    1 GiB driver)."""
    from py4j.protocol import Py4JError

    return Py4JError(
        "An error occurred while calling o694.collectToPython.\n: java.lang.NullPointer"
        "Exception: Cannot invoke \"org.apache.spark.scheduler.DAGScheduler.cleanupQueryJobs"
        "(long)\" because the return value of \"org.apache.spark.SparkContext.dagScheduler()"
        "\" is null")


@pytest.mark.parametrize("exit_code", [52, None])
@pytest.mark.parametrize("lost", [_lost_jvm_error, _stopping_context_error])
def test_a_jvm_stopped_mid_job_is_reported_as_memory_only_if_it_exited(monkeypatch,
                                                                       exit_code, lost):
    from types import SimpleNamespace

    from pyspark import SparkContext

    import subprocess

    def wait(timeout=None):
        if exit_code is None:
            raise subprocess.TimeoutExpired("java", timeout)
        return exit_code

    gateway = SimpleNamespace(proc=SimpleNamespace(wait=wait))
    monkeypatch.setattr(SparkContext, "_gateway", gateway)
    message = cli.out_of_memory_message(lost())
    if exit_code is None:  # still running: not a lost JVM, a bug to show in full
        assert message is None and cli.error_message(lost()) is None
        return
    assert message is not None and message.startswith("the Spark JVM stopped during the job")
    for setting in ("spark.driver.memory", "--user-blocks", "--block-memory-mb"):
        assert setting in message
    assert "\n" not in message
    assert cli.error_message(lost())[1] == cli.EXIT_OUT_OF_MEMORY


def test_a_memory_setting_spark_refuses_is_its_own_sentence():
    refused = PySparkException(message=(
        "An error occurred while calling None.org.apache.spark.api.java.JavaSparkContext.\n"
        ": org.apache.spark.SparkIllegalArgumentException: [INVALID_DRIVER_MEMORY."
        "SYSTEM_MEMORY] Insufficient driver memory: System memory 268435456 must be at least "
        "471859200.\nPlease increase heap size using the --driver-memory option or "
        "\"spark.driver.memory\" in Spark configuration. SQLSTATE: F0000\n"
        "\tat org.apache.spark.memory.UnifiedMemoryManager$.getMaxMemory(...)\n"))
    assert cli.error_message(refused) == (
        "[INVALID_DRIVER_MEMORY.SYSTEM_MEMORY] Insufficient driver memory: System memory "
        "268435456 must be at least 471859200. Please increase heap size using the "
        "--driver-memory option or \"spark.driver.memory\" in Spark configuration.",
        cli.EXIT_BAD_INPUT)
