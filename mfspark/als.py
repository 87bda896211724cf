"""The ALS training loop on indexed ratings: it reads like the math.

::

    users = half_step(ratings_by_user, items)   # solve every (u_i, b_i) given (V, c)
    items = half_step(ratings_by_item, users)   # solve every (v_j, c_j) given (U, b)

Implicit feedback runs the two half-steps the other way round, as MLlib's ``ALS.train``
does: the users start seeded, items are solved first and every iteration ends by fitting
the users, the side recommendations are queried by, to the final items
(:func:`half_step_order`).

Each half-step's factors are written under ``work_dir`` (``iter-NNNN/user``,
``iter-NNNN/item``; the seeded start is ``iter-0000/item``, or ``iter-0000/user`` for
implicit feedback) and read back for the next broadcast, so every half-iteration's state is
on disk and no Spark lineage grows with the iteration count.  The objective J of MODEL.md is
recorded after both half-steps of every iteration from the residuals the solver returns,
without another pass over the ratings.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark import Accumulator
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mfspark import evaluate
from mfspark.config import ALSParams
from mfspark.halfstep import Side, decode, half_step, partition_ratings
from mfspark.indexing import IdIndex, id_lookup, with_indices
from mfspark.io.checkpoints import iteration_dir, write_entry
from mfspark.io.factors import read_side, write_side
from mfspark.solve import gather_limit, init_factors, penalty

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


@dataclass
class ALSResult:
    """The fitted state: global mean, both sides, and one history entry per iteration."""

    mu: float
    users: Side
    items: Side
    history: list[dict[str, float]] = field(default_factory=list)


def default_blocks(indexed: DataFrame) -> int:
    """Twice the cluster's parallelism: every core busy, groups of moderate size."""
    return max(2, 2 * indexed.sparkSession.sparkContext.defaultParallelism)


def partition(indexed: DataFrame, user_counts: np.ndarray, item_counts: np.ndarray,
              params: ALSParams, lookup: tuple[np.ndarray, np.ndarray] | None = None
              ) -> PartitionedRatings:
    """Persist the ratings (``user_idx``, ``item_idx``, ``rating``; with ``lookup``, the
    original integral ``user``, ``item`` and ``rating``: see
    :func:`mfspark.halfstep.partition_ratings`) partitioned by user block and by item
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


def partition_ids(ratings: DataFrame, users: IdIndex, items: IdIndex,
                  params: ALSParams) -> PartitionedRatings:
    """:func:`partition` for ratings keyed by their original IDs (``user``, ``item``,
    ``rating``): integral IDs are looked up inside the partitioning pass
    (:func:`mfspark.indexing.id_lookup`), other IDs are joined to their indices first."""
    lookup = id_lookup(users, items)
    frame = ratings if lookup is not None else with_indices(ratings, users, items)
    return partition(frame, users.counts, items.counts, params, lookup)


def objective(sse: float, users: Side, items: Side, params: ALSParams,
              reg_counts: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """J = squared error (implicit feedback: the confidence-weighted loss over all pairs) +
    the (possibly count-weighted) penalty on both sides; ``reg_counts`` replaces the rating
    counts that weight the penalty (implicit feedback: the counts of values > 0)."""
    count_u, count_i = reg_counts if reg_counts is not None else (users.counts, items.counts)
    return (sse + penalty(users.factors, users.bias, count_u, params.reg, params.reg_scale)
            + penalty(items.factors, items.bias, count_i, params.reg, params.reg_scale))


# --- issue 8: implicit feedback ---
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


def half_step_order(params: ALSParams) -> tuple[str, str]:
    """The side every iteration solves first and the side it solves second; the second side
    is the one that starts from seeded factors (``iter-0000/<second>``).

    Explicit ratings: users first from seeded items (MODEL.md's order).  Implicit feedback:
    items first from seeded users, MLlib's order, so the last half-step fits the users to
    the final items (over 600 seeds on MovieLens 100K it reaches MLlib's objective; see
    ``benchmarks/implicit_seeds.py``).
    """
    return ("item", "user") if params.implicit_prefs else ("user", "item")


def fit(ratings: PartitionedRatings, params: ALSParams, work_dir: str,
        test: DataFrame | None = None, initial: np.ndarray | None = None,
        on_iteration: Callable[[dict[str, float]], None] | None = None,
        resume: ALSResult | None = None, probe: Accumulator | None = None) -> ALSResult:
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
        Starting factors of the seeded side (:func:`half_step_order`: the items for explicit
        ratings, the users for implicit feedback); by default
        :func:`mfspark.solve.init_factors` with the seed.
    on_iteration : callable, optional
        Called with each history entry as soon as the iteration ends.
    resume : ALSResult, optional
        The state after ``len(resume.history)`` completed iterations (read back from
        ``work_dir`` by :func:`mfspark.resume.resume_point`): the loop continues from there.
    probe : Accumulator, optional
        Records each block's peak solver memory (:func:`mfspark.halfstep.memory_probe`).
    """
    spark = ratings.by_user.sparkSession
    rank = params.rank
    # issue 8: the implicit model has no global mean (its penalty counts values > 0 only);
    # neither has the nonnegative model without biases: u . v >= 0 added to a fixed mu could
    # never predict below the mean (the model is MLlib's nonnegative u . v)
    mu = (0.0 if params.implicit_prefs or (params.nonnegative and not params.fit_biases)
          else ratings.mu)
    alpha = params.alpha if params.implicit_prefs else None
    reg_counts = ((positive_counts(ratings.by_user, len(ratings.user_counts)),
                   positive_counts(ratings.by_item, len(ratings.item_counts)))
                  if params.implicit_prefs else None)
    max_gather = gather_limit(params.block_memory_mb, rank)
    by = {"user": ratings.by_user, "item": ratings.by_item}
    counts = {"user": ratings.user_counts, "item": ratings.item_counts}
    first, seeded = half_step_order(params)
    if resume is None:
        start = initial if initial is not None else init_factors(
            len(counts[seeded]), rank, params.seed)
        if params.nonnegative and initial is None:  # issue 8: start feasible, as MLlib
            start = np.abs(start)
        sides = {first: Side.zeros(counts[first], rank),
                 seeded: Side(np.array(start, dtype=np.float64), np.zeros(len(counts[seeded])),
                              counts[seeded])}
        write_side(spark, f"{iteration_dir(work_dir, 0)}/{seeded}", sides[seeded])
        resume = ALSResult(mu=mu, users=sides["user"], items=sides["item"])
    result = ALSResult(mu=mu, users=resume.users, items=resume.items,
                       history=list(resume.history))
    for it in range(len(result.history) + 1, params.iterations + 1):
        began = time.perf_counter()
        path = iteration_dir(work_dir, it)
        sides = {"user": result.users, "item": result.items}
        sse, after = {}, []
        for side, fixed in ((first, seeded), (seeded, first)):
            half_step(by[side], sides[fixed], mu, params.reg, params.reg_scale, side,
                      f"{path}/{side}", max_gather, probe, params.fit_biases,
                      params.nonnegative, alpha, params.cg_steps,
                      sides[side].warm_start(params.fit_biases) if params.cg_steps else None)
            sides[side], sse[side] = read_side(spark, f"{path}/{side}", counts[side], rank,
                                               what=f"iteration {it}, {side} step")
            after.append(objective(sse[side], sides["user"], sides["item"], params,
                                   reg_counts))
        users, items = sides["user"], sides["item"]
        entry = {"iteration": it, f"objective_after_{first}_step": after[0],
                 "objective": after[1],
                 # implicit feedback: sse is a weighted loss over all pairs, not an RMSE
                 "train_rmse": (math.nan if params.implicit_prefs
                                else math.sqrt(sse[seeded] / ratings.count))}
        result.users, result.items = users, items
        if test is not None and not params.implicit_prefs:
            entry["test_rmse"] = evaluate.rmse(test, users, items, mu)
        entry["seconds"] = time.perf_counter() - began
        write_entry(spark, work_dir, it, entry)
        result.history.append(entry)
        if on_iteration is not None:
            on_iteration(entry)
    return result
