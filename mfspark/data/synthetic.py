"""Seeded synthetic ratings from a planted biased low-rank model, generated on the cluster.

Every user draws a number of ratings from a log-normal (skewed activity), picks items from a
Zipf-like popularity law, and rates them ``mu + b_i + c_j + u_i . v_j + noise`` clipped to the
rating scale.  Each user's draws come from its own ``(seed, user)`` random stream, so the data
depend only on the settings, never on the number of partitions.  The planted model's own RMSE
(its clipped prediction against the noisy ratings) is the floor any method can reach.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.engine.loop import parallelism


@dataclass(frozen=True)
class PlantedModel:
    """Settings of a synthetic data set (sizes, planted rank, noise and skew)."""

    num_users: int = 50_000
    num_items: int = 20_000
    num_ratings: int = 5_000_000
    """Target total; the realized count is within a few percent of it (below it when
    clipping very active users to half the items binds)."""
    rank: int = 10
    noise: float = 0.5
    """Standard deviation of the Gaussian noise added to each rating."""
    mu: float = 3.5
    bias_scale: float = 0.4
    factor_scale: float = 0.9
    """Standard deviation of the planted interaction term u . v."""
    zipf: float = 0.8
    """Item popularity exponent: item k is drawn with probability ~ 1 / (k + 10) ** zipf."""
    activity_sigma: float = 1.0
    """Log-normal sigma of the users' rating counts (0: every user rates the same number)."""
    rating_range: tuple[float, float] = (0.5, 5.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.num_users, self.num_items, self.num_ratings) < 1 or self.rank < 1:
            raise ValueError("num_users, num_items, num_ratings and rank must be >= 1")
        if self.num_ratings > self.num_users * self.num_items // 2:
            raise ValueError("num_ratings must be at most half of num_users * num_items")


def planted_factors(model: PlantedModel) -> tuple[np.ndarray, ...]:
    """The planted (U, b, V, c), drawn from the seed."""
    rng = np.random.default_rng([model.seed, 0])
    scale = np.sqrt(model.factor_scale / np.sqrt(model.rank))
    U = rng.standard_normal((model.num_users, model.rank)) * scale
    V = rng.standard_normal((model.num_items, model.rank)) * scale
    b = rng.standard_normal(model.num_users) * model.bias_scale
    c = rng.standard_normal(model.num_items) * model.bias_scale
    return U, b, V, c


def user_counts(model: PlantedModel) -> np.ndarray:
    """Each user's number of ratings: log-normal, at least 1, at most half the items."""
    rng = np.random.default_rng([model.seed, 1])
    raw = rng.lognormal(0.0, model.activity_sigma, model.num_users)
    counts = np.maximum(1, np.round(raw * model.num_ratings / raw.sum())).astype(np.int64)
    return np.minimum(counts, model.num_items // 2)


def _ratings_for(users: np.ndarray, model: PlantedModel, counts: np.ndarray,
                 factors: tuple[np.ndarray, ...], cdf: np.ndarray) -> pd.DataFrame:
    U, b, V, c = factors
    lo, hi = model.rating_range
    parts = []
    for u in users:
        rng = np.random.default_rng([model.seed, 2, int(u)])
        need = int(counts[u])
        picked = np.unique(np.searchsorted(cdf, rng.random(need * 2 + 16)))
        while len(picked) < need:  # very active user: top up with uniform draws
            picked = np.union1d(picked, rng.integers(0, model.num_items, need))
        items = rng.permutation(picked)[:need]
        planted = model.mu + b[u] + c[items] + V[items] @ U[u]
        noisy = np.clip(planted + rng.standard_normal(need) * model.noise, lo, hi)
        parts.append(pd.DataFrame({"user": np.full(need, u, dtype=np.int32),
                                   "item": items.astype(np.int32),
                                   "rating": noisy.astype(np.float32),
                                   "planted": np.clip(planted, lo, hi).astype(np.float32)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"user": [], "item": [], "rating": [], "planted": []})


@functools.lru_cache(maxsize=2)
def _planted(model: PlantedModel) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """The planted factors, the users' counts and the items' popularity CDF, drawn once per
    process from the seed (every executor draws the same)."""
    weights = 1.0 / (np.arange(model.num_items) + 10.0) ** model.zipf
    order = np.random.default_rng([model.seed, 3]).permutation(model.num_items)
    cdf = np.cumsum(weights[np.argsort(order)])  # popularity not tied to item id order
    return planted_factors(model), user_counts(model), cdf / cdf[-1]


def generate(spark: SparkSession, model: PlantedModel,
             partitions: int | None = None) -> DataFrame:
    """The synthetic ratings as a DataFrame (``user`` int, ``item`` int, ``rating`` float,
    ``planted`` float: the noise-free clipped prediction), generated on the executors."""

    def make(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        f, n, p = _planted(model)
        for batch in batches:
            yield _ratings_for(batch["id"].to_numpy(), model, n, f, p)

    parts = partitions or max(2, parallelism(spark) * 4)
    return (spark.range(0, model.num_users, numPartitions=parts)
            .mapInPandas(make, "user int, item int, rating float, planted float"))


def floor_rmse(ratings: DataFrame) -> float:
    """RMSE of the planted model itself on the generated ratings."""
    row = ratings.agg(F.sqrt(F.avg((F.col("rating") - F.col("planted")) ** 2))).first()
    return float(row[0])
