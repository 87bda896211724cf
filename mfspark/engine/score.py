"""Test RMSE of a fit on held-out indexed ratings, computed where the ratings are.

Test ratings (with ``user_idx``/``item_idx``, null for IDs unseen in training) are scored in
a pandas UDF against broadcast factors.  A side that is unknown contributes nothing (zero
factors and bias), so an unknown user is predicted ``mu + c_j`` and an unknown item
``mu + b_i``, as in MODEL.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mfspark.core.state import Side


def predict(users: np.ndarray, items: np.ndarray, user_side: Side, item_side: Side,
            mu: float) -> np.ndarray:
    """``mu + b_i + c_j + u_i . v_j`` for index arrays where -1 marks an unknown ID."""
    known_u, known_i = users >= 0, items >= 0
    u, i = np.where(known_u, users, 0), np.where(known_i, items, 0)
    dot = np.einsum("nk,nk->n", user_side.factors[u], item_side.factors[i])
    return (mu + np.where(known_u, user_side.bias[u], 0.0)
            + np.where(known_i, item_side.bias[i], 0.0) + np.where(known_u & known_i, dot, 0.0))


def clipped(pred: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    """Predictions clipped to ``clip = (min, max)`` (unchanged when None)."""
    return pred if clip is None else np.clip(pred, clip[0], clip[1])


def errors(ratings: DataFrame, user_side: Side, item_side: Side, mu: float,
           clip: tuple[float, float] | None = None) -> dict[str, float]:
    """RMSE and MAE of the model on ``ratings`` (columns ``user_idx``, ``item_idx``,
    ``rating``), predictions clipped to ``clip``, in one pass where the ratings are; NaN
    when there are no ratings."""
    state = ratings.sparkSession.sparkContext.broadcast((user_side, item_side))

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        us, its = state.value
        sse = sae = 0.0
        n = 0
        for b in batches:
            pred = predict(b["user_idx"].fillna(-1).to_numpy(np.int64),
                           b["item_idx"].fillna(-1).to_numpy(np.int64), us, its, mu)
            e = b["rating"].to_numpy() - clipped(pred, clip)
            sse, sae, n = sse + float(np.sum(e * e)), sae + float(np.sum(np.abs(e))), n + len(b)
        yield pd.DataFrame({"sse": [sse], "sae": [sae], "n": [n]})

    try:
        row = (ratings.select("user_idx", "item_idx", "rating")
               .mapInPandas(score, "sse double, sae double, n long")
               .agg(F.sum("sse").alias("sse"), F.sum("sae").alias("sae"),
                    F.sum("n").alias("n")).first())
    finally:
        state.destroy()
    n = row["n"] or 0
    return {"rmse": math.sqrt(row["sse"] / n) if n else float("nan"),
            "mae": row["sae"] / n if n else float("nan")}


def rmse(ratings: DataFrame, user_side: Side, item_side: Side, mu: float) -> float:
    """Root mean squared error of the model on ``ratings`` (:func:`errors`)."""
    return errors(ratings, user_side, item_side, mu)["rmse"]
