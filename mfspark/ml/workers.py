"""Whether Spark's Python workers can run mfspark's pandas UDFs, checked before ``fit``.

MLlib's ALS runs in the JVM; mfspark's half-steps are grouped pandas UDFs, so every
executor starts a Python worker that imports NumPy, pandas and PyArrow.  A classic session
starts its workers with the interpreter pyspark fixed when its ``SparkContext`` started
(``SparkContext.pythonExec``): the ``PYSPARK_PYTHON`` environment variable, set by
``spark-submit`` from ``spark.pyspark.python``, else ``python3`` on the ``PATH``.  A script
run by a virtualenv's Python without ``PYSPARK_PYTHON`` therefore starts the *system*
``python3``, and the first UDF fails deep inside a worker with
``ModuleNotFoundError: No module named 'pandas'``.

:func:`check_workers` runs that interpreter once (a subprocess with a short timeout, cached
per interpreter for the life of this process) and raises :class:`WorkerPythonError` with the
fix when it is missing, cannot import the three libraries, or is another Python version than
the driver's.  It checks only what this machine can: a local master (``local``,
``local[N]``, ``local-cluster[...]``) on a classic session.  On a cluster master the
executors' interpreter lives on other machines, and a Spark Connect client does not know the
server's; both are skipped, and a missing library surfaces as Spark's own worker error.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys

from pyspark.sql import SparkSession

from mfspark.errors import MfsparkValueError
from mfspark.io.fs import is_connect

#: What the half-steps import in every Python worker.
WORKER_MODULES = ("numpy", "pandas", "pyarrow")

#: Seconds a probe of the worker interpreter may take (importing pandas and PyArrow).
PROBE_TIMEOUT = 60.0

_PROBE = ("import sys\n"
          "missing = []\n"
          "for name in {modules!r}:\n"
          "    try:\n"
          "        __import__(name)\n"
          "    except Exception as err:\n"
          "        missing.append(f'{{name}} ({{type(err).__name__}}: {{err}})')\n"
          "print('%d.%d' % sys.version_info[:2])\n"
          "print('; '.join(missing))\n")


class WorkerPythonError(MfsparkValueError):
    """Spark's Python workers would start an interpreter that cannot run mfspark's UDFs."""


def worker_python(spark: SparkSession) -> str | None:
    """The interpreter this session starts its local Python workers with, or None when it is
    not checkable here (Spark Connect, or a master other than ``local*``)."""
    if is_connect(spark):
        return None
    context = spark.sparkContext
    if not context.master.startswith("local"):
        return None
    return context.pythonExec


@functools.lru_cache(maxsize=None)
def _probe(executable: str) -> tuple[str | None, str]:
    """``(Python version "X.Y" or None if it did not run, what went wrong)``."""
    try:
        done = subprocess.run([executable, "-c", _PROBE.format(modules=WORKER_MODULES)],
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "", ""  # too slow to tell here: not an error, Spark reports what it finds
    except OSError as err:
        return None, f"it cannot be started ({err})"
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) < 2:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"it exited with status {done.returncode} ({last})"
    return lines[-2].strip(), lines[-1].strip()


def check_interpreter(executable: str) -> None:
    """Raise :class:`WorkerPythonError` unless ``executable`` exists, is this driver's
    Python version and imports :data:`WORKER_MODULES`."""
    found = shutil.which(executable)
    problem = ""
    if found is None:
        problem = "it was not found" + ("" if os.sep in executable else " on the PATH")
    else:
        version, missing = _probe(found)
        driver = "%d.%d" % sys.version_info[:2]
        if version is None:
            problem = missing
        elif version == "":
            logging.getLogger("mfspark").warning(
                "could not check the Python workers' interpreter %s within %.0f s", found,
                PROBE_TIMEOUT)
        elif missing:
            problem = f"it cannot import {missing}"
        elif version != driver:
            problem = f"it is Python {version} and this driver Python {driver}"
    if problem:
        raise WorkerPythonError(
            f"Spark starts its Python workers with {executable!r}, but {problem}. mfspark's "
            f"ALS runs {', '.join(WORKER_MODULES)} in those workers (MLlib's ALS needs "
            f"none). Set the environment variable PYSPARK_PYTHON={sys.executable} (this "
            f"driver's interpreter) before the SparkSession starts, or pass --conf "
            f"spark.pyspark.python={sys.executable} to spark-submit")


def check_workers(spark: SparkSession) -> None:
    """Check the interpreter of this session's local Python workers
    (:func:`check_interpreter`); nothing to check on a cluster or Spark Connect."""
    executable = worker_python(spark)
    if executable is not None:
        check_interpreter(executable)
