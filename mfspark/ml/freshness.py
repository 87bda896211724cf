"""Keeping a model fresh without a full retrain: warm starts and exact fold-in.

Both are the half-step of docs/model.md applied to a saved model's factors, matched to new
ratings by original ID:

- **Warm start** (:func:`initial_factors`): a fit's seeded side (the items for explicit
  ratings, the users for implicit feedback) starts from the model's factors and biases
  instead of seeded draws.  IDs the model does not hold start as in a cold fit (seeded
  factors, zero bias), IDs that no longer have ratings are left out, and the first
  half-step solves the other side exactly, so it needs no start.  The model must have the
  run's rank and variant (:func:`check_compatible`).
- **Fold-in** (:func:`fold_in`): the given users' (items') factors and biases are solved
  exactly against the model's other side, which stays fixed: one half-step with the model's
  lambda, regularization scaling and variant.  Rows not in the ratings are unchanged, new
  IDs are added, and ratings of rows the model's other side does not hold are ignored and
  counted.

Nothing here collects a factor to the driver: matching is by joins, the solve is the
engine's half-step (:mod:`mfspark.engine.foldin`), and the results stay DataFrames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.config import ALSParams
from mfspark.data.indexing import IdIndex, build_index
from mfspark.data.prepare import Prepared
from mfspark.data.validate import typed_ratings
from mfspark.engine.foldin import OTHER, known_only, solve_against
from mfspark.engine.loop import partition
from mfspark.errors import MfsparkValueError
from mfspark.io import fs

if TYPE_CHECKING:
    from mfspark.ml.model import ALSModel

log = logging.getLogger("mfspark")

#: What a warm start cannot change: the shape and the meaning of the factors.
STRUCTURE = ("rank", "implicit_prefs", "fit_biases", "nonnegative")


class WarmStartError(MfsparkValueError):
    """An initial model does not fit the run (another rank or model variant)."""


class FoldInError(MfsparkValueError):
    """A fold-in's arguments do not fit the model (side, columns, ID types)."""


def fingerprint(metadata: dict[str, Any]) -> str:
    """SHA-256 of a model's metadata in canonical JSON: what identifies a saved model
    (its metadata records its parameters, data sizes, history and creation time)."""
    text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def initial_record(metadata: dict[str, Any], path: str | None) -> dict[str, Any]:
    """What a warm-started model records about its start: the initial model's path (None
    for a model held in memory) and the fingerprint of its metadata."""
    return {"path": path, "fingerprint": fingerprint(metadata),
            "created": metadata.get("created")}


def model_params(metadata: dict[str, Any]) -> ALSParams:
    """The training parameters a saved model records (defaults for any it lacks)."""
    known = {f.name for f in dataclasses.fields(ALSParams)}
    return ALSParams(**{k: v for k, v in metadata.items() if k in known})


def check_compatible(metadata: dict[str, Any], params: ALSParams, where: str) -> None:
    """Raise :class:`WarmStartError` unless the model at ``where`` has the rank and variant
    of ``params`` (:data:`STRUCTURE`; lambda, its scaling, alpha and the rest may differ)."""
    theirs = model_params(metadata)
    differ = [f"{name} is {getattr(theirs, name)!r} there and {getattr(params, name)!r} here"
              for name in STRUCTURE if getattr(theirs, name) != getattr(params, name)]
    if differ:
        raise WarmStartError(
            f"cannot warm-start from the model at {where}: {'; '.join(differ)} (biases: "
            "fit_biases, from biases and implicit_prefs). Train with the initial model's "
            "values, or without an initial model (a cold start from seeded factors).")


def keyed_factors(factors: DataFrame, index: IdIndex) -> DataFrame:
    """A model side's rows (``id``, ``bias``, ``features``) keyed as ``index`` keys a run's
    ratings (``key``, ``bias``, ``features``).  IDs are matched after casting to the run's
    ID type; an ID the run's index does not hold is left out (with integral IDs every ID
    is its own key and is kept: a key without ratings is never read)."""
    if index.frame is None:
        return (factors.select(F.col("id").try_cast("long").alias("key"), "bias", "features")
                .filter(F.col("key").isNotNull()))
    mapping = index.frame
    ids = factors.select(F.col("id").try_cast(mapping.schema["id"].dataType).alias("id"),
                         "bias", "features")
    return ids.join(mapping, "id").select("key", "bias", "features")


def initial_factors(user_factors: DataFrame, item_factors: DataFrame,
                    metadata: dict[str, Any], prepared: Prepared, params: ALSParams,
                    where: str) -> dict[str, DataFrame]:
    """The start of a warm-started fit, for :func:`mfspark.engine.loop.fit`'s ``initial``:
    the seeded side's factors of the model at ``where`` (``user_factors``,
    ``item_factors`` keyed by original ID, and its ``metadata``), keyed by ``prepared``'s
    ID index.  :class:`WarmStartError` if the model's rank or variant differ."""
    check_compatible(metadata, params, where)
    seeded = params.order[1]
    factors, index = ((user_factors, prepared.users) if seeded == "user"
                      else (item_factors, prepared.items))
    return {seeded: keyed_factors(factors, index)}


def initial_from_model(model: ALSModel, prepared: Prepared,
                       params: ALSParams) -> dict[str, DataFrame]:
    """:func:`initial_factors` of a fitted or loaded :class:`~mfspark.ml.model.ALSModel`."""
    return initial_factors(model.userFactors, model.itemFactors, model.metadata, prepared,
                           params, where=f"ALSModel {model.uid}")


def scratch_dir(spark: SparkSession, base: str | None = None) -> str:
    """A new directory for a fold-in's half-step files under ``base``, by default
    ``spark.checkpoint.dir`` or, on a local master, the local temporary directory."""
    if base is not None:
        return fs.qualify(spark, f"{base}/mfspark-foldin-{uuid.uuid4().hex[:12]}")
    scratch = fs.scratch_dir(spark, "mfspark-foldin")
    if scratch is None:
        raise FoldInError("pass work_dir: a directory that the driver and every executor "
                          "can reach (e.g. on HDFS), or set spark.checkpoint.dir")
    return scratch


def _typed(model: ALSModel, ratings: DataFrame, side: str,
           rating_col: str) -> tuple[DataFrame, int]:
    """``ratings`` validated as ``user``, ``item``, ``rating`` with the IDs cast to the
    model's ID types, and the number of rows."""
    columns = {"user": model.getUserCol(), "item": model.getItemCol(), "rating": rating_col}
    missing = [c for c in columns.values() if c not in ratings.columns]
    if missing:
        raise FoldInError(f"fold-in: column(s) {missing} not found; the ratings have "
                          f"{ratings.columns} (the model's userCol/itemCol name the ID columns)")
    typed, stats = typed_ratings(ratings.select(*[F.col(c).alias(n) for n, c in columns.items()]),
                                 source=f"fold-in ratings ({side}s)", keep_id_types=True)
    types = {"user": model.userFactors.schema["id"].dataType,
             "item": model.itemFactors.schema["id"].dataType}
    return typed.select(*[F.col(s).try_cast(types[s]).alias(s) for s in ("user", "item")],
                        "rating"), stats.rows


def fold_in(model: ALSModel, ratings: DataFrame, side: str = "user",
            rating_col: str = "rating", work_dir: str | None = None
            ) -> tuple[ALSModel, dict[str, Any]]:
    """Solve the ``side`` rows of ``ratings`` exactly against ``model``'s fixed other side.

    Each ``side`` row (user or item) present in ``ratings`` gets the factors and bias of one
    half-step of docs/model.md on its ratings there, with the model's lambda, regularization
    scaling and variant (implicit feedback, nonnegative factors, biases; exact solves), as
    if the model's other side had been fixed while it was trained on them.  ``ratings``
    should therefore hold every rating of each row folded in, not only its newest.

    Parameters
    ----------
    ratings : DataFrame
        The model's ``userCol`` and ``itemCol`` and ``rating_col``.
    side : {"user", "item"}
        The side solved; the other stays as it is.
    work_dir : str, optional
        Where the half-step's files go while it runs (a scratch directory is made in it and
        deleted); default ``spark.checkpoint.dir``, or the local temporary directory.

    Returns
    -------
    (ALSModel, dict)
        The new model, with the solved rows replacing or extending the model's (kept by a
        local checkpoint), and a summary: ratings read, used and ignored (their other-side
        ID unknown to the model), IDs seen, rows solved, new, updated, and skipped (every
        rating ignored); it is also appended to the new model's ``metadata["fold_ins"]``.
    """
    from mfspark.ml.model import ALSModel

    if side not in OTHER:
        raise FoldInError(f"fold-in side must be 'user' or 'item', got {side!r}")
    other = OTHER[side]
    spark = ratings.sparkSession
    sides = {"user": model.userFactors, "item": model.itemFactors}
    params = dataclasses.replace(model_params(model.metadata), num_user_blocks=None,
                                 num_item_blocks=None)
    typed, read = _typed(model, ratings, side, rating_col)
    seen = typed.agg(F.countDistinct(side).alias("ids"),
                     F.count(F.when(F.col(side).isNull(), 1)).alias("bad")).first()
    if seen["bad"]:
        raise FoldInError(f"fold-in: {seen['bad']} rating(s) have a {side} ID that the model's "
                          f"ID type ({sides[side].schema['id'].dataType.simpleString()}) "
                          "cannot hold")
    fixed_index = build_index(sides[other].select(F.col("id").alias(other)), other)
    solved_index = build_index(typed, side)
    scratch = scratch_dir(spark, work_dir)
    parts = None
    try:
        fixed = keyed_factors(sides[other], fixed_index)
        keyed = fixed_index.keyed(solved_index.keyed(typed, side), other)
        known = known_only(keyed, other, fixed)
        solved_rows, used, terms = 0, 0, {"sse": 0.0, "penalty": 0.0}
        rows = None
        if known.limit(1).count():
            parts = partition(known, params)
            used = parts.count
            solved = solve_against(parts, side, fixed, params, model.mu, scratch)
            solved_rows, terms = solved.rows, {"sse": solved.sse, "penalty": solved.penalty}
            rows = (solved_index.with_ids(solved.factors)
                    .select("id", "bias", F.col("features")
                            .cast(sides[side].schema["features"].dataType))
                    .localCheckpoint(eager=True))
    finally:
        if parts is not None:
            parts.unpersist()
        fixed_index.unpersist()
        solved_index.unpersist()
        fs.delete(spark, scratch)
    new = rows.join(sides[side].select("id"), "id", "left_anti").count() if rows else 0
    summary = {"side": side, "ratings": read, "ratings_used": used,
               "ratings_ignored": read - used, "ids": int(seen["ids"]), "solved": solved_rows,
               "new": new, "updated": solved_rows - new, "skipped": int(seen["ids"]) - solved_rows,
               **terms}
    log.info("fold-in of %ss: %s", side, summary)
    if rows is not None:
        sides[side] = (sides[side].join(rows.select("id"), "id", "left_anti")
                       .select("id", "bias", "features").unionByName(rows))
    metadata = {**model.metadata,
                "fold_ins": [*model.metadata.get("fold_ins", []), summary]}
    folded = ALSModel(sides["user"], sides["item"], model.mu, metadata)
    return model._copyValues(folded), summary
