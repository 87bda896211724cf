"""Checking and typing the canonical rating columns before anything is trained.

Every row gets a ``reason`` (:func:`reason_column`): the first problem found with it, or
null for a good row.  The problems, in order: a null user or item ID, a null, non-numeric,
NaN or infinite rating, a rating outside the configured scale.  :func:`inspect` counts the
rows, the bad rows per reason and whether the text IDs are all integers in one aggregation;
:func:`typed` then turns the good rows into ``user``, ``item`` (long when every value is an
integer, else string; typed sources keep their type), ``rating`` (double) and ``timestamp``
(long when every value is an integer).  What happens to bad rows (fail or quarantine) is
:mod:`mfspark.data.quarantine`'s business; :func:`typed_ratings` is the strict path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mfspark.errors import MfsparkValueError

_INTEGER = r"^[+-]?[0-9]{1,18}$"
_EXAMPLES = 5


class InvalidRatingsError(MfsparkValueError):
    """The ratings contain rows that cannot be trained on."""


@dataclass(frozen=True)
class RatingStats:
    """Counts gathered while validating: ``rows`` read, the ID types chosen, and the number of
    bad rows per reason (empty when every row is good)."""

    rows: int
    user_type: str
    item_type: str
    bad: dict[str, int] = field(default_factory=dict)
    users: int = 0
    """Distinct user IDs read (approximate, within a few percent): sizes the blocks."""
    items: int = 0
    """Distinct item IDs read (approximate)."""

    @property
    def rejected(self) -> int:
        return sum(self.bad.values())


@dataclass(frozen=True)
class Inspection:
    """What one pass over the raw rows found: ``rows``, bad rows per reason, and for each
    text column among ``user``, ``item``, ``timestamp`` whether every good value is an
    integer."""

    rows: int
    bad: dict[str, int]
    integer: dict[str, bool]
    users: int = 0
    items: int = 0


def _is_text(df: DataFrame, column: str) -> bool:
    return isinstance(df.schema[column].dataType, T.StringType)


def range_reason(rating_range: tuple[float, float]) -> str:
    """The reason given to a rating outside ``rating_range``."""
    return f"rating outside [{rating_range[0]}, {rating_range[1]}]"


def _problems(df: DataFrame, rating_range: tuple[float, float] | None) -> dict[str, Column]:
    """Each problem's name and the condition that flags a row with it, in priority order."""
    rating = F.col("rating")
    as_double = rating.try_cast("double")  # ANSI mode: a plain cast would throw
    non_finite = F.isnan(as_double) | (F.abs(as_double) == float("inf"))
    checks = {
        "null user ID": F.col("user").isNull(),
        "null item ID": F.col("item").isNull(),
        "null rating": rating.isNull(),
        "non-numeric rating": rating.isNotNull() & as_double.isNull(),
        # Spark casts the strings 'NaN' and 'Infinity' to doubles: they count as non-finite
        "NaN or infinite rating": as_double.isNotNull() & non_finite,
    }
    if rating_range is not None:
        low, high = rating_range
        checks[range_reason(rating_range)] = (as_double < low) | (as_double > high)
    return checks


def reason_column(df: DataFrame, rating_range: tuple[float, float] | None) -> Column:
    """A string Column: the first problem of each row, null when the row is good."""
    reason = F.lit(None).cast("string")
    for name, cond in reversed(list(_problems(df, rating_range).items())):
        reason = F.when(F.coalesce(cond, F.lit(False)), F.lit(name)).otherwise(reason)
    return reason


def reasons(rating_range: tuple[float, float] | None) -> list[str]:
    """Every reason :func:`reason_column` can give, in priority order."""
    names = ["null user ID", "null item ID", "null rating", "non-numeric rating",
             "NaN or infinite rating"]
    return names + ([range_reason(rating_range)] if rating_range is not None else [])


def tag(df: DataFrame, rating_range: tuple[float, float] | None) -> DataFrame:
    """``df`` with a ``reason`` column (:func:`reason_column`)."""
    return df.withColumn("reason", reason_column(df, rating_range))


def inspect(tagged: DataFrame, names: list[str]) -> Inspection:
    """Count rows, bad rows per reason (of ``names``), integer-valued text columns and
    (approximately) distinct user and item IDs of a :func:`tag`-ged frame, in one
    aggregation."""
    good = F.col("reason").isNull()
    aggs = [F.count(F.lit(1)).alias("rows"),
            F.approx_count_distinct("user", DISTINCT_RSD).alias("users"),
            F.approx_count_distinct("item", DISTINCT_RSD).alias("items")]
    aggs += [F.sum(F.when(F.col("reason") == name, 1).otherwise(0)).alias(f"r{i}")
             for i, name in enumerate(names)]
    text = [c for c in ("user", "item", "timestamp") if c in tagged.columns and _is_text(tagged, c)]
    for side in text:
        aggs.append(F.sum(F.when(good & ~F.coalesce(F.col(side).rlike(_INTEGER), F.lit(False)), 1)
                          .otherwise(0)).alias(side))
    counts = tagged.agg(*aggs).first().asDict()
    return Inspection(rows=counts["rows"],
                      bad={n: counts[f"r{i}"] for i, n in enumerate(names) if counts[f"r{i}"]},
                      integer={side: counts[side] == 0 for side in text},
                      users=counts["users"], items=counts["items"])


#: Relative error of the distinct ID counts (HyperLogLog++): they only size the blocks.
DISTINCT_RSD = 0.05


def typed(df: DataFrame, found: Inspection, keep_id_types: bool = False) -> DataFrame:
    """Cast the (good) rows' text IDs and timestamps to long where all are integers, and the
    rating to double.  ``keep_id_types=True`` leaves string IDs as strings (a DataFrame's own
    types are the caller's choice; only text files are retyped)."""
    for side, integer in found.integer.items():
        if integer and not (keep_id_types and side in ("user", "item")):
            df = df.withColumn(side, F.col(side).try_cast("long"))
    return df.withColumn("rating", F.col("rating").try_cast("double"))


def bad_rows_message(source: str, bad: dict[str, int], rows: int,
                     examples: list[dict[str, Any]]) -> str:
    """The error for bad rows: how many, why, of how many, and the first few."""
    summary = "; ".join(f"{n} row(s) with a {name}" for name, n in bad.items())
    return (f"{source}: {summary} (of {rows} rows read). No row is dropped silently: fix the "
            "input, or set on_bad_rows = \"quarantine\" (--on-bad-rows quarantine) to set them "
            f"aside in OUT/rejected/. First offending rows: {examples}")


def first_rows(df: DataFrame, condition: Column) -> list[dict[str, Any]]:
    """A few rows matching ``condition``, as dicts, for error messages."""
    return [r.asDict() for r in df.filter(condition).limit(_EXAMPLES).collect()]


def check_not_empty(rows: int, source: str) -> None:
    if rows == 0:
        raise InvalidRatingsError(f"{source}: no ratings were found (the input is empty)")


def id_types(df: DataFrame) -> tuple[str, str]:
    """The Spark SQL type names of the ``user`` and ``item`` columns."""
    return tuple(df.schema[s].dataType.simpleString() for s in ("user", "item"))  # type: ignore


def typed_ratings(df: DataFrame, source: str = "input",
                  rating_range: tuple[float, float] | None = None,
                  keep_id_types: bool = False) -> tuple[DataFrame, RatingStats]:
    """Check ``df`` (canonical columns) and return it typed; any bad row is an error.
    ``keep_id_types``: see :func:`typed`."""
    tagged = tag(df, rating_range)
    found = inspect(tagged, reasons(rating_range))
    check_not_empty(found.rows, source)
    if found.bad:
        raise InvalidRatingsError(bad_rows_message(
            source, found.bad, found.rows, first_rows(tagged, F.col("reason").isNotNull())))
    out = typed(df, found, keep_id_types)
    user_type, item_type = id_types(out)
    return out, RatingStats(rows=found.rows, user_type=user_type, item_type=item_type,
                            users=found.users, items=found.items)
