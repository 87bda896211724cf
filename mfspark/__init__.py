"""mfspark: biased matrix factorization by alternating least squares on Apache Spark."""

__version__ = "0.1.0"
