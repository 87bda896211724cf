"""The ALS training loop on partitioned ratings: it reads like the math.

::

    users = half_step(ratings_by_user, items)   # solve every (u_i, b_i) given (V, c)
    items = half_step(ratings_by_item, users)   # solve every (v_j, c_j) given (U, b)

Implicit feedback runs the two half-steps the other way round, as MLlib's ``ALS.train``
does (:attr:`mfspark.config.ALSParams.order`).  Every half-step is one Spark job
(:mod:`mfspark.engine.halfstep`) that reads the fixed side's factors from the work directory
(``iter-NNNN/user``, ``iter-NNNN/item``; the seeded start is ``iter-0000/<seeded side>``)
and writes the solved side's; no Spark lineage grows with the iteration count.  The
objective J of docs/model.md, the train RMSE and the test error are sums the same job observes:
the driver holds scalars only (counts, mu, the penalties, the history), never a factor.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from mfspark.config import ALSParams
from mfspark.core.normal import gather_limit
from mfspark.engine.blocks import Layout, block_labels, partition_ratings
from mfspark.engine.halfstep import Step, run, seed_group
from mfspark.engine.route import own_chunks, with_fixed, with_own
from mfspark.io.checkpoints import iteration_dir, write_entry
from mfspark.io.factors import factor_rows
from mfspark.io.fs import is_connect

log = logging.getLogger("mfspark")
SIDES = ("user", "item")


@dataclass
class PartitionedRatings:
    """The two persisted, block-partitioned copies of the training ratings (and of the
    held-out ones, in the copy of the side solved last) and their counts."""

    by_user: DataFrame
    by_item: DataFrame
    layouts: dict[str, Layout]
    count: int
    """Training ratings."""
    mu: float
    """Their mean."""
    checksum: int
    """Order-free checksum of the (user, item, rating) triples (the run's fingerprint)."""
    num_users: int
    num_items: int
    num_test: int = 0
    """Held-out ratings, scored after every iteration."""
    repeated: int = 0
    """Ratings (training or held-out) whose (user, item) keys repeat another's: duplicates
    that reached the blocks."""

    def copy(self, side: str) -> DataFrame:
        return self.by_user if side == "user" else self.by_item

    def size(self, side: str) -> int:
        return self.num_users if side == "user" else self.num_items

    def unpersist(self) -> None:
        self.by_user.unpersist()
        self.by_item.unpersist()


@dataclass
class Fit:
    """A fit's state on the driver: scalars and where its factors are."""

    mu: float
    work_dir: str
    history: list[dict[str, float]] = field(default_factory=list)
    penalty: dict[str, float] = field(default_factory=dict)
    """Each side's penalty term of J, from its last half-step."""

    @property
    def iterations(self) -> int:
        return len(self.history)

    def path(self, side: str) -> str:
        """Where ``side``'s current factors are."""
        return f"{iteration_dir(self.work_dir, self.iterations)}/{side}"

    def factors(self, spark: SparkSession, side: str) -> DataFrame:
        """``side``'s current factors, one row per key (``key``, ``bias``, ``features``)."""
        return factor_rows(spark, self.path(side))


def parallelism(spark: SparkSession) -> int:
    """The cores the session computes on: Spark's default parallelism (on Spark Connect,
    ``spark.default.parallelism``, or the cores of a ``local[N]`` master)."""
    if is_connect(spark):
        given = spark.conf.get("spark.default.parallelism", None)
        if given:
            return int(given)
        master = spark.conf.get("spark.master", "local[*]")
        if master.startswith("local"):
            cores = master.partition("[")[2].rstrip("]").split(",")[0]
            return (os.cpu_count() or 1) if cores in ("", "*") else int(cores)
        return int(spark.conf.get("spark.sql.shuffle.partitions", "2")) // 2 or 1
    return spark.sparkContext.defaultParallelism


def default_blocks(spark: SparkSession) -> int:
    """Twice the cluster's parallelism: every core busy, groups of moderate size."""
    return max(2, 2 * parallelism(spark))


@dataclass(frozen=True)
class DataSize:
    """How many ratings, users and items are about to be partitioned (upper bounds or
    estimates are enough: they only size the blocks)."""

    ratings: int
    users: int
    items: int

    def of(self, side: str) -> int:
        return self.users if side == "user" else self.items


def fixed_side_bytes(rows: int, params: ALSParams) -> int:
    """Bytes of a side's stored factors (with its biases) as a half-step ships them."""
    return rows * (params.rank + 1) * params.factor_bytes


def block_counts(spark: SparkSession, params: ALSParams, size: DataSize | None = None
                 ) -> dict[str, int]:
    """Blocks per side: the user's setting, else twice the parallelism, raised so that a
    block's rows in its Python worker fit :attr:`~mfspark.config.ALSParams.block_memory_mb`
    (each row ``rank + 1`` doubles): its own solved rows (``side rows / blocks``) and, when
    the other side is routed (:func:`routed`), the fixed rows it receives (at most one per
    rating: ``ratings / blocks``)."""
    given = {"user": params.num_user_blocks, "item": params.num_item_blocks}
    per_block = max(1, (params.block_memory_mb << 20) // ((params.rank + 1) * 8))
    out = {}
    for side, other in (("user", "item"), ("item", "user")):
        out[side] = given[side] or default_blocks(spark)
        if given[side] or size is None:
            continue
        rows = size.of(side)
        if fixed_side_bytes(size.of(other), params) > params.broadcast_mb << 20:
            rows = max(rows, size.ratings)
        out[side] = max(out[side], -(-rows // per_block))
    return out


def partition(ratings: DataFrame, params: ALSParams, held_out: bool = False,
              storage: StorageLevel = StorageLevel.MEMORY_AND_DISK,
              size: DataSize | None = None) -> PartitionedRatings:
    """Persist ``ratings`` (``user``, ``item``: ``long`` keys, ``rating``, and with
    ``held_out`` a boolean ``test``) partitioned by user block and by item block
    (:func:`block_counts`, from ``size`` when known), and count them; ``ratings`` is read
    once."""
    spark = ratings.sparkSession
    blocks = block_counts(spark, params, size)
    layouts = {s: Layout(blocks[s], tuple(block_labels(spark, blocks[s]))) for s in SIDES}
    if not held_out:
        from pyspark.sql import functions as F
        ratings = ratings.withColumn("test", F.lit(False))
    # held-out ratings are scored after the second half-step, in the blocks of its side
    test_side = SIDES.index(params.order[1]) if held_out else None
    by_user, by_item, stats = partition_ratings(ratings, (layouts["user"], layouts["item"]),
                                                test_side, storage=storage)
    users, items = stats
    if not users["n"]:
        by_user.unpersist()
        by_item.unpersist()
        raise ValueError("no training ratings: nothing to fit")
    return PartitionedRatings(by_user, by_item, layouts, count=int(users["n"]),
                              mu=float(users["rating_sum"]) / users["n"],
                              checksum=int(users["checksum"]), num_users=int(users["rows"]),
                              num_items=int(items["rows"]),
                              num_test=int(users["test"] + items["test"]),
                              # training repeats are in both copies, held-out ones in one
                              repeated=int(max(users["repeated"], items["repeated"])))


def routed(ratings: PartitionedRatings, params: ALSParams) -> dict[str, bool]:
    """For each side, whether its half-steps receive only the fixed rows each block
    references (the fixed side is larger than ``params.broadcast_mb``) instead of the whole
    fixed side."""
    budget = params.broadcast_mb << 20
    other = {"user": "item", "item": "user"}
    return {s: fixed_side_bytes(ratings.size(other[s]), params) > budget for s in SIDES}


def log_iteration(entry: dict[str, float]) -> None:
    """One log line per iteration: objective, RMSEs, seconds."""
    test = f"  test_rmse={entry['test_rmse']:.4f}" if "test_rmse" in entry else ""
    log.info("iteration %3d  objective=%.6g  train_rmse=%.4f%s  %.2fs", entry["iteration"],
             entry["objective"], entry["train_rmse"], test, entry["seconds"])


def fit(ratings: PartitionedRatings, params: ALSParams, work_dir: str,
        on_iteration: Callable[[dict[str, float]], None] | None = None,
        resume: Fit | None = None, initial: dict[str, DataFrame] | None = None,
        clip: tuple[float, float] | None = None, probe: bool = False) -> Fit:
    """Run ALS iterations up to ``params.iterations``.

    Parameters
    ----------
    ratings : PartitionedRatings
        From :func:`partition`; its held-out ratings get a test RMSE (and MAE) per
        iteration.
    work_dir : str
        Where each half-step's Parquet and each iteration's history entry go
        (:mod:`mfspark.io.checkpoints`).
    on_iteration : callable, optional
        Called with each history entry as soon as the iteration ends.
    resume : Fit, optional
        The state after ``resume.iterations`` complete iterations (read back by
        :func:`mfspark.engine.resume.resume_point`, or returned by an earlier call).
    initial : dict, optional
        Factors to start from, per side (``key``, ``bias``, ``features``): the seeded side
        (:attr:`mfspark.config.ALSParams.order`) starts from them where given, from
        :func:`mfspark.core.state.seeded_factors` elsewhere.
    clip : tuple, optional
        Clip held-out predictions to ``(min, max)`` before their error is taken.
    probe : bool
        Record each block's peak solver memory in the ``STATS`` rows of the factor files.
    """
    spark = ratings.by_user.sparkSession
    first, seeded = params.order
    route = routed(ratings, params)
    log.info("blocks: %s; fixed side per block: %s",
             ", ".join(f"{ratings.layouts[s].num_blocks} {s}" for s in SIDES),
             ", ".join(f"{s} step {'routed rows' if route[s] else 'whole'}" for s in SIDES))
    common = dict(objective=params.objective(), rank=params.rank,
                  max_gather=gather_limit(params.block_memory_mb, params.rank),
                  value_bytes=params.factor_bytes, gram=params.implicit_prefs, clip=clip,
                  probe=probe, seed=params.seed)
    state = resume
    if state is None:
        state = Fit(mu=ratings.mu if params.has_mean else 0.0, work_dir=work_dir)
        frame = ratings.copy(seeded)
        if initial and initial.get(seeded) is not None:
            frame = with_own(frame, own_factor_chunks(initial[seeded], ratings.layouts[seeded],
                                                      params.rank), ratings.layouts[seeded]
                             .num_blocks)
        got = run(frame, Step(seeded, mu=state.mu, route=route[first], what="seeded start",
                              **common), f"{iteration_dir(work_dir, 0)}/{seeded}",
                  group=seed_group)
        state.penalty = {first: 0.0, seeded: got["penalty"]}
    result = Fit(state.mu, work_dir, list(state.history), dict(state.penalty))
    for it in range(result.iterations + 1, params.iterations + 1):
        began = time.perf_counter()
        path = iteration_dir(work_dir, it)
        after = []
        for side, fixed in ((first, seeded), (seeded, first)):
            fixed_path = f"{iteration_dir(work_dir, it - (side == first))}/{fixed}"
            frame = with_fixed(ratings.copy(side), fixed_path, route[side],
                               ratings.layouts[side].num_blocks, gram=params.implicit_prefs)
            if params.cg_steps and (it > 1 or side == seeded):
                # conjugate gradient from the side's last factors (the first side has none
                # before its first solve: it starts at zero)
                frame = with_own(frame, own_chunks(frame, f"{iteration_dir(work_dir, it - 1)}"
                                                          f"/{side}"),
                                 ratings.layouts[side].num_blocks)
            got = run(frame, Step(side, mu=result.mu, route=route[fixed],
                                  what=f"iteration {it}, {side} step", **common),
                      f"{path}/{side}")
            result.penalty[side] = got["penalty"]
            after.append(got["sse"] + got["penalty"] + result.penalty[fixed])
        entry = {"iteration": it, f"objective_after_{first}_step": after[0],
                 "objective": after[1],
                 # implicit feedback: sse is a weighted loss over all pairs, not an RMSE
                 "train_rmse": (math.nan if params.implicit_prefs
                                else math.sqrt(got["sse"] / ratings.count))}
        if got["test_n"] and not params.implicit_prefs:
            entry["test_rmse"] = math.sqrt(got["test_sse"] / got["test_n"])
            entry["test_mae"] = got["test_sae"] / got["test_n"]
        entry["seconds"] = time.perf_counter() - began
        write_entry(spark, work_dir, it, entry)
        result.history.append(entry)
        if on_iteration is not None:
            on_iteration(entry)
    return result


def own_factor_chunks(factors: DataFrame, layout: Layout, rank: int) -> DataFrame:
    """Factor rows (``key``, ``features``, optional ``bias``) as blobs addressed to the
    blocks of their keys (``_block``, ``blob``), for a side's ``OWN`` rows."""
    import numpy as np
    import pandas as pd

    from mfspark.core.packing import encode_factors

    has_bias = "bias" in factors.columns

    def encode(batches):
        for pdf in batches:
            keys = pdf["key"].to_numpy(np.int64)
            feats = (np.stack(pdf["features"].to_numpy()) if len(pdf)
                     else np.zeros((0, rank)))
            bias = pdf["bias"].to_numpy(np.float64) if has_bias else np.zeros(len(keys))
            labels = layout.label_of(keys)
            for label in np.unique(labels):
                sel = labels == label
                yield pd.DataFrame({"_block": [int(label)],
                                    "blob": [encode_factors(keys[sel], bias[sel], feats[sel])]})

    columns = ["key", "features"] + (["bias"] if has_bias else [])
    return factors.select(*columns).mapInPandas(encode, "_block int, blob binary")
