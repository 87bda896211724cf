"""The saved model: ``user_factors/`` and ``item_factors/`` (Parquet: ``id``, ``bias``,
``features``) and ``metadata.json``, committed atomically.

A model is first written to a hidden sibling directory (``.NAME.incomplete-*``), renamed
into place only when every part is complete, and committed by writing ``_COMPLETE`` inside
it after the rename.  A directory without that marker is never loaded, so a run killed at
any point leaves nothing that loads as a model (a staging directory has no marker either);
stale staging directories of killed runs are removed by the next write.  An existing model
is replaced only when asked to, and only once the new one is complete: it is moved aside
(``.NAME.replaced-*``), the new one renamed into place, and the old one deleted after the
commit.  If the rename or the commit fails, the old one is moved back; a run killed in
between leaves it in that sibling, whole, which is kept until a later model is committed.
:func:`commit_directory` is the same commit for any directory (the estimator's saved
parameters use it too).  Loading reads Parquet and JSON only: nothing is unpickled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from mfspark.io import fs

MARKER = "_COMPLETE"


class ModelExistsError(FileExistsError):
    """The output model directory exists and overwriting was not requested."""


class IncompleteModelError(FileNotFoundError):
    """A directory is not a complete mfspark model."""


@dataclass(frozen=True)
class SavedModel:
    """A model as stored: factor DataFrames keyed by original ID, and its metadata."""

    user_factors: DataFrame
    item_factors: DataFrame
    metadata: dict[str, Any]


#: What a refusal to replace an existing directory suggests, by default (the jobs' flag).
OVERWRITE_HINT = "pass --overwrite to replace it"


def check_writable(spark: SparkSession, model_dir: str, overwrite: bool,
                   hint: str = OVERWRITE_HINT) -> None:
    """Fail before any work if ``model_dir`` exists and ``overwrite`` is false."""
    if fs.exists(spark, model_dir) and not overwrite:
        raise ModelExistsError(f"{model_dir} already exists; {hint}")


def commit_directory(spark: SparkSession, target: str, write: Callable[[str], None],
                     overwrite: bool, hint: str = OVERWRITE_HINT) -> None:
    """Create the directory ``target`` atomically: ``write(staging)`` fills a hidden sibling,
    which is renamed to ``target`` and committed by the :data:`MARKER` written inside it.

    With ``overwrite``, an existing ``target`` is moved aside only once ``write`` has
    returned, and deleted only after the commit; if the rename or the commit fails, the new
    directory is removed and the old one put back, so a failed overwrite leaves the previous
    directory in place, whole.  Without ``overwrite`` an existing ``target`` is a
    :class:`ModelExistsError` (whose message ends with ``hint``) before any work.
    """
    check_writable(spark, target, overwrite, hint)
    parent, name = target.rstrip("/").rsplit("/", 1) if "/" in target else (".", target)
    prefix, aside = f".{name}.incomplete-", f".{name}.replaced-"
    committed = fs.exists(spark, f"{target}/{MARKER}")
    for stale in fs.list_names(spark, parent):
        # a replaced copy is the only whole one until a later commit is in place
        if stale.startswith(prefix) or (stale.startswith(aside) and committed):
            fs.delete(spark, f"{parent}/{stale}")
    staging = f"{parent}/{prefix}{uuid.uuid4().hex[:12]}"
    try:
        write(staging)
        replaced = None
        if fs.exists(spark, target):  # moved aside, deleted once the new one is committed
            replaced = f"{parent}/{aside}{uuid.uuid4().hex[:12]}"
            fs.rename(spark, target, replaced)
        try:
            fs.rename(spark, staging, target)
            fs.write_text(spark, f"{target}/{MARKER}", "")  # the commit
        except BaseException:
            fs.delete(spark, target)  # not committed: never a model
            if replaced is not None:
                fs.rename(spark, replaced, target)
            raise
        if replaced is not None:
            fs.delete(spark, replaced)
    finally:
        fs.delete(spark, staging)


def write_model(spark: SparkSession, model_dir: str, user_factors: DataFrame,
                item_factors: DataFrame, metadata: dict[str, Any], overwrite: bool,
                extra: Callable[[str], None] | None = None,
                hint: str = OVERWRITE_HINT) -> None:
    """Write and commit a model at ``model_dir`` (:func:`commit_directory`).

    ``extra``, if given, is called with the staging directory before the marker is written,
    to add files that commit together with the model (the ``pyspark.ml`` ``metadata/`` of
    :class:`mfspark.ALSModel`).
    """
    def parts(staging: str) -> None:
        user_factors.write.parquet(f"{staging}/user_factors")
        item_factors.write.parquet(f"{staging}/item_factors")
        fs.write_text(spark, f"{staging}/metadata.json", json.dumps(metadata, indent=2))
        if extra is not None:
            extra(staging)

    commit_directory(spark, model_dir, parts, overwrite, hint)


def read_model(spark: SparkSession, model_dir: str) -> SavedModel:
    """Load a committed model; refuses a directory that lacks the completion marker.

    Reads ``metadata.json`` (JSON) and the ``*.parquet`` files of the two factor
    directories, nothing else: no file is ever unpickled or executed.
    """
    if not fs.exists(spark, f"{model_dir}/{MARKER}"):
        raise IncompleteModelError(f"{model_dir} is not a complete mfspark model "
                                   f"(no {MARKER} marker)")
    metadata = json.loads(fs.read_text(spark, f"{model_dir}/metadata.json"))
    parquet = spark.read.option("pathGlobFilter", "*.parquet")  # stray files are ignored
    return SavedModel(user_factors=parquet.parquet(f"{model_dir}/user_factors"),
                      item_factors=parquet.parquet(f"{model_dir}/item_factors"),
                      metadata=metadata)
