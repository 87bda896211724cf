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

The prediction column is appended, never replaced: an input that already has it (including
a ``predictionCol`` equal to the rating or an ID column) is refused, as MLlib refuses it,
since replacing the label would make an evaluator compare the prediction with itself.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mfspark.ml.params import COLD_START_STRATEGIES, ParamError

_PREFIX = "__mfspark_"


def dot(a: Column, b: Column) -> Column:
    """``sum(a[k] * b[k])`` of two ``array<double>`` columns (null if either is null)."""
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0), lambda acc, x: acc + x)


def _side(factors: DataFrame, name: str) -> DataFrame:
    return factors.select(F.col("id").alias(f"{_PREFIX}{name}_id"),
                          F.col("bias").alias(f"{_PREFIX}{name}_bias"),
                          F.col("features").alias(f"{_PREFIX}{name}_features"))


def int_ids(df: DataFrame, column: str, what: str) -> Column:
    """``df[column]`` as ``int``, as MLlib casts IDs: a null stays null; a value that is not
    an integer in the int range fails the Spark job that reads it, naming the value.  A
    column that is not numeric is a :class:`ParamError` at once (MLlib refuses it too)."""
    kind = df.schema[column].dataType
    if isinstance(kind, T.IntegerType):
        return F.col(f"`{column}`")
    if not isinstance(kind, T.NumericType):
        raise ParamError(f"compatibleSchema=True (MLlib's int IDs) needs numeric {what} IDs; "
                         f"column {column!r} is {kind.simpleString()}; set "
                         f"compatibleSchema=False to keep IDs of any type")
    value = F.col(f"`{column}`")
    as_int = value.try_cast("int")  # null when out of range or NaN
    bad = value.isNotNull() & (as_int.isNull() | (as_int != value))
    message = F.concat(F.lit(f"compatibleSchema=True (MLlib's int IDs): {what} ID "),
                       value.cast("string"),
                       F.lit(f" in column {column!r} is not an integer in the int range; set "
                             "compatibleSchema=False to keep the IDs' own type"))
    return F.when(bad, F.raise_error(message)).otherwise(as_int)


def mllib_factors(factors: DataFrame, what: str) -> DataFrame:
    """A model's factors in MLlib's schema: ``id`` int, ``features`` array<float>."""
    return factors.select(int_ids(factors, "id", what).alias("id"),
                          F.col("features").cast("array<float>").alias("features"))


def clip(prediction: Column, low: float | None, high: float | None) -> Column:
    """Clip to ``[low, high]`` (either may be None); NaN stays NaN."""
    clipped = prediction
    if low is not None:
        clipped = F.greatest(clipped, F.lit(float(low)))
    if high is not None:
        clipped = F.least(clipped, F.lit(float(high)))
    return F.when(F.isnan(prediction), prediction).otherwise(clipped)


def check_new_column(df: DataFrame, column: str) -> None:
    """Raise :class:`ParamError` if ``df`` already has ``column``, matched as Spark
    resolves names (case-insensitively unless ``spark.sql.caseSensitive``)."""
    sensitive = df.sparkSession.conf.get("spark.sql.caseSensitive", "false") == "true"
    clash = [c for c in df.columns
             if (c == column if sensitive else c.lower() == column.lower())]
    if clash:
        raise ParamError(f"Column {clash[0]!r} already exists in the DataFrame to transform "
                         f"({df.columns}); choose another output column with "
                         f"setPredictionCol(...), or drop or rename {clash[0]!r} first")


def predict_ratings(df: DataFrame, user_factors: DataFrame, item_factors: DataFrame,
                    mu: float, user_col: str, item_col: str, prediction_col: str,
                    strategy: str = "nan", low: float | None = None,
                    high: float | None = None) -> DataFrame:
    """``df`` with a ``prediction_col`` (double) appended; rows are kept (except with
    ``strategy="drop"``) and their columns untouched.  :class:`ParamError` if ``df``
    lacks an ID column or already has ``prediction_col``.

    Parameters
    ----------
    user_factors, item_factors : DataFrame
        ``id``, ``bias`` (double), ``features`` (array<double>), one row per ID.
    strategy : {"nan", "drop", "fallback"}
        The cold-start strategy (module docstring), in any case.
    low, high : float, optional
        Clip the predictions to this range.
    """
    if strategy.lower() not in COLD_START_STRATEGIES:
        raise ParamError(f"coldStartStrategy must be one of {COLD_START_STRATEGIES} (any "
                         f"case), got {strategy!r}")
    strategy = strategy.lower()
    for column in (user_col, item_col):
        if column not in df.columns:
            raise ParamError(f"column {column!r} not found; the DataFrame has {df.columns}")
    check_new_column(df, prediction_col)
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
    return out.select(*[F.col(f"`{c}`") for c in df.columns], F.col(f"`{prediction_col}`"))
