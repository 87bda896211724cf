"""The bad-row policy: stop on bad rows, or set them aside and train on the rest.

``on_bad_rows = "fail"`` (the default) raises :class:`InvalidRatingsError` with the count per
reason and the first few bad rows.  ``"quarantine"`` writes every bad row with its ``reason``
to ``OUT/rejected/`` and reports the counts; either way no row disappears unaccounted.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mfspark.config import InputSpec
from mfspark.io.rejected import replace_rejected
from mfspark.data.validate import (InvalidRatingsError, RatingStats, bad_rows_message,
                              check_not_empty, first_rows, id_types, inspect, reasons, tag,
                              typed)

log = logging.getLogger("mfspark")


def screen(df: DataFrame, spec: InputSpec, source: str,
           rejected_dir: str) -> tuple[DataFrame, RatingStats]:
    """Apply ``spec.on_bad_rows`` to the canonical rows ``df``.

    Returns the good rows, typed (:func:`mfspark.data.validate.typed`), and the counts.  With the
    quarantine policy the bad rows go to ``rejected_dir`` (cleared when there are none).
    """
    spark = df.sparkSession
    tagged = tag(df, spec.rating_range)
    found = inspect(tagged, reasons(spec.rating_range))
    check_not_empty(found.rows, source)
    bad_rows = F.col("reason").isNotNull()
    if found.bad and spec.on_bad_rows == "fail":
        raise InvalidRatingsError(bad_rows_message(source, found.bad, found.rows,
                                                   first_rows(tagged, bad_rows)))
    rejected = sum(found.bad.values())
    if rejected == found.rows:
        raise InvalidRatingsError(f"{source}: all {found.rows} rows were rejected "
                                  f"({found.bad}); nothing is left to train on")
    replace_rejected(spark, tagged.filter(bad_rows) if rejected else None, rejected_dir)
    if rejected:
        log.warning("%d of %d rows quarantined to %s: %s", rejected, found.rows, rejected_dir,
                    "; ".join(f"{n} {name}" for name, n in found.bad.items()))
    good = typed(tagged.filter(~bad_rows).drop("reason"), found)
    user_type, item_type = id_types(good)
    return good, RatingStats(rows=found.rows, user_type=user_type, item_type=item_type,
                             bad=found.bad, users=found.users, items=found.items)
