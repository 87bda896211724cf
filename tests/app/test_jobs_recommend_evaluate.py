"""``jobs/recommend.py`` and ``jobs/evaluate.py`` on a model saved by the training job."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mfspark.config import ALSParams, JobConfig
from mfspark.io.ratings import embedded_sample_path
from mfspark.app import evaluate as evaluate_job
from mfspark.app import recommend as recommend_job
from mfspark.app.train import train



@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    config = JobConfig(als=ALSParams(rank=4, iterations=3, num_user_blocks=2, num_item_blocks=2),
                       out=str(out), test_fraction=0.2, split_seed=5)
    return train(spark, config)


def sample_pairs() -> set[tuple[int, int]]:
    df = pd.read_csv(embedded_sample_path(), sep="::", engine="python", header=None)
    return set(zip(df[0], df[1]))


def test_recommend_all_users_excluding_rated_items_to_csv(trained, tmp_path):
    out = str(tmp_path / "recs")
    summary = recommend_job.main(["--model", trained.model_dir, "--out", out, "--k", "5",
                                  "--exclude", embedded_sample_path(), "--format", "csv"])
    recs = pd.concat(pd.read_csv(p) for p in (tmp_path / "recs").glob("*.csv"))
    assert list(recs.columns) == ["user", "rank", "item", "score"]
    assert summary["users"] == recs["user"].nunique() == trained.metadata["num_users"]
    assert not set(zip(recs["user"], recs["item"])) & sample_pairs()
    for _, group in recs.groupby("user"):
        group = group.sort_values("rank")
        assert list(group["rank"]) == [1, 2, 3, 4, 5]
        assert group["score"].is_monotonic_decreasing


def test_recommend_listed_users_to_parquet(spark, trained, tmp_path):
    ids = tmp_path / "users.txt"
    ids.write_text("3\n\n7\n")
    out = str(tmp_path / "recs")
    recommend_job.main(["--model", trained.model_dir, "--out", out, "--k", "2",
                        "--users", str(ids), "--user", "11", "--user", "999999"])
    got = spark.read.parquet(out).toPandas()
    assert sorted(got["user"].unique()) == [3, 7, 11]  # unknown 999999: nothing
    with pytest.raises(Exception, match="already exists"):
        recommend_job.main(["--model", trained.model_dir, "--out", out, "--user", "3"])


def test_evaluate_reproduces_the_training_split(trained, tmp_path):
    report_path = tmp_path / "report.json"
    report = evaluate_job.main(["--model", trained.model_dir, "--ratings",
                                embedded_sample_path(), "--test-fraction", "0.2",
                                "--split-seed", "5", "--k", "5", "--json", str(report_path)])
    # same split, same fallback for unknown IDs: the training job's own test RMSE
    assert report["rating"]["rmse"] == pytest.approx(
        trained.metadata["history"][-1]["test_rmse"], rel=1e-9)
    assert report["rating"]["count"] == trained.metadata["num_test"]
    ranking = report["ranking"]
    assert ranking["users"] > 0
    assert 0 < ranking["precisionAtK"] <= 1 and 0 < ranking["ndcgAtK"] <= 1
    assert json.loads(report_path.read_text())["ranking"] == ranking
