"""One SparkSession for the whole test run (local[2], few shuffle partitions, no UI)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def spark():
    from mfspark.session import get_session

    session = get_session("local[2]", app_name="mfspark-tests", extra={
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.default.parallelism": "2",
        "spark.driver.memory": "2g",
    })
    yield session
    session.stop()


@pytest.fixture(scope="session")
def ml100k_path() -> str:
    path = SHARED_DATA / "ml-100k" / "u.data"
    if not path.is_file():
        pytest.fail(f"MovieLens 100K is expected at {path} (../shared/data beside the checkout)")
    return str(path)


def random_ratings(n_users: int, n_items: int, density: float, seed: int):
    """Random (users, items, ratings) with every user and item rated at least once."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    users, items = np.nonzero(mask)
    ratings = rng.integers(1, 11, len(users)) / 2.0
    return users, items, ratings
