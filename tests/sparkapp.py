"""What the spark-submit tests need around a run: the packaged library, a Python without
mfspark for the executors, the submit command a user would type, and readers for what a run
leaves behind (its Spark event log and its saved model)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow.parquet as pq

from cluster import LOOPBACK

ROOT = Path(__file__).resolve().parent.parent


def build_dist(dest: Path) -> Path:
    """``make dist`` into ``dest``; returns the ``.zip`` for ``--py-files``.

    The interpreter running the tests is the installed environment, so make is told to use
    it (``VENV``) and not to re-install it (``-o`` its stamp).
    """
    venv = Path(sys.prefix)
    proc = subprocess.run(["make", "-s", "-o", str(venv / ".mfspark-installed"), "dist",
                           f"DIST={dest}", f"VENV={venv}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    zips = sorted(dest.glob("mfspark-*.zip"))
    assert len(zips) == 1 and sorted(dest.glob("mfspark-*-py3-none-any.whl")), list(dest.iterdir())
    return zips[0]


def python_without_mfspark(dest: Path) -> Path:
    """A Python with numpy, pandas, pyarrow (and pyspark) but **not** mfspark: a venv whose
    one ``.pth`` line adds this environment's site-packages as a plain path entry.  A plain
    entry's own ``.pth`` files are not run, so mfspark's editable-install hook stays off;
    the executors can only get mfspark from what spark-submit ships.  Checked here."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True,
                   timeout=120)
    python = dest / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site.strip()) / "_mfspark_test_deps.pth").write_text("\n".join(paths) + "\n")
    probe = ("import importlib.util as u, numpy, pandas, pyarrow, pyspark; "
             "print(u.find_spec('mfspark'))")
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=dest,
                           timeout=120)
    assert found.stdout.strip() == "None", (found.stdout, found.stderr)
    return python


def submit_args(master: str, py_files: Path, python: Path, out: str, ratings: str,
                conf: dict[str, str] | None = None, job: tuple[str, ...] = ()) -> list[str]:
    """The arguments of ``spark-submit`` as the README gives them: the properties file, the
    zip on ``--py-files``, the executors' Python, then ``jobs/train.py`` and its flags.
    ``conf`` overrides settings (test sizing, event log)."""
    settings = {"spark.pyspark.python": str(python), "spark.driver.host": LOOPBACK,
                "spark.driver.bindAddress": LOOPBACK, **(conf or {})}
    flags = [x for k, v in settings.items() for x in ("--conf", f"{k}={v}")]
    return ["--master", master, "--properties-file", str(ROOT / "conf" / "spark-defaults.conf"),
            "--py-files", str(py_files), *flags, str(ROOT / "jobs" / "train.py"),
            "--config", str(ROOT / "conf" / "movielens.toml"), "--ratings", ratings,
            "--out", out, *job]


def event_log_conf(directory: Path) -> dict[str, str]:
    """Settings that make a run write its (uncompressed) event log, block updates included."""
    directory.mkdir(parents=True, exist_ok=True)
    return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": directory.as_uri(),
            "spark.eventLog.compress": "false", "spark.eventLog.logBlockUpdates.enabled": "true"}


@dataclass
class AppEvents:
    """What an application's event log says about executors and tasks."""

    app_id: str = ""
    """The application's ID (``app-...`` on a standalone cluster, ``local-...`` in local mode)."""
    executor_ui_port: dict[str, int] = field(default_factory=dict)
    """Executor ID -> web UI port of the worker that ran it (from its log URLs)."""
    tasks: Counter = field(default_factory=Counter)
    """Successful tasks per executor ID."""
    failures: Counter = field(default_factory=Counter)
    """Failed task attempts per end reason (e.g. ``ExecutorLostFailure``, ``FetchFailed``)."""
    removed: dict[str, int] = field(default_factory=dict)
    """Executor ID -> position in the log of the event saying it was gone."""
    cached: list[tuple[int, str, str]] = field(default_factory=list)
    """(position in the log, executor ID, block ID) of every RDD block cached on an executor."""
    stage_attempts: int = 0
    """Stage attempts beyond the first (resubmitted stages)."""

    def tasks_by_worker(self) -> dict[int, int]:
        by: Counter = Counter()
        for ex, n in self.tasks.items():
            by[self.executor_ui_port.get(ex, -1)] += n
        return dict(by)


def read_event_log(directory: Path) -> AppEvents:
    """Parse the single application event log in ``directory`` (a plain file, or Spark 4's
    rolling ``eventlog_v2_<app>/events_<n>_<app>`` files, read in order)."""
    apps = [p for p in directory.iterdir() if not p.name.startswith(".")]
    assert len(apps) == 1, f"expected one application's event log in {directory}, found {apps}"
    parts = (sorted(apps[0].glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
             if apps[0].is_dir() else [apps[0]])
    lines = [line for part in parts for line in part.read_text().splitlines()]
    events = AppEvents(app_id=apps[0].name.removeprefix("eventlog_v2_"))
    for seq, line in enumerate(lines):
        e = json.loads(line)
        kind = e["Event"]
        if kind == "SparkListenerExecutorAdded":
            url = next(iter(e["Executor Info"]["Log Urls"].values()))
            events.executor_ui_port[e["Executor ID"]] = urlparse(url).port
        elif kind == "SparkListenerTaskEnd":
            info, reason = e["Task Info"], e["Task End Reason"]["Reason"]
            if reason == "Success":
                events.tasks[info["Executor ID"]] += 1
            else:
                events.failures[reason] += 1
        elif kind == "SparkListenerExecutorRemoved":
            events.removed[e["Executor ID"]] = seq
        elif kind == "SparkListenerStageSubmitted" and e["Stage Info"]["Stage Attempt ID"] > 0:
            events.stage_attempts += 1
        elif kind == "SparkListenerBlockUpdated":
            b = e["Block Updated Info"]
            stored = b["Memory Size"] > 0 or b["Disk Size"] > 0
            executor = b["Block Manager ID"]["Executor ID"]
            if b["Block ID"].startswith("rdd_") and stored and executor != "driver":
                events.cached.append((seq, executor, b["Block ID"]))
    return events


def read_factors(model_dir: Path, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, biases, factors) of one side of a saved model, sorted by ID."""
    table = pq.read_table(model_dir / f"{side}_factors").to_pydict()
    order = np.argsort(table["id"], kind="stable")
    return (np.asarray(table["id"])[order], np.asarray(table["bias"])[order],
            np.asarray(table["features"], dtype=np.float64)[order])


def max_model_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between two saved models' biases and factors (same IDs
    required)."""
    worst = 0.0
    for side in ("user", "item"):
        ids_a, bias_a, feat_a = read_factors(a, side)
        ids_b, bias_b, feat_b = read_factors(b, side)
        assert np.array_equal(ids_a, ids_b), f"{side} IDs differ"
        worst = max(worst, float(np.max(np.abs(bias_a - bias_b))),
                    float(np.max(np.abs(feat_a - feat_b))))
    return worst


#: The run every spark-submit test makes (MovieLens 100K, rank 8 from conf/movielens.toml).
JOB = ("--iterations", "4", "--seed", "0")

#: Sizes for this 2-core test machine, overriding conf/spark-defaults.conf's cluster sizes.
TEST_SIZING = {"spark.driver.memory": "1g", "spark.executor.memory": "1g",
               "spark.executor.cores": "1", "spark.sql.shuffle.partitions": "4",
               "spark.ui.enabled": "false"}
