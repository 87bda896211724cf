"""Continuing a crashed run from its last complete iteration.

A run records at its start (``OUT/iterations/_run.json``) the settings that determine its
result and a fingerprint of its training ratings.  ``--resume`` accepts only a run with the
same record (the iteration count may differ: a run can be extended) and continues after its
last complete iteration.  As every half-step's factors are stored exactly (float64 Parquet)
and each half-step depends only on the previous one, the resumed run ends with the same
model as an uninterrupted run.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import SparkSession

from mfspark.config import ALSParams, JobConfig, settings_record
from mfspark.engine.loop import Fit, PartitionedRatings
from mfspark.io import checkpoints, fs
from mfspark.io.factors import read_terms

log = logging.getLogger("mfspark")


class ResumeError(RuntimeError):
    """The stored run cannot be continued with these settings or this input."""


def run_record(config: JobConfig, ratings: PartitionedRatings,
               counts: dict[str, int]) -> dict[str, Any]:
    """What identifies a run: every result-determining setting and the input fingerprint."""
    record = settings_record(config)
    del record["als"]["iterations"], record["out"]
    return {**record,
            # exact integers only: mu is a float sum whose last bit may depend on the order
            # Spark merges partial sums in, and would refuse a genuine resume
            "fingerprint": {"counts": counts, "num_train": ratings.count,
                            "checksum": ratings.checksum,
                            "num_users": ratings.num_users,
                            "num_items": ratings.num_items,
                            "num_test": ratings.num_test}}


def _differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(current, dict):
        return [d for key in sorted(set(stored) | set(current))
                for d in _differences(stored.get(key), current.get(key), f"{prefix}{key}.")]
    return [] if stored == current else [f"{prefix.rstrip('.')}: {stored!r} then, {current!r} now"]


def start(spark: SparkSession, work_dir: str, record: dict[str, Any]) -> None:
    """Begin a fresh run: clear ``work_dir`` and record the run."""
    fs.delete(spark, work_dir)
    checkpoints.write_run(spark, work_dir, record)


def resume_point(spark: SparkSession, work_dir: str, record: dict[str, Any],
                 ratings: PartitionedRatings, params: ALSParams) -> Fit | None:
    """The state to continue from, or None when nothing usable is stored (then the run
    starts afresh).  Raises :class:`ResumeError` if the stored run is a different one."""
    stored = checkpoints.read_run(spark, work_dir)
    if stored is None:
        log.warning("nothing to resume in %s (no %s): starting afresh", work_dir,
                    checkpoints.RUN_FILE)
        return None
    differ = _differences(stored, record)
    if differ:
        raise ResumeError(f"cannot resume the run in {work_dir}: it was started with other "
                          f"settings or input ({'; '.join(differ)}). Rerun without --resume "
                          "to start afresh, or restore the original settings.")
    first, seeded = params.order
    last = checkpoints.last_complete(spark, work_dir, params.iterations, seeded)
    if last is None:
        log.warning("no complete iteration in %s: starting afresh", work_dir)
        return None
    where = checkpoints.iteration_dir(work_dir, last)
    penalty = {first: 0.0}
    for side in (seeded, first) if last > 0 else (seeded,):
        penalty[side] = read_terms(spark, f"{where}/{side}").penalty
    state = Fit(mu=ratings.mu if params.has_mean else 0.0, work_dir=work_dir,
                history=checkpoints.read_history(spark, work_dir, last), penalty=penalty)
    log.info("resuming after iteration %d of %d from %s", last, params.iterations, work_dir)
    return state
