"""mfspark: biased matrix factorization by alternating least squares on Apache Spark.

``from mfspark import ALS, ALSModel`` gives a drop-in replacement for
``pyspark.ml.recommendation.ALS`` / ``ALSModel``.  The layers, each a package whose imports
only point down: ``core`` (the math, NumPy only), ``io`` (paths and file formats),
``engine`` (the Spark half-steps and loop), ``data`` (reading, validation, splits, the
preparation pipeline), ``ml`` (the estimator and model), ``evaluation`` (metrics, tuning,
benchmarks) and ``app`` (the jobs).
"""

from __future__ import annotations

from typing import Any

from mfspark.version import __version__

__all__ = ["ALS", "ALSModel", "__version__"]


def __getattr__(name: str) -> Any:
    # ALS and ALSModel are loaded on first use, so that importing the math layer
    # (mfspark.core) never loads pyspark
    if name == "ALS":
        from mfspark.ml.estimator import ALS
        return ALS
    if name == "ALSModel":
        from mfspark.ml.model import ALSModel
        return ALSModel
    raise AttributeError(f"module 'mfspark' has no attribute {name!r}")
