"""The planted-model generator: seeded, partition-independent, shaped as asked."""

from __future__ import annotations

import numpy as np
from chispa import assert_df_equality

from mfspark.data.synthetic import PlantedModel, floor_rmse, generate, user_counts


def test_generator_is_seeded_and_partition_independent(spark):
    model = PlantedModel(num_users=300, num_items=200, num_ratings=6000, rank=3, seed=1)
    a = generate(spark, model, partitions=2)
    b = generate(spark, model, partitions=5)
    assert_df_equality(a, b, ignore_row_order=True)
    other = generate(spark, PlantedModel(num_users=300, num_items=200, num_ratings=6000,
                                         rank=3, seed=2), partitions=2)
    assert a.exceptAll(other).count() > 0


def test_generated_data_shape(spark):
    model = PlantedModel(num_users=400, num_items=300, num_ratings=12_000, rank=4, noise=0.3)
    pdf = generate(spark, model).toPandas()
    assert abs(len(pdf) - 12_000) < 0.05 * 12_000
    assert not pdf.duplicated(["user", "item"]).any()
    assert pdf.rating.between(0.5, 5.0).all()
    per_user = pdf.groupby("user").size()
    assert per_user.max() > 4 * per_user.median()  # skewed activity
    per_item = pdf.groupby("item").size().sort_values(ascending=False)
    assert per_item.iloc[:30].sum() > 3 * per_item.iloc[-30:].sum()  # popular items dominate
    floor = floor_rmse(generate(spark, model))
    assert 0.2 < floor < 0.3  # the noise level, slightly reduced by clipping


def test_user_counts_sum_to_target():
    counts = user_counts(PlantedModel(num_users=1000, num_items=500, num_ratings=50_000))
    # clipping heavy users to half the items loses a few percent here (500 items only)
    assert 0.95 * 50_000 < counts.sum() <= 50_500 and counts.min() >= 1
    assert np.all(counts <= 250)
