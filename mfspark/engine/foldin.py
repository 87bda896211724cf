"""One half-step against a given fixed side: the exact fold-in of docs/model.md's update.

A fold-in solves the rows of one side (say the users) given a model's other side, exactly as
a half-step of a fit does, but from factors that no previous half-step wrote::

    fixed = start(ratings_by_item, model_items)     # the model's (V, c) for the items rated
    users = half_step(ratings_by_user, fixed)       # every (u_i, b_i) given (V, c)

The first job is the seeded start of :mod:`mfspark.engine.halfstep` fed with the given
factors (every fixed row a block references is given, so none is drawn at random); it writes
the fixed side in the layout a half-step reads, routed rows included when the fixed side is
too large to send whole.  Implicit feedback adds ``Y^T Y`` of the *whole* fixed side (every
unobserved pair counts, not only the rows referenced): partial Gram matrices summed from the
given factors where they are, appended to the fixed side's files.  The driver holds scalars
only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mfspark.config import ALSParams
from mfspark.core.implicit import fixed_gramian
from mfspark.core.normal import gather_limit
from mfspark.engine.halfstep import Step, run, seed_group
from mfspark.engine.loop import PartitionedRatings, own_factor_chunks, routed
from mfspark.engine.route import with_fixed, with_own
from mfspark.io.factors import FACTOR_WRITE_OPTIONS, GRAM, SOLUTION_SCHEMA, factor_rows

OTHER = {"user": "item", "item": "user"}


@dataclass(frozen=True)
class Solved:
    """A side solved against a fixed one: where its factors are and its terms of J."""

    factors: DataFrame
    """One row per solved row: ``key``, ``bias``, ``features``."""
    rows: int
    """Rows solved."""
    sse: float
    """Their data term (explicit ratings: squared residuals of the ratings solved on)."""
    penalty: float
    """Their penalty ``sum_i lam_i (||u_i||^2 + b_i^2)``."""


def gram_rows(fixed: DataFrame, biases: bool) -> DataFrame:
    """The fixed side's Gram matrix (:func:`mfspark.core.implicit.fixed_gramian`) as partial
    sums, one ``GRAM`` row of :data:`mfspark.io.factors.SOLUTION_SCHEMA` per partition of
    ``fixed`` (``key``, ``bias``, ``features``): the rows a half-step adds up."""
    columns = [f.split()[0] for f in SOLUTION_SCHEMA.split(", ")]

    def partial(batches):
        gram = None
        for pdf in batches:
            if not len(pdf):
                continue
            Y = np.stack([np.asarray(f, dtype=np.float64) for f in pdf["features"]])
            part = fixed_gramian(Y, pdf["bias"].to_numpy(np.float64), biases)
            gram = part if gram is None else gram + part
        if gram is not None:
            yield pd.DataFrame([(-1, 0, GRAM, -1, np.ascontiguousarray(gram).tobytes(), 0.0,
                                 0.0, 0.0, 0.0, 0, None, 0, 0, 0)], columns=columns)

    return fixed.select("key", "bias", "features").mapInPandas(partial, SOLUTION_SCHEMA)


def solve_against(ratings: PartitionedRatings, side: str, fixed: DataFrame,
                  params: ALSParams, mu: float, work_dir: str) -> Solved:
    """Solve every ``side`` row of ``ratings`` exactly against the ``fixed`` factors of the
    other side (``key``, ``bias``, ``features``, keyed like ``ratings``).

    Every other-side key that ``ratings`` references must be in ``fixed`` (the caller drops
    ratings of unknown rows first); ``fixed`` may hold more rows, and for implicit feedback
    it must be the whole side, since its Gram matrix enters every row's system.  The rows
    solve the objective of ``params`` exactly (conjugate gradient is off); ``mu`` is the
    model's global mean.  Writes ``work_dir/<other>`` (the fixed side as read) and
    ``work_dir/<side>`` (the solution).
    """
    other = OTHER[side]
    params = replace(params, cg_steps=0)
    route = routed(ratings, params)
    common = dict(objective=params.objective(), rank=params.rank, mu=mu,
                  max_gather=gather_limit(params.block_memory_mb, params.rank),
                  value_bytes=params.factor_bytes, seed=params.seed)
    fixed_path, solved_path = f"{work_dir}/{other}", f"{work_dir}/{side}"
    layout = ratings.layouts[other]
    given = with_own(ratings.copy(other), own_factor_chunks(fixed, layout, params.rank),
                     layout.num_blocks)
    run(given, Step(other, route=route[side], what=f"fold-in, the {other}s given", **common),
        fixed_path, group=seed_group)
    if params.implicit_prefs:
        (gram_rows(fixed, params.fit_biases).write.mode("append")
         .options(**FACTOR_WRITE_OPTIONS).parquet(fixed_path))
    frame = with_fixed(ratings.copy(side), fixed_path, route[side],
                       ratings.layouts[side].num_blocks, gram=params.implicit_prefs)
    got = run(frame, Step(side, what=f"fold-in, {side} step", **common), solved_path)
    return Solved(factor_rows(ratings.by_user.sparkSession, solved_path, params.rank),
                  rows=int(got["rows"]), sse=float(got["sse"]), penalty=float(got["penalty"]))


def known_only(ratings: DataFrame, column: str, keys: DataFrame) -> DataFrame:
    """The ``ratings`` whose ``column`` key is among ``keys[key]`` (a semi-join: the
    ratings are not widened)."""
    return ratings.join(keys.select(F.col("key").alias(column)), column, "left_semi")
