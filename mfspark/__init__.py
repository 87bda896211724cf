"""mfspark: biased matrix factorization by alternating least squares on Apache Spark.

``from mfspark import ALS, ALSModel`` gives a drop-in replacement for
``pyspark.ml.recommendation.ALS`` / ``ALSModel``.
"""

__version__ = "0.1.0"

from mfspark.estimator import ALS  # noqa: E402  (after __version__: train.py imports it)
from mfspark.model import ALSModel  # noqa: E402

__all__ = ["ALS", "ALSModel", "__version__"]
