"""Rating and ranking metrics against hand-computed and NumPy values (MLlib's definitions
of precision@k, recall@k, NDCG@k, MAP and MAP@k)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfspark import ALSModel
from mfspark.evaluation.metrics import rating_metrics, ranking_metrics
from mfspark.core.topn import top_n
from conftest import id_frame


def reference_ranking(ranked: list[list], relevant: list[set], k: int) -> dict[str, float]:
    """The metrics of ``pyspark.mllib.evaluation.RankingMetrics``, written out."""
    out = {n: [] for n in ("precisionAtK", "recallAtK", "ndcgAtK", "meanAveragePrecision",
                           "meanAveragePrecisionAtK")}
    for pred, rel in zip(ranked, relevant):
        hits = [p in rel for p in pred]
        out["precisionAtK"].append(sum(hits[:k]) / k)
        out["recallAtK"].append(sum(hits[:k]) / len(rel))
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits[:k]))
        out["ndcgAtK"].append(dcg / sum(1 / math.log2(i + 2) for i in range(min(k, len(rel)))))
        prec = [sum(hits[:i + 1]) / (i + 1) for i, h in enumerate(hits) if h]
        out["meanAveragePrecision"].append(sum(prec) / len(rel))
        prec_k = [sum(hits[:i + 1]) / (i + 1) for i, h in enumerate(hits[:k]) if h]
        out["meanAveragePrecisionAtK"].append(sum(prec_k) / min(k, len(rel)))
    return {n: float(np.mean(v)) for n, v in out.items()}


def test_rating_metrics_by_hand(spark):
    df = spark.createDataFrame([(4.0, 3.0), (2.0, 4.0), (5.0, float("nan")), (1.0, None)],
                               "rating double, prediction double")
    got = rating_metrics(df)
    assert got["rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))
    assert got["mae"] == pytest.approx(1.5)
    assert (got["count"], got["unpredicted"]) == (2, 2)


@pytest.mark.parametrize("threshold", [None, 4.0])
def test_ranking_metrics_equal_numpy(spark, threshold):
    rng = np.random.default_rng(8)
    n_u, n_i, k = 6, 12, 3
    U, b = rng.standard_normal((n_u, 2)), rng.standard_normal(n_u)
    V, c = rng.standard_normal((n_i, 2)), rng.standard_normal(n_i)
    users, items = [f"u{r}" for r in range(n_u)], [f"i{j:02d}" for j in range(n_i)]

    def frame(ids, f, bias):
        return id_frame(spark, ids, f, bias)
    model = ALSModel(frame(users, U, b), frame(items, V, c), 3.0, {"rank": 2})
    seen = [set(rng.choice(n_i, 3, replace=False)) for _ in range(n_u)]
    held = [[(j, float(rng.integers(1, 6))) for j in rng.choice(
        [j for j in range(n_i) if j not in seen[r]], 4, replace=False)] for r in range(n_u)]
    train = spark.createDataFrame([(users[r], items[j]) for r in range(n_u) for j in seen[r]],
                                  ["user", "item"])
    rows = [(users[r], items[j], s) for r in range(n_u) for j, s in held[r]]
    rows.append(("stranger", "i00", 5.0))  # unknown user: cannot be ranked
    test = spark.createDataFrame(rows, "user string, item string, rating double")
    got = ranking_metrics(model, test, k=k, exclude=train, relevance_threshold=threshold)
    best, _ = top_n(U, b, V, c, 3.0, k, [np.array(sorted(s)) for s in seen])
    relevant = [{j for j, s in held[r] if threshold is None or s >= threshold}
                for r in range(n_u)]
    ranked = [list(best[r]) for r in range(n_u) if relevant[r]]
    want = reference_ranking(ranked, [r for r in relevant if r], k)
    assert got["users"] == len(ranked)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
