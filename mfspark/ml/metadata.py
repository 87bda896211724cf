"""What a saved model records about how it was trained (``metadata.json``)."""

from __future__ import annotations

import dataclasses
import platform
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyspark

from mfspark.version import __version__
from mfspark.config import ALSParams
from mfspark.data.prepare import Prepared
from mfspark.engine.loop import Fit
from mfspark.data.validate import RatingStats

FORMAT = "mfspark-model"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """The versions of mfspark and of what it computes with."""
    return {"mfspark": __version__, "pyspark": pyspark.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "pyarrow": pa.__version__,
            "python": platform.python_version()}


def model_metadata(params: ALSParams, fitted: Fit, prepared: Prepared,
                   stats: RatingStats, **extra: Any) -> dict[str, Any]:
    """The metadata of a fitted model: format, every parameter, the global mean, sizes, ID
    types, the history and the versions; ``extra`` adds what the caller knows beyond
    (the training job: input, row accounting, split, baselines)."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mu": fitted.mu, **dataclasses.asdict(params),
        "user_id_type": stats.user_type, "item_id_type": stats.item_type,
        "num_users": prepared.ratings.num_users, "num_items": prepared.ratings.num_items,
        "num_train": prepared.ratings.count, **extra,
        "history": fitted.history, "versions": versions(),
    }
