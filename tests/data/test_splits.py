"""The splits' invariants: no overlap, coverage, per-user guarantees, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfspark.data.split import (SplitError, assign_folds, kfold, random_split, temporal_split,
                           user_holdout)


@pytest.fixture(scope="module")
def ratings_pdf() -> pd.DataFrame:
    """40 users with 1 to 30 ratings each, distinct timestamps."""
    rng = np.random.default_rng(3)
    rows = []
    for user in range(40):
        n = 1 + user % 30
        for item in rng.choice(60, n, replace=False):
            rows.append((user, int(item), float(rng.integers(1, 6))))
    pdf = pd.DataFrame(rows, columns=["user", "item", "rating"])
    pdf["timestamp"] = rng.permutation(len(pdf)).astype(np.int64) * 10 + 1_000
    return pdf


@pytest.fixture(scope="module")
def ratings(spark, ratings_pdf):
    return spark.createDataFrame(ratings_pdf).cache()


def keys(df) -> list[tuple[int, int]]:
    return sorted((r.user, r.item) for r in df.select("user", "item").collect())


def test_random_split_partitions_the_ratings_whatever_the_partitioning(ratings, ratings_pdf):
    train, test = random_split(ratings, 0.3, seed=5)
    tr, te = keys(train), keys(test)
    assert not set(tr) & set(te)
    assert sorted(tr + te) == sorted(zip(ratings_pdf.user, ratings_pdf.item))
    assert 0.2 < len(te) / len(ratings_pdf) < 0.4
    again = random_split(ratings.repartition(7), 0.3, seed=5)[1]
    assert keys(again) == te
    assert keys(random_split(ratings, 0.3, seed=6)[1]) != te


def test_kfold_test_parts_are_disjoint_and_cover_everything(ratings, ratings_pdf):
    pairs = kfold(ratings, 4, seed=1)
    assert len(pairs) == 4
    everything = sorted(zip(ratings_pdf.user, ratings_pdf.item))
    seen: list[tuple[int, int]] = []
    for train, test in pairs:
        tr, te = keys(train), keys(test)
        assert not set(tr) & set(te)
        assert sorted(tr + te) == everything
        assert len(te) > 0.1 * len(everything)
        seen += te
    assert sorted(seen) == everything  # each rating in exactly one test fold
    folds = {(r.user, r.item): r.fold for r in assign_folds(ratings, 4, 1).collect()}
    again = {(r.user, r.item): r.fold for r in assign_folds(ratings.repartition(5), 4, 1).collect()}
    assert folds == again
    assert folds != {(r.user, r.item): r.fold for r in assign_folds(ratings, 4, 2).collect()}


@pytest.mark.parametrize("k", [1, 0, 2.5])
def test_kfold_needs_two_folds(ratings, k):
    with pytest.raises(SplitError, match=r"k >= 2 .*k=" + str(k)):
        kfold(ratings, k)


def test_user_holdout_fraction_keeps_every_test_user_in_train(ratings, ratings_pdf):
    train, test = user_holdout(ratings, fraction=0.25, min_ratings=3, seed=2)
    tr, te = pd.DataFrame(keys(train), columns=["user", "item"]), \
        pd.DataFrame(keys(test), columns=["user", "item"])
    assert not set(map(tuple, tr.values)) & set(map(tuple, te.values))
    assert len(tr) + len(te) == len(ratings_pdf)
    counts = ratings_pdf.groupby("user").size()
    held = te.groupby("user").size().reindex(counts.index, fill_value=0)
    expected = [0 if n < 3 else min(max(1, int(np.floor(n * 0.25 + 0.5))), n - 1)
                for n in counts]
    assert held.tolist() == expected
    assert set(te.user) <= set(tr.user)  # every test user is known
    assert keys(user_holdout(ratings.repartition(6), fraction=0.25, min_ratings=3,
                             seed=2)[1]) == keys(test)


def test_user_holdout_last_n_takes_each_users_latest(ratings, ratings_pdf):
    train, test = user_holdout(ratings, last_n=2)
    tr, te = train.toPandas(), test.toPandas()
    counts = ratings_pdf.groupby("user").size()
    assert sorted(te.groupby("user").size().index) == sorted(counts[counts > 2].index)
    assert (te.groupby("user").size() == 2).all()
    for user, mine in te.groupby("user"):
        assert mine.timestamp.min() > tr[tr.user == user].timestamp.max()
    assert set(tr.user) == set(ratings_pdf.user)


def test_user_holdout_bad_arguments(ratings):
    with pytest.raises(SplitError, match="exactly one of fraction and last_n"):
        user_holdout(ratings)
    with pytest.raises(SplitError, match="exactly one of fraction and last_n"):
        user_holdout(ratings, fraction=0.2, last_n=1)
    with pytest.raises(SplitError, match=r"fraction must be in \(0, 1\), got 1.5"):
        user_holdout(ratings, fraction=1.5)
    with pytest.raises(SplitError, match=r"column\(s\) \['timestamp'\].*\['user', 'item', "
                                         r"'rating'\]"):
        user_holdout(ratings.drop("timestamp"), last_n=1)


def test_temporal_split_puts_the_latest_ratings_in_test(ratings, ratings_pdf):
    train, test = temporal_split(ratings, test_fraction=0.2)
    tr, te = train.toPandas(), test.toPandas()
    assert len(tr) + len(te) == len(ratings_pdf)
    assert tr.timestamp.max() < te.timestamp.min()
    assert abs(len(te) / len(ratings_pdf) - 0.2) < 0.01
    cut = int(np.median(ratings_pdf.timestamp))
    tr2, te2 = (d.toPandas() for d in temporal_split(ratings, cutoff=cut))
    assert (tr2.timestamp <= cut).all() and (te2.timestamp > cut).all()
    assert len(tr2) + len(te2) == len(ratings_pdf)


def test_temporal_split_names_the_missing_timestamp_column(ratings):
    with pytest.raises(SplitError, match=r"temporal_split needs column\(s\) \['ts'\]; "
                                         r"the ratings have \['user', 'item', 'rating', "
                                         r"'timestamp'\]"):
        temporal_split(ratings, test_fraction=0.1, timestamp_col="ts")
    with pytest.raises(SplitError, match="exactly one of test_fraction and cutoff"):
        temporal_split(ratings)
