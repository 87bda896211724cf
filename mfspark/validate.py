"""Typing and checking the canonical rating columns before anything is trained.

:func:`typed_ratings` turns the reader's output into ``user``, ``item`` (long when every
value is an integer, else string; typed sources keep their type), ``rating`` (double) and
``timestamp`` (long, when present), and refuses input that would otherwise lose rows: null
IDs, null, non-numeric, NaN or infinite ratings, or no rows at all.  All checks run in one
aggregation; the error says how many rows were bad, why, and shows a few of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

_INTEGER = r"^[+-]?[0-9]{1,18}$"
_EXAMPLES = 5


class InvalidRatingsError(ValueError):
    """The ratings contain rows that cannot be trained on."""


@dataclass(frozen=True)
class RatingStats:
    """Counts gathered while validating: ``rows`` read, and the ID types chosen."""

    rows: int
    user_type: str
    item_type: str


def _is_text(df: DataFrame, column: str) -> bool:
    return isinstance(df.schema[column].dataType, T.StringType)


def _problems(df: DataFrame) -> dict[str, Column]:
    """Each problem's name and the condition that flags a row with it."""
    rating = F.col("rating")
    as_double = rating.try_cast("double")  # ANSI mode: a plain cast would throw
    checks = {
        "null user ID": F.col("user").isNull(),
        "null item ID": F.col("item").isNull(),
        "null rating": rating.isNull(),
        "non-numeric rating": rating.isNotNull() & as_double.isNull(),
        "NaN or infinite rating": F.isnan(as_double) | (F.abs(as_double) == float("inf")),
    }
    if _is_text(df, "rating"):
        # Spark casts the strings 'NaN' and 'Infinity' to doubles: count them as non-finite
        checks["NaN or infinite rating"] = checks["NaN or infinite rating"] & as_double.isNotNull()
    return checks


def typed_ratings(df: DataFrame, source: str = "input",
                  keep_id_types: bool = False) -> tuple[DataFrame, RatingStats]:
    """Check ``df`` (canonical columns) and return it typed, with what was counted.

    ``keep_id_types=True`` leaves string IDs as strings even when they all look like
    integers (a DataFrame's own types are the caller's choice; only text files are retyped).
    """
    checks = _problems(df)
    aggs = [F.count(F.lit(1)).alias("rows")]
    aggs += [F.sum(F.when(cond, 1).otherwise(0)).alias(f"p{i}")
             for i, cond in enumerate(checks.values())]
    for side in ("user", "item", "timestamp"):
        if side in df.columns and _is_text(df, side):
            aggs.append(F.sum(F.when(F.col(side).rlike(_INTEGER), 0).otherwise(1)).alias(side))
    counts = df.agg(*aggs).first().asDict()
    if counts["rows"] == 0:
        raise InvalidRatingsError(f"{source}: no ratings were found (the input is empty)")
    bad = {name: counts[f"p{i}"] for i, name in enumerate(checks) if counts[f"p{i}"]}
    if bad:
        any_bad = F.lit(False)
        for name in bad:
            any_bad = any_bad | F.coalesce(checks[name], F.lit(False))
        examples = [r.asDict() for r in df.filter(any_bad).limit(_EXAMPLES).collect()]
        summary = "; ".join(f"{n} row(s) with a {name}" for name, n in bad.items())
        raise InvalidRatingsError(
            f"{source}: {summary} (of {counts['rows']} rows read). No row is dropped silently: "
            f"fix the input or filter it first. First offending rows: {examples}")
    types = {}
    for side in ("user", "item"):
        if _is_text(df, side) and counts[side] == 0 and not keep_id_types:
            df = df.withColumn(side, F.col(side).cast("long"))
        types[side] = df.schema[side].dataType.simpleString()
    df = df.withColumn("rating", F.col("rating").cast("double"))
    if "timestamp" in df.columns and _is_text(df, "timestamp") and counts["timestamp"] == 0:
        df = df.withColumn("timestamp", F.col("timestamp").cast("long"))
    return df, RatingStats(rows=counts["rows"], user_type=types["user"],
                           item_type=types["item"])
