"""The training run's state on disk, under ``OUT/iterations/``.

::

    _run.json                  the settings and input fingerprint the run started with
    iter-0000/item/            seeded initial item factors (Parquet, half-step layout);
                               implicit feedback seeds the users: iter-0000/user/
    iter-NNNN/user/, item/     factors after iteration N's half-steps
    iter-NNNN/history.json     iteration N's history entry, written after both half-steps

Spark commits each Parquet directory with a ``_SUCCESS`` file; an iteration is complete when
both of its half-steps are committed and its ``history.json`` exists.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import SparkSession

from mfspark.io import fs

RUN_FILE = "_run.json"
SUCCESS = "_SUCCESS"


def iteration_dir(work_dir: str, iteration: int) -> str:
    """Where iteration ``iteration``'s factors and history live."""
    return f"{work_dir}/iter-{iteration:04d}"


def write_run(spark: SparkSession, work_dir: str, run: dict[str, Any]) -> None:
    """Record what the run is (settings and input fingerprint)."""
    fs.write_text(spark, f"{work_dir}/{RUN_FILE}", json.dumps(run, indent=2, sort_keys=True))


def read_run(spark: SparkSession, work_dir: str) -> dict[str, Any] | None:
    """The recorded run, or None when ``work_dir`` holds none."""
    path = f"{work_dir}/{RUN_FILE}"
    return json.loads(fs.read_text(spark, path)) if fs.exists(spark, path) else None


def write_entry(spark: SparkSession, work_dir: str, iteration: int,
                entry: dict[str, float]) -> None:
    """Store one iteration's history entry beside its factors (the iteration's commit)."""
    fs.write_text(spark, f"{iteration_dir(work_dir, iteration)}/history.json", json.dumps(entry))


def read_history(spark: SparkSession, work_dir: str, last: int) -> list[dict[str, float]]:
    """The history entries of iterations ``1..last``."""
    return [json.loads(fs.read_text(spark, f"{iteration_dir(work_dir, it)}/history.json"))
            for it in range(1, last + 1)]


def is_complete(spark: SparkSession, work_dir: str, iteration: int,
                seeded: str = "item") -> bool:
    """Whether iteration ``iteration`` (0: the initial factors of the ``seeded`` side) is
    fully on disk."""
    path = iteration_dir(work_dir, iteration)
    if iteration == 0:
        return fs.exists(spark, f"{path}/{seeded}/{SUCCESS}")
    return all(fs.exists(spark, p) for p in (f"{path}/user/{SUCCESS}", f"{path}/item/{SUCCESS}",
                                              f"{path}/history.json"))


def last_complete(spark: SparkSession, work_dir: str, most: int,
                  seeded: str = "item") -> int | None:
    """The last iteration ``k <= most`` such that iterations ``0..k`` are all complete, or
    None when not even the initial factors (of the ``seeded`` side) are."""
    last = None
    for it in range(0, most + 1):
        if not is_complete(spark, work_dir, it, seeded):
            break
        last = it
    return last
