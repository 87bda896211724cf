"""The one preparation pipeline of every entry point: read, validate, deduplicate, index,
partition.

::

    loaded = load(spark, spec, rejected_dir)             # read, bad rows, duplicates
    train, test = random_split(loaded.ratings, 0.1, 0)   # or folds, or none
    prepared = prepare(train, params, test)              # index IDs, partition by block

``jobs/train.py``, :class:`mfspark.ALS`, ``jobs/tune.py`` (once per fold) and the benchmark
all go through :func:`prepare`, so the same ratings give the same blocks, indices and
model wherever they come from.  :func:`load` is the file-reading part (the estimator gets a
DataFrame and validates it strictly instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from mfspark.config import ALSParams, InputSpec
from mfspark.data.duplicates import merge_duplicates
from mfspark.data.indexing import IdIndex, build_index, id_lookup, with_indices
from mfspark.data.quarantine import screen
from mfspark.data.validate import RatingStats
from mfspark.engine.loop import PartitionedRatings, partition
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
    """Training ratings ready for :func:`mfspark.engine.loop.fit`, and what maps them back."""

    ratings: PartitionedRatings
    users: IdIndex
    items: IdIndex
    test: DataFrame | None = None
    """Held-out ratings with ``user_idx`` and ``item_idx`` (null where the ID was not in
    training, or such rows left out with ``known_test_only``), persisted."""

    def unpersist(self) -> None:
        self.ratings.unpersist()
        if self.test is not None:
            self.test.unpersist()


def partition_ids(ratings: DataFrame, users: IdIndex, items: IdIndex,
                  params: ALSParams) -> PartitionedRatings:
    """:func:`mfspark.engine.loop.partition` for ratings keyed by their original IDs
    (``user``, ``item``, ``rating``): integral IDs are looked up inside the partitioning pass
    (:func:`mfspark.data.indexing.id_lookup`), other IDs are joined to their indices
    first."""
    lookup = id_lookup(users, items)
    frame = ratings if lookup is not None else with_indices(ratings, users, items)
    return partition(frame, users.counts, items.counts, params, lookup)


def prepare(train: DataFrame, params: ALSParams, test: DataFrame | None = None,
            known_test_only: bool = False) -> Prepared:
    """Index the IDs of ``train`` (ascending ID order: indices depend only on the set of
    IDs) and partition it by user block and by item block; index ``test`` the same way."""
    spark = train.sparkSession
    users, items = build_index(spark, train, "user"), build_index(spark, train, "item")
    parts = partition_ids(train, users, items, params)
    indexed = None
    if test is not None:
        how = "inner" if known_test_only else "left"
        indexed = with_indices(test, users, items, how=how).persist(StorageLevel.MEMORY_AND_DISK)
    return Prepared(parts, users, items, indexed)
