"""The ALS training loop on partitioned ratings: it reads like the math.

::

    users = half_step(ratings_by_user, items)   # solve every (u_i, b_i) given (V, c)
    items = half_step(ratings_by_item, users)   # solve every (v_j, c_j) given (U, b)

Implicit feedback runs the two half-steps the other way round, as MLlib's ``ALS.train``
does (:attr:`mfspark.config.ALSParams.order`).  Each half-step's factors are written under
``work_dir`` (``iter-NNNN/user``, ``iter-NNNN/item``; the seeded start is
``iter-0000/item``, or ``iter-0000/user`` for implicit feedback) and read back for the next
broadcast, so every half-iteration's state is on disk and no Spark lineage grows with the
iteration count.  The objective J of MODEL.md is recorded after both half-steps of every
iteration from the data terms and penalties the solver returns, without another pass over
the ratings.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import Accumulator
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mfspark.config import ALSParams
from mfspark.core.normal import gather_limit
from mfspark.core.packing import decode
from mfspark.core.state import FitResult, Side, init_factors
from mfspark.engine.blocks import partition_ratings
from mfspark.engine.halfstep import half_step
from mfspark.engine.score import rmse
from mfspark.io.checkpoints import iteration_dir, write_entry
from mfspark.io.factors import read_side, write_side

log = logging.getLogger("mfspark")


@dataclass
class PartitionedRatings:
    """The two persisted, block-partitioned copies of the training ratings."""

    by_user: DataFrame
    by_item: DataFrame
    mu: float
    count: int
    user_counts: np.ndarray
    item_counts: np.ndarray
    checksum: int = 0
    """Order-free checksum of the (user_idx, item_idx, rating) triples (run fingerprint)."""
    lookup: Broadcast | None = None
    """The broadcast IDs the copies were indexed with: their lineage, kept until unpersist."""

    def unpersist(self) -> None:
        self.by_user.unpersist()
        self.by_item.unpersist()
        if self.lookup is not None:
            self.lookup.destroy()
            self.lookup = None


def log_iteration(entry: dict[str, float]) -> None:
    """One log line per iteration: objective, RMSEs, seconds."""
    test = f"  test_rmse={entry['test_rmse']:.4f}" if "test_rmse" in entry else ""
    log.info("iteration %3d  objective=%.6g  train_rmse=%.4f%s  %.2fs", entry["iteration"],
             entry["objective"], entry["train_rmse"], test, entry["seconds"])


def default_blocks(indexed: DataFrame) -> int:
    """Twice the cluster's parallelism: every core busy, groups of moderate size."""
    return max(2, 2 * indexed.sparkSession.sparkContext.defaultParallelism)


def partition(indexed: DataFrame, user_counts: np.ndarray, item_counts: np.ndarray,
              params: ALSParams, lookup: tuple[np.ndarray, np.ndarray] | None = None
              ) -> PartitionedRatings:
    """Persist the ratings (``user_idx``, ``item_idx``, ``rating``; with ``lookup``, the
    original integral ``user``, ``item`` and ``rating``: see
    :func:`mfspark.engine.blocks.partition_ratings`) partitioned by user block and by item
    block, and compute ``mu``.

    ``indexed`` is evaluated once: both packed copies come from one pass, and ``mu`` from
    the chunks' sums.
    """
    ids = indexed.sparkSession.sparkContext.broadcast(lookup) if lookup is not None else None
    try:
        by_user, by_item = partition_ratings(
            indexed, params.num_user_blocks or default_blocks(indexed),
            params.num_item_blocks or default_blocks(indexed), ids)
    except BaseException:
        if ids is not None:
            ids.destroy()
        raise
    parts = PartitionedRatings(by_user=by_user, by_item=by_item, mu=math.nan, count=0,
                               user_counts=user_counts, item_counts=item_counts, lookup=ids)
    row = by_user.agg((F.sum("rating_sum") / F.sum("n")).alias("mu"), F.sum("n").alias("n"),
                      F.sum("checksum").alias("checksum")).first()
    if not row["n"]:
        parts.unpersist()
        raise ValueError("no training ratings: nothing to fit")
    parts.mu, parts.count, parts.checksum = float(row["mu"]), int(row["n"]), int(row["checksum"])
    return parts


def positive_counts(ratings_by_block: DataFrame, n: int) -> np.ndarray:
    """Each row's number of values > 0 (MLlib's ``numExplicits``: what scales the implicit
    model's regularization), as a dense array of ``n``, counted chunk by chunk on the packed
    blocks (a row's ratings may span chunks: the partial counts are summed)."""

    def count(batches):
        for chunks in batches:
            for packed in zip(chunks["n"], chunks["rows"], chunks["cols"], chunks["ratings"]):
                rows, _, values = decode(int(packed[0]), *packed[1:])
                found, times = np.unique(rows[values > 0], return_counts=True)
                yield pd.DataFrame({"row": found.astype(np.int32), "count": times})

    table = (ratings_by_block.select("n", "rows", "cols", "ratings")
             .mapInPandas(count, "row int, count long")
             .groupBy("row").agg(F.sum("count").alias("count")).toArrow())
    counts = np.zeros(n, dtype=np.int64)
    counts[table.column("row").to_numpy()] = table.column("count").to_numpy()
    return counts


def _seed(ratings: PartitionedRatings, params: ALSParams, work_dir: str,
          initial: np.ndarray | None) -> FitResult:
    """Write the seeded side's starting factors (``iter-0000/<seeded>``; zero biases) and
    its penalty; the other side starts at zero."""
    first, seeded = params.order
    by = {"user": ratings.by_user, "item": ratings.by_item}
    counts = {"user": ratings.user_counts, "item": ratings.item_counts}
    start = initial if initial is not None else init_factors(len(counts[seeded]),
                                                              params.rank, params.seed)
    if params.nonnegative and initial is None:  # start feasible, as MLlib does
        start = np.abs(start)
    side = Side(np.array(start, dtype=np.float64), np.zeros(len(counts[seeded])),
                counts[seeded])
    reg_counts = (positive_counts(by[seeded], len(counts[seeded])) if params.implicit_prefs
                  else counts[seeded])
    penalty = params.objective().penalty(side.factors, side.bias, reg_counts)
    write_side(by[seeded].sparkSession, f"{iteration_dir(work_dir, 0)}/{seeded}", side,
               penalty)
    sides = {first: Side.zeros(counts[first], params.rank), seeded: side}
    return FitResult(mu=ratings.mu if params.has_mean else 0.0, users=sides["user"],
                     items=sides["item"], penalty={first: 0.0, seeded: float(penalty.sum())})


def fit(ratings: PartitionedRatings, params: ALSParams, work_dir: str,
        test: DataFrame | None = None, initial: np.ndarray | None = None,
        on_iteration: Callable[[dict[str, float]], None] | None = None,
        resume: FitResult | None = None, probe: Accumulator | None = None) -> FitResult:
    """Run ALS iterations up to ``params.iterations``.

    Parameters
    ----------
    ratings : PartitionedRatings
        From :func:`partition`.
    work_dir : str
        Where each half-step's Parquet and each iteration's history entry go
        (:mod:`mfspark.io.checkpoints`).
    test : DataFrame, optional
        Held-out ratings (``user_idx``, ``item_idx`` nullable, ``rating``) for a test RMSE
        per iteration.
    initial : ndarray, optional
        Starting factors of the seeded side (:attr:`mfspark.config.ALSParams.order`: the
        items for explicit ratings, the users for implicit feedback); by default
        :func:`mfspark.core.state.init_factors` with the seed.
    on_iteration : callable, optional
        Called with each history entry as soon as the iteration ends.
    resume : FitResult, optional
        The state after ``len(resume.history)`` completed iterations (read back from
        ``work_dir`` by :func:`mfspark.engine.resume.resume_point`, or returned by an earlier
        call): the loop continues from there.
    probe : Accumulator, optional
        Records each block's peak solver memory (:func:`mfspark.engine.halfstep.memory_probe`).
    """
    spark = ratings.by_user.sparkSession
    objective = params.objective()
    max_gather = gather_limit(params.block_memory_mb, params.rank)
    by = {"user": ratings.by_user, "item": ratings.by_item}
    counts = {"user": ratings.user_counts, "item": ratings.item_counts}
    first, seeded = params.order
    state = resume if resume is not None else _seed(ratings, params, work_dir, initial)
    result = FitResult(mu=state.mu, users=state.users, items=state.items,
                       history=list(state.history), penalty=dict(state.penalty))
    for it in range(len(result.history) + 1, params.iterations + 1):
        began = time.perf_counter()
        path = iteration_dir(work_dir, it)
        sides = {"user": result.users, "item": result.items}
        after = []
        for side, fixed in ((first, seeded), (seeded, first)):
            previous = sides[side].unknowns(objective.biases) if objective.cg_steps else None
            half_step(by[side], sides[fixed], result.mu, objective, side, f"{path}/{side}",
                      max_gather, probe, previous)
            sides[side], terms = read_side(spark, f"{path}/{side}", counts[side], params.rank,
                                           what=f"iteration {it}, {side} step")
            result.penalty[side] = terms.penalty
            after.append(terms.sse + terms.penalty + result.penalty[fixed])
        result.users, result.items = sides["user"], sides["item"]
        entry = {"iteration": it, f"objective_after_{first}_step": after[0],
                 "objective": after[1],
                 # implicit feedback: sse is a weighted loss over all pairs, not an RMSE
                 "train_rmse": (math.nan if params.implicit_prefs
                                else math.sqrt(terms.sse / ratings.count))}
        if test is not None and not params.implicit_prefs:
            entry["test_rmse"] = rmse(test, result.users, result.items, result.mu)
        entry["seconds"] = time.perf_counter() - began
        write_entry(spark, work_dir, it, entry)
        result.history.append(entry)
        if on_iteration is not None:
            on_iteration(entry)
    return result
