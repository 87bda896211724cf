"""Evaluating a fitted :class:`mfspark.ALSModel` on held-out ratings.

- Rating metrics (:func:`rating_metrics`): RMSE and MAE of the predictions, in one pass.
- Ranking metrics (:func:`ranking_metrics`): each held-out user's top-k recommendations
  against the items that user rated in the held-out data (optionally only those rated at
  least a threshold), scored by ``pyspark.ml.evaluation.RankingEvaluator``: precision@k,
  recall@k, NDCG@k, MAP and MAP@k, with MLlib's definitions.  Items the user rated in
  ``exclude`` (usually the training ratings) are never recommended, so that the top-k is
  made of unseen items only, as a recommender would serve it.
"""

from __future__ import annotations

from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from mfspark.ml.model import ALSModel

RANKING_METRICS = ("precisionAtK", "recallAtK", "ndcgAtK", "meanAveragePrecision",
                   "meanAveragePrecisionAtK")


def rating_metrics(predictions: DataFrame, label_col: str = "rating",
                   prediction_col: str = "prediction") -> dict[str, float]:
    """RMSE and MAE over the rows with a prediction (``count``), and how many rows had NaN
    or null instead (``unpredicted``: cold-start rows under ``coldStartStrategy="nan"``)."""
    pred, label = F.col(prediction_col), F.col(label_col).cast("double")
    has = pred.isNotNull() & ~F.isnan(pred)
    err = F.when(has, pred - label)
    row = predictions.agg(F.sqrt(F.avg(err * err)).alias("rmse"), F.avg(F.abs(err)).alias("mae"),
                          F.count(err).alias("count"),
                          F.sum(F.when(has, 0).otherwise(1)).alias("unpredicted")).first()
    return {"rmse": float("nan") if row["rmse"] is None else float(row["rmse"]),
            "mae": float("nan") if row["mae"] is None else float(row["mae"]),
            "count": int(row["count"]), "unpredicted": int(row["unpredicted"] or 0)}


def ranking_frame(model: ALSModel, test: DataFrame, k: int, exclude: DataFrame | None = None,
                  rating_col: str = "rating",
                  relevance_threshold: float | None = None) -> DataFrame:
    """One row per held-out user known to the model: ``label`` (relevant items) and
    ``prediction`` (top-k recommended items, best first), both ``array<double>`` item codes
    as ``RankingEvaluator`` wants them (codes, not IDs, so that string IDs work too)."""
    user_col, item_col = model.getUserCol(), model.getItemCol()
    users, items = model.userFactors, model.itemFactors
    relevant = test if relevance_threshold is None else test.filter(
        F.col(rating_col) >= F.lit(float(relevance_threshold)))
    relevant = (relevant.select(F.col(user_col).try_cast(users.schema["id"].dataType).alias("u"),
                                F.col(item_col).try_cast(items.schema["id"].dataType).alias("i"))
                .dropna().distinct()
                .join(users.select(F.col("id").alias("u")), "u", "left_semi"))
    codes = (items.select(F.col("id").alias("i")).union(relevant.select("i")).distinct()
             .withColumn("code", F.row_number().over(Window.orderBy("i")).cast("double")))
    label = relevant.join(codes, "i").groupBy("u").agg(F.collect_list("code").alias("label"))
    recs = model.recommendForUserSubset(relevant.select(F.col("u").alias(user_col)), k, exclude)
    ranked = (recs.select(F.col(user_col).alias("u"),
                          F.posexplode("recommendations").alias("pos", "r"))
              .select("u", "pos", F.col("r")[item_col].alias("i"))
              .join(codes, "i")
              .groupBy("u").agg(F.sort_array(F.collect_list(F.struct("pos", "code"))).alias("s"))
              .select("u", F.col("s.code").alias("prediction")))
    empty = F.array().cast("array<double>")
    return (label.join(ranked, "u", "left")
            .select("u", "label", F.coalesce("prediction", empty).alias("prediction")))


def ranking_metrics(model: ALSModel, test: DataFrame, k: int = 10,
                    exclude: DataFrame | None = None, rating_col: str = "rating",
                    relevance_threshold: float | None = None,
                    metrics: tuple[str, ...] = RANKING_METRICS) -> dict[str, float]:
    """Ranking metrics of the model's top-``k`` on held-out ``test`` ratings.

    Parameters
    ----------
    test : DataFrame
        Held-out ratings with the model's ``userCol``, ``itemCol`` and ``rating_col``.
    exclude : DataFrame, optional
        (user, item) pairs never recommended, usually the training ratings.
    relevance_threshold : float, optional
        Only held-out items rated at least this are relevant (None: every held-out item).

    Returns
    -------
    dict
        Each metric of ``metrics`` (``RankingEvaluator`` names), plus ``users``: the number
        of held-out users that were ranked (users unknown to the model cannot be).
    """
    frame = ranking_frame(model, test, k, exclude, rating_col, relevance_threshold).cache()
    try:
        out = {"users": float(frame.count())}
        for name in metrics:
            evaluator = RankingEvaluator(metricName=name, k=k, labelCol="label",
                                         predictionCol="prediction")
            out[name] = float(evaluator.evaluate(frame)) if out["users"] else float("nan")
    finally:
        frame.unpersist()
    return out
