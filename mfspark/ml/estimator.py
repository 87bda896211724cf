"""``mfspark.ALS``: the ``pyspark.ml`` estimator, a drop-in for MLlib's ALS.

``fit`` reuses the training library end to end: the ratings are validated
(:func:`mfspark.data.validate.typed_ratings`), indexed and partitioned by block
(:func:`mfspark.data.prepare.prepare`) and fitted (:func:`mfspark.engine.loop.fit`) into a
work directory; the result becomes an :class:`mfspark.ALSModel` holding factor DataFrames
keyed by the original IDs.  No training math lives here.
"""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.data.prepare import prepare
from mfspark.data.validate import typed_ratings
from mfspark.engine.loop import fit, log_iteration
from mfspark.io import fs
from mfspark.ml.metadata import model_metadata
from mfspark.ml.model import ALSModel
from mfspark.ml.params import EstimatorParams, ParamError


class ALS(Estimator[ALSModel], EstimatorParams, DefaultParamsWritable,
          DefaultParamsReadable["ALS"]):
    """Alternating least squares for ``mu + b_i + c_j + u_i . v_j`` (docs/model.md), with the
    parameters of ``pyspark.ml.recommendation.ALS`` (see :mod:`mfspark.ml.params`)."""

    @keyword_only
    def __init__(self, *, rank: int = 10, maxIter: int = 10, regParam: float = 0.1,
                 numUserBlocks: int = 10, numItemBlocks: int = 10,
                 implicitPrefs: bool = False, alpha: float = 1.0, userCol: str = "user",
                 itemCol: str = "item", seed: int = 0, ratingCol: str = "rating",
                 nonnegative: bool = False, checkpointInterval: int = 10,
                 coldStartStrategy: str = "nan", blockSize: int = 4096,
                 predictionCol: str = "prediction", regScale: str = "count",
                 biases: bool | None = None, workDir: str | None = None,
                 minRating: float | None = None, maxRating: float | None = None,
                 cgSteps: int = 0) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> "ALS":
        """Set any of the keyword parameters of the constructor (None leaves it unset)."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def setRank(self, value: int) -> "ALS":
        return self._set(rank=value)

    def setMaxIter(self, value: int) -> "ALS":
        return self._set(maxIter=value)

    def setRegParam(self, value: float) -> "ALS":
        return self._set(regParam=value)

    def setRegScale(self, value: str) -> "ALS":
        return self._set(regScale=value)

    def setUserCol(self, value: str) -> "ALS":
        return self._set(userCol=value)

    def setItemCol(self, value: str) -> "ALS":
        return self._set(itemCol=value)

    def setRatingCol(self, value: str) -> "ALS":
        return self._set(ratingCol=value)

    def setPredictionCol(self, value: str) -> "ALS":
        return self._set(predictionCol=value)

    def setColdStartStrategy(self, value: str) -> "ALS":
        return self._set(coldStartStrategy=value)

    def setImplicitPrefs(self, value: bool) -> "ALS":
        return self._set(implicitPrefs=value)

    def setAlpha(self, value: float) -> "ALS":
        return self._set(alpha=value)

    def setNonnegative(self, value: bool) -> "ALS":
        return self._set(nonnegative=value)

    def setCgSteps(self, value: int) -> "ALS":
        return self._set(cgSteps=value)

    def setBiases(self, value: bool) -> "ALS":
        return self._set(biases=value)

    def setSeed(self, value: int) -> "ALS":
        return self._set(seed=value)

    def setNumUserBlocks(self, value: int) -> "ALS":
        return self._set(numUserBlocks=value)

    def setNumItemBlocks(self, value: int) -> "ALS":
        return self._set(numItemBlocks=value)

    def setCheckpointInterval(self, value: int) -> "ALS":
        return self._set(checkpointInterval=value)

    def setBlockSize(self, value: int) -> "ALS":
        return self._set(blockSize=value)

    def setNumBlocks(self, value: int) -> "ALS":
        return self._set(numUserBlocks=value, numItemBlocks=value)

    def setWorkDir(self, value: str) -> "ALS":
        return self._set(workDir=value)

    def _work_dir(self, spark: SparkSession) -> tuple[str, bool]:
        """(directory, whether it is temporary and deleted after fitting)."""
        if self.isDefined(self.workDir):
            return fs.qualify(spark, self.getOrDefault(self.workDir)), False
        base = spark.conf.get("spark.checkpoint.dir", None)
        if not base and spark.conf.get("spark.master", "").startswith("local"):
            base = (spark.conf.get("spark.local.dir", None) or tempfile.gettempdir())
            base = base.split(",")[0]
        if not base:
            raise ParamError("set workDir to a directory that the driver and every executor "
                             "can reach (e.g. on HDFS), or set spark.checkpoint.dir")
        return fs.qualify(spark, f"{base}/mfspark-als-{uuid.uuid4().hex[:12]}"), True

    def _fit(self, dataset: DataFrame) -> ALSModel:
        params = self.training_params()
        spark = dataset.sparkSession
        columns = {"user": self.getUserCol(), "item": self.getItemCol(),
                   "rating": self.getRatingCol()}
        missing = [c for c in columns.values() if c not in dataset.columns]
        if missing:
            raise ValueError(f"ALS.fit: column(s) {missing} not found; the DataFrame has "
                             f"{dataset.columns}")
        ratings, stats = typed_ratings(
            dataset.select(*[F.col(c).alias(name) for name, c in columns.items()]),
            source="ALS.fit", keep_id_types=True)
        prepared = prepare(ratings, params)
        work_dir, temporary = self._work_dir(spark)
        try:
            fitted = fit(prepared.ratings, params, work_dir, on_iteration=log_iteration)
            factors = [prepared.factors(spark, fitted, side) for side in ("user", "item")]
            if temporary or prepared.users.frame is not None or prepared.items.frame is not None:
                # the model outlives its work directory and the ID index: keep its factors
                factors = [f.localCheckpoint(eager=True) for f in factors]
        finally:
            prepared.unpersist()
            if temporary:
                fs.delete(spark, work_dir)
        model = ALSModel(factors[0], factors[1], fitted.mu,
                         model_metadata(params, fitted, prepared, stats))
        return self._copyValues(model)
