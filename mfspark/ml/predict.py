"""Predicting ratings for a DataFrame of (user, item) pairs from factor DataFrames.

``A_hat = mu + b_i + c_j + u_i . v_j``, computed by two left joins with the factor
DataFrames (``id``, ``bias``, ``features``) and Spark SQL array functions: no Python UDF,
no factors collected on the driver.  What an unknown user or item gets is the cold-start
strategy:

- ``nan`` (MLlib's default): NaN when the user or the item was not in training;
- ``drop`` (MLlib): such rows are removed;
- ``fallback``: what is known, as docs/model.md prescribes for a row without ratings: ``mu + c_j``
  for an unknown user, ``mu + b_i`` for an unknown item, ``mu`` when both are unknown.

IDs are matched after casting the input column to the type of the model's IDs
(``try_cast``: a value that cannot be cast, or a null, is an unknown ID).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mfspark.ml.params import COLD_START_STRATEGIES

_PREFIX = "__mfspark_"


def dot(a: Column, b: Column) -> Column:
    """``sum(a[k] * b[k])`` of two ``array<double>`` columns (null if either is null)."""
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0), lambda acc, x: acc + x)


def _side(factors: DataFrame, name: str) -> DataFrame:
    return factors.select(F.col("id").alias(f"{_PREFIX}{name}_id"),
                          F.col("bias").alias(f"{_PREFIX}{name}_bias"),
                          F.col("features").alias(f"{_PREFIX}{name}_features"))


def clip(prediction: Column, low: float | None, high: float | None) -> Column:
    """Clip to ``[low, high]`` (either may be None); NaN stays NaN."""
    clipped = prediction
    if low is not None:
        clipped = F.greatest(clipped, F.lit(float(low)))
    if high is not None:
        clipped = F.least(clipped, F.lit(float(high)))
    return F.when(F.isnan(prediction), prediction).otherwise(clipped)


def predict_ratings(df: DataFrame, user_factors: DataFrame, item_factors: DataFrame,
                    mu: float, user_col: str, item_col: str, prediction_col: str,
                    strategy: str = "nan", low: float | None = None,
                    high: float | None = None) -> DataFrame:
    """``df`` with a ``prediction_col`` (double) appended; rows are kept (except with
    ``strategy="drop"``) and their columns untouched.

    Parameters
    ----------
    user_factors, item_factors : DataFrame
        ``id``, ``bias`` (double), ``features`` (array<double>), one row per ID.
    strategy : {"nan", "drop", "fallback"}
        The cold-start strategy (module docstring).
    low, high : float, optional
        Clip the predictions to this range.
    """
    if strategy not in COLD_START_STRATEGIES:
        raise ValueError(f"coldStartStrategy must be one of {COLD_START_STRATEGIES}, "
                         f"got {strategy!r}")
    for column in (user_col, item_col):
        if column not in df.columns:
            raise ValueError(f"column {column!r} not found; the DataFrame has {df.columns}")
    users, items = _side(user_factors, "u"), _side(item_factors, "i")
    uid, iid = f"{_PREFIX}u_id", f"{_PREFIX}i_id"
    joined = (df
              .join(users, F.col(user_col).try_cast(users.schema[uid].dataType) == F.col(uid),
                    "left")
              .join(items, F.col(item_col).try_cast(items.schema[iid].dataType) == F.col(iid),
                    "left"))
    u_bias, i_bias = F.col(f"{_PREFIX}u_bias"), F.col(f"{_PREFIX}i_bias")
    interaction = dot(F.col(f"{_PREFIX}u_features"), F.col(f"{_PREFIX}i_features"))
    known = F.col(uid).isNotNull() & F.col(iid).isNotNull()
    full = F.lit(float(mu)) + u_bias + i_bias + interaction
    if strategy == "fallback":
        prediction = (F.lit(float(mu)) + F.coalesce(u_bias, F.lit(0.0))
                      + F.coalesce(i_bias, F.lit(0.0)) + F.coalesce(interaction, F.lit(0.0)))
    else:
        prediction = F.when(known, full).otherwise(F.lit(float("nan")))
    if strategy == "drop":
        joined = joined.filter(known)
    out = joined.withColumn(prediction_col, clip(prediction, low, high).cast("double"))
    keep = [F.col(f"`{c}`") for c in df.columns if c != prediction_col]
    return out.select(*keep, F.col(f"`{prediction_col}`"))
