"""``mfspark.ALS``: MLlib's parameter names and defaults, validation, and fitting equal to
the pure-NumPy reference ALS on the original IDs."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.recommendation import ALS as MLlibALS

from mfspark import ALS, ALSModel
from mfspark.core import reference
from mfspark.ml.params import ParamError
from mfspark.core.state import init_factors

from conftest import random_ratings

N_USERS, N_ITEMS = 30, 20


@pytest.fixture(scope="module")
def data(spark):
    users, items, ratings = random_ratings(N_USERS, N_ITEMS, 0.3, seed=21)
    # long user IDs beyond the int range, string item IDs (zero-padded: index order = j)
    user_ids = [9_000_000_000 + int(u) for u in users]
    item_ids = [f"m{int(i):03d}" for i in items]
    df = spark.createDataFrame(list(zip(user_ids, item_ids, ratings.tolist())),
                               "uid long, mid string, stars double")
    return users, items, ratings, df


@pytest.fixture(scope="module")
def fitted(data):
    als = ALS(rank=3, maxIter=3, regParam=0.5, regScale="none", userCol="uid", itemCol="mid",
              ratingCol="stars", numUserBlocks=2, numItemBlocks=2, seed=4)
    return als, als.fit(data[3])


def test_fit_equals_numpy_reference(data, fitted):
    users, items, ratings, _ = data
    _, model = fitted
    ref = reference.als(users, items, ratings, N_USERS, N_ITEMS, init_factors(N_ITEMS, 3, 4),
                        0.5, "none", 3)
    assert model.mu == pytest.approx(ref.mu, rel=1e-12)
    uf = {r["id"]: r for r in model.userFactors.collect()}
    vf = {r["id"]: r for r in model.itemFactors.collect()}
    got_u = np.array([uf[9_000_000_000 + u]["features"] for u in range(N_USERS)])
    got_b = np.array([uf[9_000_000_000 + u]["bias"] for u in range(N_USERS)])
    got_v = np.array([vf[f"m{i:03d}"]["features"] for i in range(N_ITEMS)])
    got_c = np.array([vf[f"m{i:03d}"]["bias"] for i in range(N_ITEMS)])
    for mine, theirs in [(got_u, ref.user_factors), (got_b, ref.user_bias),
                         (got_v, ref.item_factors), (got_c, ref.item_bias)]:
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([h["objective"] for h in model.history], ref.objectives,
                               rtol=1e-9)


def test_model_state_and_params(fitted):
    als, model = fitted
    assert isinstance(model, ALSModel)
    assert model.rank == 3 and len(model.history) == 3
    assert model.userFactors.columns == ["id", "features", "bias"]
    assert model.userFactors.schema["id"].dataType.simpleString() == "bigint"
    assert model.itemFactors.schema["id"].dataType.simpleString() == "string"
    assert (model.getUserCol(), model.getItemCol()) == ("uid", "mid")
    assert model.metadata["num_users"] == N_USERS and model.metadata["reg_scale"] == "none"
    assert als.getRegScale() == "none" and model.uid != als.uid


def test_defaults_are_mllib_defaults(spark):
    ours, theirs = ALS(), MLlibALS()
    shared = ["rank", "maxIter", "regParam", "numUserBlocks", "numItemBlocks", "implicitPrefs",
              "alpha", "userCol", "itemCol", "ratingCol", "nonnegative", "checkpointInterval",
              "coldStartStrategy", "blockSize", "predictionCol"]
    for name in shared:
        assert ours.getOrDefault(name) == theirs.getOrDefault(name), name
    assert ours.getRegScale() == "count"  # regParam keeps MLlib's (count-scaled) meaning
    text = ours.explainParams()
    assert "regScale" in text and "workDir" in text and "coldStartStrategy" in text


def test_copy_and_set_params():
    als = ALS(rank=4)
    other = als.copy({als.rank: 7, als.regParam: 0.3})
    assert (als.getRank(), other.getRank(), other.getRegParam()) == (4, 7, 0.3)
    assert als.setParams(maxIter=2, coldStartStrategy="drop") is als
    assert als.getMaxIter() == 2 and als.getColdStartStrategy() == "drop"


@pytest.mark.parametrize("kwargs,message", [
    ({"coldStartStrategy": "zero"}, "coldStartStrategy must be one of"),
    ({"alpha": -0.5}, "alpha must be a finite number >= 0, got -0.5"),
    ({"implicitPrefs": True, "rank": 0}, "rank must be >= 1"),
    ({"regScale": "ridge"}, "regScale must be one of"),
    ({"regParam": 0.0}, "regParam must be a finite number > 0, got 0.0"),
    ({"maxIter": 0}, "maxIter must be an integer >= 1, got 0"),
    ({"rank": 0, "biases": False}, "rank must be >= 1 when no biases are fitted"),
    ({"cgSteps": 3}, "cgSteps must be 0 unless implicit feedback is on"),
    ({"cgSteps": -1, "implicitPrefs": True}, "cgSteps must be an integer >= 0"),
])
def test_bad_params_fail_before_any_work(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ALS(userCol="uid", itemCol="mid", ratingCol="stars", **kwargs).fit(data[3])


def test_missing_column_is_named(data):
    with pytest.raises(ValueError, match=r"column\(s\) \['user'\] not found"):
        ALS(itemCol="mid", ratingCol="stars").fit(data[3])
    assert issubclass(ParamError, ValueError)


def test_without_biases_into_a_kept_work_dir(data, tmp_path):
    als = ALS(rank=2, maxIter=2, userCol="uid", itemCol="mid", ratingCol="stars",
              numUserBlocks=2, numItemBlocks=2, biases=False, workDir=str(tmp_path / "work"))
    model = als.fit(data[3])
    assert all(r["bias"] == 0.0 for r in model.userFactors.collect())
    assert all(r["bias"] == 0.0 for r in model.itemFactors.collect())
    assert (tmp_path / "work" / "iter-0002" / "item").is_dir()
    assert model.history[-1]["objective"] <= model.history[0]["objective"]


def test_blocks_default_to_the_cluster_unless_set():
    from mfspark import ALS

    assert ALS().getOrDefault("numUserBlocks") == 10  # MLlib's default value is shown ...
    params = ALS().training_params()
    assert params.num_user_blocks is None and params.num_item_blocks is None  # ... not used
    params = ALS(numUserBlocks=3).setNumItemBlocks(5).training_params()
    assert (params.num_user_blocks, params.num_item_blocks) == (3, 5)
    assert ALS().training_params().cg_steps == 0
    assert ALS(implicitPrefs=True).setCgSteps(3).training_params().cg_steps == 3


def test_every_mllib_setter_and_getter_exists(spark):
    """Switching the import keeps every accessor a pipeline may call, the storage-level
    parameters' included, and the storage levels set are the ones read back."""
    from pyspark.ml.recommendation import ALS as MLlibALS
    from pyspark.ml.recommendation import ALSModel as MLlibALSModel

    from mfspark import ALS, ALSModel

    for theirs, ours in ((MLlibALS, ALS), (MLlibALSModel, ALSModel)):
        names = {n for n in dir(theirs) if n.startswith(("set", "get", "recommend"))}
        assert sorted(n for n in names if not hasattr(ours, n)) == []
    storage = {"getFinalStorageLevel", "getIntermediateStorageLevel", "setFinalStorageLevel",
               "setIntermediateStorageLevel"}
    assert storage <= {n for n in dir(MLlibALS)}  # so the loop above requires them
    levels = ALS().setIntermediateStorageLevel("DISK_ONLY").setFinalStorageLevel("MEMORY_ONLY")
    assert (levels.getIntermediateStorageLevel(), levels.getFinalStorageLevel()) == \
        ("DISK_ONLY", "MEMORY_ONLY")
    assert (ALS().getIntermediateStorageLevel(), ALS().getFinalStorageLevel()) == \
        (MLlibALS().getIntermediateStorageLevel(), MLlibALS().getFinalStorageLevel())
    als = ALS().setImplicitPrefs(True).setAlpha(2.0).setNonnegative(True).setNumUserBlocks(3)
    assert (als.getImplicitPrefs(), als.getAlpha(), als.getNonnegative(),
            als.getNumUserBlocks(), als.getNumItemBlocks()) == (True, 2.0, True, 3, 10)
