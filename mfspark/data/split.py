"""Seeded train/test splits that do not depend on how the data is partitioned.

Every split is a DataFrame -> DataFrame(s) function on ratings with ``user`` and ``item``
columns (and ``timestamp`` where time matters), and every random choice is a hash of
``(user, item, seed)`` instead of a random number generator, so the same data and seed give
the same split whatever the number of partitions or executors (``DataFrame.randomSplit``
does not promise that).

- :func:`random_split`: each rating independently to test with probability ``test_fraction``.
- :func:`kfold` / :func:`assign_folds`: each rating to exactly one of ``k`` folds.
- :func:`user_holdout`: per user, a fraction or the last ``n`` ratings, for every user with
  enough ratings; every test user keeps ratings in train (no cold-start users in test).
- :func:`temporal_split`: everything rated after a cutoff time is test.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from mfspark.errors import MfsparkValueError

_BUCKETS = 1_000_000


class SplitError(MfsparkValueError):
    """A split was asked for with bad arguments or data lacking a column it needs."""


def draw(seed: int) -> Column:
    """A uniform draw in [0, 1) per rating: a hash of ``(user, item, seed)``."""
    return F.pmod(F.xxhash64("user", "item", F.lit(seed)), F.lit(_BUCKETS)) / _BUCKETS


def _require_columns(ratings: DataFrame, needed: tuple[str, ...], what: str) -> None:
    missing = [c for c in needed if c not in ratings.columns]
    if missing:
        raise SplitError(f"{what} needs column(s) {missing}; the ratings have {ratings.columns}")


def random_split(ratings: DataFrame, test_fraction: float,
                 seed: int = 0) -> tuple[DataFrame, DataFrame]:
    """Split ratings into (train, test), each row independently with probability
    ``test_fraction`` of going to test."""
    if not 0 <= test_fraction < 1:
        raise SplitError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    _require_columns(ratings, ("user", "item"), "random_split")
    marked = ratings.withColumn("_draw", draw(seed))
    train = marked.filter(F.col("_draw") >= test_fraction).drop("_draw")
    test = marked.filter(F.col("_draw") < test_fraction).drop("_draw")
    return train, test


def assign_folds(ratings: DataFrame, k: int, seed: int = 0, fold_col: str = "fold") -> DataFrame:
    """Add ``fold_col`` (int in ``0..k-1``): ``floor(draw * k)``, so fold sizes are binomial
    around ``n / k`` and each rating is in exactly one fold."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise SplitError(f"k-fold needs k >= 2 folds, got k={k!r}")
    _require_columns(ratings, ("user", "item"), "kfold")
    return ratings.withColumn(fold_col, F.floor(draw(seed) * k).cast("int"))


def kfold(ratings: DataFrame, k: int, seed: int = 0) -> list[tuple[DataFrame, DataFrame]]:
    """``k`` (train, test) pairs: test is fold ``f``, train the other ``k - 1`` folds.

    The test parts are disjoint and together hold every rating exactly once.  Persist
    ``ratings`` first if it is expensive: each pair re-reads it.
    """
    marked = assign_folds(ratings, k, seed, "_fold")
    return [(marked.filter(F.col("_fold") != f).drop("_fold"),
             marked.filter(F.col("_fold") == f).drop("_fold")) for f in range(k)]


def user_holdout(ratings: DataFrame, fraction: float | None = None, last_n: int | None = None,
                 min_ratings: int = 2, seed: int = 0,
                 timestamp_col: str = "timestamp") -> tuple[DataFrame, DataFrame]:
    """Hold out ratings of every user with at least ``min_ratings`` ratings.

    Give exactly one of:

    fraction : float in (0, 1)
        A user with ``n`` ratings gives ``max(1, round(fraction * n))`` of them, chosen by the
        seeded hash, capped at ``n - 1``.
    last_n : int >= 1
        A user gives their ``last_n`` latest ratings by ``timestamp_col`` (ties broken by the
        seeded hash); only users with more than ``last_n`` ratings take part.

    Every test user keeps at least one rating in train, so every test user is known to a
    model fitted on train; users with fewer than ``min_ratings`` ratings (or ``last_n`` or
    fewer) stay entirely in train.
    """
    if (fraction is None) == (last_n is None):
        raise SplitError("user_holdout needs exactly one of fraction and last_n, got "
                         f"fraction={fraction!r}, last_n={last_n!r}")
    if fraction is not None and not 0 < fraction < 1:
        raise SplitError(f"fraction must be in (0, 1), got {fraction!r}")
    if last_n is not None and (not isinstance(last_n, int) or last_n < 1):
        raise SplitError(f"last_n must be an integer >= 1, got {last_n!r}")
    if not isinstance(min_ratings, int) or min_ratings < 2:
        raise SplitError(f"min_ratings must be an integer >= 2 (a test user must keep a "
                         f"training rating), got {min_ratings!r}")
    _require_columns(ratings, ("user", "item"), "user_holdout")
    if last_n is not None:
        _require_columns(ratings, (timestamp_col,), f"user_holdout(last_n={last_n})")
        order = [F.col(timestamp_col).desc(), F.col("_draw"), F.col("item")]
    else:
        order = [F.col("_draw"), F.col("item")]
    per_user = Window.partitionBy("user")
    marked = (ratings.withColumn("_draw", draw(seed))
              .withColumn("_n", F.count(F.lit(1)).over(per_user))
              .withColumn("_pos", F.row_number().over(per_user.orderBy(*order))))
    if last_n is not None:
        take = F.when(F.col("_n") >= F.greatest(F.lit(min_ratings), F.lit(last_n + 1)),
                      F.lit(last_n)).otherwise(0)
    else:
        share = F.greatest(F.lit(1), F.round(F.col("_n") * F.lit(fraction)).cast("int"))
        take = F.when(F.col("_n") >= min_ratings,
                      F.least(share, F.col("_n") - 1)).otherwise(0)
    marked = marked.withColumn("_test", F.col("_pos") <= take)
    helpers = ["_draw", "_n", "_pos", "_test"]
    return (marked.filter(~F.col("_test")).drop(*helpers),
            marked.filter(F.col("_test")).drop(*helpers))


def temporal_split(ratings: DataFrame, test_fraction: float | None = None,
                   cutoff: float | None = None,
                   timestamp_col: str = "timestamp") -> tuple[DataFrame, DataFrame]:
    """Split by time: ratings with ``timestamp > cutoff`` are test, the rest train.

    Give ``cutoff`` (in the column's units; a timestamp column is compared as epoch
    seconds) or ``test_fraction``: the cutoff is then the exact ``1 - test_fraction``
    percentile of the timestamps (ratings at the cutoff time stay in train, so ties can make
    the test part a little smaller).  Test users and items may be unseen in train.
    """
    if (test_fraction is None) == (cutoff is None):
        raise SplitError("temporal_split needs exactly one of test_fraction and cutoff, got "
                         f"test_fraction={test_fraction!r}, cutoff={cutoff!r}")
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise SplitError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    _require_columns(ratings, (timestamp_col,), "temporal_split")
    time = F.col(timestamp_col)
    if dict(ratings.dtypes)[timestamp_col].startswith("timestamp"):
        time = F.unix_timestamp(time)
    time = time.cast("double")
    if cutoff is None:
        cutoff = ratings.agg(F.percentile(time, F.lit(1 - test_fraction)).alias("c")).first()["c"]
        if cutoff is None:
            raise SplitError(f"temporal_split: no non-null {timestamp_col!r} values")
    after = time > F.lit(float(cutoff))
    return ratings.filter(~after | time.isNull()), ratings.filter(after)
