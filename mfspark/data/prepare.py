"""The one preparation pipeline of every entry point: read, validate, deduplicate, index,
partition.

::

    loaded = load(spark, spec, rejected_dir)             # read, bad rows, duplicates
    train, test = random_split(loaded.ratings, 0.1, 0)   # or folds, or none
    prepared = prepare(train, params, test)              # key IDs, partition by block

``jobs/train.py``, :class:`mfspark.ALS`, ``jobs/tune.py`` (once per fold) and the benchmark
all go through :func:`prepare`, so the same ratings give the same blocks, indices and
model wherever they come from.  :func:`load` is the file-reading part (the estimator gets a
DataFrame and validates it strictly instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.config import ALSParams, InputSpec
from mfspark.data.duplicates import merge_duplicates
from mfspark.data.indexing import IdIndex, build_index
from mfspark.data.quarantine import screen
from mfspark.data.validate import RatingStats
from mfspark.engine.loop import Fit, PartitionedRatings, partition
from mfspark.io.ratings import read_ratings


@dataclass
class Loaded:
    """Ratings read from a file: typed, bad rows set aside or refused, duplicates resolved."""

    ratings: DataFrame
    """``user``, ``item``, ``rating`` and, when the source has it, ``timestamp``."""
    stats: RatingStats
    """Rows read, bad rows per reason, the ID types."""
    merged: int
    """Rows folded into another rating of the same (user, item) pair."""


def load(spark: SparkSession, spec: InputSpec, rejected_dir: str) -> Loaded:
    """Read ``spec``, apply its bad-row policy (quarantined rows go to ``rejected_dir``)
    and its duplicates policy."""
    source = spec.path or "the embedded sample"
    good, stats = screen(read_ratings(spark, spec), spec, source, rejected_dir)
    ratings, merged = merge_duplicates(good, spec.duplicates, source)
    return Loaded(ratings, stats, merged)


@dataclass
class Prepared:
    """Training (and held-out) ratings ready for :func:`mfspark.engine.loop.fit`, and what
    maps their keys back to IDs."""

    ratings: PartitionedRatings
    users: IdIndex
    items: IdIndex

    def factors(self, spark: SparkSession, fit: Fit, side: str) -> DataFrame:
        """``side``'s fitted factors keyed by the original IDs (``id``, ``bias``,
        ``features``)."""
        index = self.users if side == "user" else self.items
        return index.with_ids(fit.factors(spark, side))

    def unpersist(self) -> None:
        self.ratings.unpersist()
        self.users.unpersist()
        self.items.unpersist()


def prepare(train: DataFrame, params: ALSParams, test: DataFrame | None = None,
            storage: StorageLevel = StorageLevel.MEMORY_AND_DISK) -> Prepared:
    """Key the IDs of ``train`` (:mod:`mfspark.data.indexing`) and partition it by user
    block and by item block, in one pass with the held-out ``test`` ratings (scored after
    every iteration; IDs unseen in training fall back as docs/model.md says)."""
    users, items = build_index(train, "user"), build_index(train, "item")

    def keyed(ratings: DataFrame, held_out: bool) -> DataFrame:
        frame = items.keyed(users.keyed(ratings.select("user", "item", "rating"), "user"),
                            "item")
        return frame.withColumn("test", F.lit(held_out))

    frame = keyed(train, False)
    if test is not None:
        frame = frame.unionByName(keyed(test, True))
    parts = partition(frame, params, held_out=test is not None, storage=storage)
    return Prepared(parts, users, items)
