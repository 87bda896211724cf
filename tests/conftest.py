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
#: Where the MovieLens files are: ``MFSPARK_DATA``, else ``shared/data`` beside the checkout.
SHARED_DATA = Path(os.environ.get("MFSPARK_DATA") or ROOT.parent / "shared" / "data")


#: Set to 1 to run the tests on a Spark Connect session (a server started in this process)
#: instead of a classic one: ``tests/ml/test_connect.py`` runs the drop-in tests so.
CONNECT_ENV = "MFSPARK_TEST_CONNECT"


@pytest.fixture(scope="session")
def spark():
    from mfspark.app.session import get_session

    settings = {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
                "spark.default.parallelism": "2", "spark.driver.memory": "2g"}
    if os.environ.get(CONNECT_ENV) == "1":
        session = get_session(app_name="mfspark-tests", extra=settings, remote="local[2]")
    else:
        session = get_session("local[2]", app_name="mfspark-tests", extra=settings)
    yield session
    session.stop()


@pytest.fixture(params=["compiled", "python"])
def row_loop(request, monkeypatch):
    """Both implementations of the implicit and nonnegative block solves: the compiled row
    loop (Numba, the default where installed; asserted available, so CI cannot silently skip
    it) and the NumPy normal equations (``MFSPARK_KERNEL=python``)."""
    from mfspark.core import kernel

    if request.param == "compiled":
        assert kernel.available()
    monkeypatch.setenv(kernel.KERNEL_ENV, request.param)
    return request.param


@pytest.fixture(scope="session")
def ml100k_path() -> str:
    path = SHARED_DATA / "ml-100k" / "u.data"
    if not path.is_file():
        pytest.fail(f"MovieLens 100K is expected at {path} (MFSPARK_DATA, default: "
                    "shared/data beside the checkout)")
    return str(path)


def signed_ratings(n_users: int, n_items: int, density: float, seed: int):
    """Ratings in {-1, -0.5, 0, 0.5, ..., 4}: negative, zero and positive values (implicit
    feedback's counts and confidences)."""
    users, items, ratings = random_ratings(n_users, n_items, density, seed)
    return users, items, ratings - 1.0


def rel_err(a, b):
    """Relative error ||a - b|| / ||b||."""
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def indexed_frame(spark, users, items, ratings):
    """Ratings keyed by ``long`` user and item keys (``user``, ``item``, ``rating``)."""
    import pandas as pd

    pdf = pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64),
                        "rating": ratings.astype(np.float64)})
    return spark.createDataFrame(pdf)


def factor_frame(spark, factors, bias=None, keys=None):
    """Dense factors (row ``k`` = key ``k``, unless ``keys``) as the engine's factor rows."""
    import pandas as pd

    keys = np.arange(len(factors)) if keys is None else keys
    bias = np.zeros(len(factors)) if bias is None else bias
    return spark.createDataFrame(pd.DataFrame({
        "key": np.asarray(keys, dtype=np.int64), "bias": np.asarray(bias, dtype=np.float64),
        "features": [np.asarray(f, dtype=np.float64).tolist() for f in factors]}),
        "key long, bias double, features array<double>")


def dense_side(frame, n, rank):
    """A factor DataFrame (``key`` or ``id``, ``bias``, ``features``) as a dense
    :class:`~mfspark.core.state.Side` indexed by key (rows absent stay zero)."""
    from mfspark.core.state import Side

    pdf = frame.toPandas()
    key = "key" if "key" in pdf else "id"
    side = Side.zeros(np.zeros(n, dtype=np.int64), rank)
    rows = pdf[key].to_numpy(np.int64)
    if len(pdf):
        side.factors[rows] = np.stack(pdf["features"].to_numpy()) if rank else np.zeros(
            (len(rows), 0))
        side.bias[rows] = pdf["bias"].to_numpy()
    return side


class Fitted:
    """A distributed fit with its factors collected densely (tests only)."""

    def __init__(self, spark, fit, n_users, n_items, rank):
        self.fit, self.mu, self.history = fit, fit.mu, fit.history
        self.users = dense_side(fit.factors(spark, "user"), n_users, rank)
        self.items = dense_side(fit.factors(spark, "item"), n_items, rank)


def fit_spark(spark, users, items, ratings, params, work_dir, initial=None, **options):
    """The distributed fit of key-indexed ratings (keys ``0..n-1``), from the given start of
    the seeded side (``initial``: dense factors by key; default: the seeded start)."""
    from mfspark.engine.loop import fit, partition

    parts = partition(indexed_frame(spark, users, items, ratings), params)
    try:
        start = None
        if initial is not None:
            start = {params.order[1]: factor_frame(spark, initial)}
        done = fit(parts, params, work_dir, initial=start, **options)
        return Fitted(spark, done, int(users.max()) + 1, int(items.max()) + 1, params.rank)
    finally:
        parts.unpersist()


def random_ratings(n_users: int, n_items: int, density: float, seed: int):
    """Random (users, items, ratings) with every user and item rated at least once."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    users, items = np.nonzero(mask)
    ratings = rng.integers(1, 11, len(users)) / 2.0
    return users, items, ratings


@pytest.fixture(scope="session")
def dist_zip(tmp_path_factory) -> Path:
    """The library as ``make dist`` packs it for ``spark-submit --py-files``."""
    from sparkapp import build_dist

    return build_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def executor_python(tmp_path_factory) -> Path:
    """A Python with numpy, pandas and pyarrow but not mfspark (see sparkapp)."""
    from sparkapp import python_without_mfspark

    return python_without_mfspark(tmp_path_factory.mktemp("executor-python") / "venv")


@pytest.fixture(scope="session")
def local_submit(tmp_path_factory, dist_zip, executor_python, ml100k_path):
    """``spark-submit --master local[*]`` of jobs/train.py from a directory outside the
    checkout, with the zip on ``--py-files`` and a Python without mfspark on both driver and
    executors: (the run, its model directory).  Also the undisturbed reference model of the
    cluster tests (same data, seed and settings)."""
    from cluster import spark_env, spark_submit
    from sparkapp import JOB, TEST_SIZING, submit_args

    cwd = tmp_path_factory.mktemp("submit-local")
    assert ROOT not in cwd.parents
    args = submit_args("local[*]", dist_zip, executor_python, "out", ml100k_path,
                       conf={**TEST_SIZING, "spark.pyspark.driver.python": str(executor_python)},
                       job=JOB)
    run = spark_submit(args, cwd=cwd, env=spark_env())
    return run, cwd / "out" / "model"


def id_frame(spark, ids, factors, bias):
    """A model's factor DataFrame (``id`` of the given IDs' type, ``bias``, ``features``)."""
    import pyarrow as pa

    factors = np.asarray(factors, dtype=np.float64)
    n, k = factors.shape
    offsets = pa.array((np.arange(n + 1) * k).astype(np.int32))
    table = pa.table({"id": pa.array(ids), "bias": pa.array(np.asarray(bias, np.float64)),
                      "features": pa.ListArray.from_arrays(offsets,
                                                           pa.array(factors.reshape(-1)))})
    return spark.createDataFrame(table)
