"""The ``pyspark.ml`` API: ``ALS`` (``estimator``) and ``ALSModel`` (``model``) with their
parameters, predictions and top-k recommendations, and what a saved model records."""
