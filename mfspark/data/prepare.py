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

from collections.abc import Callable
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.config import ALSParams, InputSpec
from mfspark.data.duplicates import merge_duplicates
from mfspark.data.indexing import IdIndex, build_index
from mfspark.data.quarantine import screen
from mfspark.data.validate import RatingStats
from mfspark.engine.loop import DataSize, Fit, PartitionedRatings, partition
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
    duplicates_unchecked: bool = False
    """The ``fail`` policy's check is left to the packing (:func:`check_packed_duplicates`)."""


#: Spark SQL type names of IDs that are their own keys, so that two ratings of one pair
#: have equal keys in the packed blocks (string IDs unseen in training share one key).
_INTEGRAL_IDS = ("tinyint", "smallint", "int", "bigint")


def load(spark: SparkSession, spec: InputSpec, rejected_dir: str,
         on_phase: Callable[[str], None] | None = None, pack_checks_duplicates: bool = False
         ) -> Loaded:
    """Read ``spec``, apply its bad-row policy (quarantined rows go to ``rejected_dir``)
    and its duplicates policy; ``on_phase`` is called with each phase's name as it ends
    (each is one pass over the input).

    With ``pack_checks_duplicates``, the ``fail`` policy on integral IDs costs no pass of
    its own: the packing sorts every block by (row, column) anyway and counts repeated
    pairs, and :func:`check_packed_duplicates` refuses them after :func:`prepare`, before
    anything is trained or written.  Ratings must then reach :func:`prepare` whole or
    split by a hash of the pair (:mod:`mfspark.data.split`), which keeps a pair's ratings
    on one side."""
    source = spec.path or "the embedded sample"
    good, stats = screen(read_ratings(spark, spec), spec, source, rejected_dir)
    if on_phase is not None:
        on_phase("read, validate")
    if (pack_checks_duplicates and spec.duplicates == "fail"
            and {stats.user_type, stats.item_type} <= set(_INTEGRAL_IDS)):
        return Loaded(good, stats, 0, duplicates_unchecked=True)
    ratings, merged = merge_duplicates(good, spec.duplicates, source)
    if on_phase is not None:
        on_phase("duplicates")
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
            storage: StorageLevel = StorageLevel.MEMORY_AND_DISK,
            stats: RatingStats | None = None) -> Prepared:
    """Key the IDs of ``train`` (:mod:`mfspark.data.indexing`) and partition it by user
    block and by item block, in one pass with the held-out ``test`` ratings (scored after
    every iteration; IDs unseen in training fall back as docs/model.md says).  ``stats``,
    the validation's counts of the ratings read, size the blocks
    (:func:`mfspark.engine.loop.block_counts`)."""
    users, items = build_index(train, "user"), build_index(train, "item")

    def keyed(ratings: DataFrame, held_out: bool) -> DataFrame:
        frame = items.keyed(users.keyed(ratings.select("user", "item", "rating"), "user"),
                            "item")
        return frame.withColumn("test", F.lit(held_out))

    frame = keyed(train, False)
    if test is not None:
        frame = frame.unionByName(keyed(test, True))
    size = DataSize(stats.rows, stats.users, stats.items) if stats is not None else None
    parts = partition(frame, params, held_out=test is not None, storage=storage, size=size)
    return Prepared(parts, users, items)


def check_packed_duplicates(loaded: Loaded, prepared: Prepared, source: str) -> None:
    """Raise the ``fail`` policy's error (with the first duplicated pairs) when the packing
    of ratings loaded with ``pack_checks_duplicates`` found repeated (user, item) pairs."""
    if not (loaded.duplicates_unchecked and prepared.ratings.repeated):
        return
    prepared.unpersist()
    merge_duplicates(loaded.ratings, "fail", source)  # raises DuplicateRatingsError
    raise RuntimeError(f"the packed blocks hold {prepared.ratings.repeated} repeated (user, "
                       "item) pairs that grouping the ratings does not find")
