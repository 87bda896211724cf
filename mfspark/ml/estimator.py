"""``mfspark.ALS``: the ``pyspark.ml`` estimator, a drop-in for MLlib's ALS.

``fit`` reuses the training library end to end: the ratings are validated
(:func:`mfspark.data.validate.typed_ratings`), indexed and partitioned by block
(:func:`mfspark.data.prepare.prepare`) and fitted (:func:`mfspark.engine.loop.fit`) into a
work directory; the result becomes an :class:`mfspark.ALSModel` holding factor DataFrames
keyed by the original IDs.  No training math lives here.

MLlib's storage levels choose what they can here: ``intermediateStorageLevel`` is the
level of the two block-partitioned copies of the ratings read at every half-step, and
``finalStorageLevel`` the level of the local checkpoint that keeps the fitted factors once
the work directory is deleted (factors read from a kept ``workDir`` stay on Parquet).
"""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable, DefaultParamsWriter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.data.prepare import prepare
from mfspark.data.validate import typed_ratings
from mfspark.engine.loop import fit, log_iteration
from mfspark.io import fs
from mfspark.io.model import commit_directory
from mfspark.ml.freshness import check_compatible, initial_from_model, initial_record
from mfspark.ml.metadata import model_metadata
from mfspark.ml.model import OVERWRITE_HINT, ALSModel
from mfspark.ml.params import EstimatorParams, ParamError
from mfspark.ml.predict import int_ids
from mfspark.ml.workers import check_workers


class ALS(Estimator[ALSModel], EstimatorParams, DefaultParamsWritable,
          DefaultParamsReadable["ALS"]):
    """Alternating least squares for ``mu + b_i + c_j + u_i . v_j`` (docs/model.md), with the
    parameters of ``pyspark.ml.recommendation.ALS`` (see :mod:`mfspark.ml.params`)."""

    @keyword_only
    def __init__(self, *, rank: int = 10, maxIter: int = 10, regParam: float = 0.1,
                 numUserBlocks: int | None = None, numItemBlocks: int | None = None,
                 implicitPrefs: bool = False, alpha: float = 1.0, userCol: str = "user",
                 itemCol: str = "item", seed: int = 0, ratingCol: str = "rating",
                 nonnegative: bool = False, checkpointInterval: int = 10,
                 coldStartStrategy: str = "nan", blockSize: int = 4096,
                 predictionCol: str = "prediction", regScale: str = "count",
                 biases: bool | None = None, workDir: str | None = None,
                 minRating: float | None = None, maxRating: float | None = None,
                 cgSteps: int = 0, intermediateStorageLevel: str = "MEMORY_AND_DISK",
                 finalStorageLevel: str = "MEMORY_AND_DISK",
                 compatibleSchema: bool = False) -> None:
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

    def setIntermediateStorageLevel(self, value: str) -> "ALS":
        return self._set(intermediateStorageLevel=value)

    def setFinalStorageLevel(self, value: str) -> "ALS":
        return self._set(finalStorageLevel=value)

    def setCompatibleSchema(self, value: bool) -> "ALS":
        return self._set(compatibleSchema=value)

    def setInitialModel(self, model: ALSModel | None) -> "ALS":
        """Warm start: ``fit`` begins from ``model``'s factors and biases, matched by ID
        (docs/freshness.md); None: a cold start.  Held by this instance and its copies, not
        saved with the estimator's parameters."""
        self._initial_model = model
        return self

    def getInitialModel(self) -> ALSModel | None:
        """The model ``fit`` starts from, or None."""
        return getattr(self, "_initial_model", None)

    def write(self) -> "_ALSWriter":
        """A writer of the parameters (``metadata/``, as ``DefaultParamsWriter``) that
        replaces an existing directory only once the new one is complete."""
        return _ALSWriter(self)

    def _work_dir(self, spark: SparkSession) -> tuple[str, bool]:
        """(directory, whether it is temporary and deleted after fitting)."""
        if self.isDefined(self.workDir):
            return fs.qualify(spark, self.getOrDefault(self.workDir)), False
        scratch = fs.scratch_dir(spark, "mfspark-als")
        if scratch is None:
            raise ParamError("set workDir to a directory that the driver and every executor "
                             "can reach (e.g. on HDFS), or set spark.checkpoint.dir")
        return scratch, True

    def _fit(self, dataset: DataFrame) -> ALSModel:
        params = self.training_params()
        start = self.getInitialModel()
        if start is not None:  # a mismatched model fails before any work
            check_compatible(start.metadata, params, f"ALSModel {start.uid}")
        intermediate, final = self.storage_levels()
        spark = dataset.sparkSession
        columns = {"user": self.getUserCol(), "item": self.getItemCol(),
                   "rating": self.getRatingCol()}
        missing = [c for c in columns.values() if c not in dataset.columns]
        if missing:
            raise ParamError(f"ALS.fit: column(s) {missing} not found; the DataFrame has "
                             f"{dataset.columns}")
        selected = [F.col(f"`{c}`").alias(name) for name, c in columns.items()]
        if self.getCompatibleSchema():  # MLlib's int IDs, checked as the ratings are read
            selected[:2] = [int_ids(dataset, columns[name], name).alias(name)
                            for name in ("user", "item")]
        check_workers(spark)  # before the first job, whose UDFs would fail in the workers
        ratings, stats = typed_ratings(dataset.select(*selected), source="ALS.fit",
                                       keep_id_types=True)
        prepared = prepare(ratings, params, storage=intermediate, stats=stats)
        work_dir, temporary = self._work_dir(spark)
        try:
            initial = initial_from_model(start, prepared, params) if start is not None else None
            fitted = fit(prepared.ratings, params, work_dir, on_iteration=log_iteration,
                         initial=initial)
            factors = [prepared.factors(spark, fitted, side) for side in ("user", "item")]
            if temporary or prepared.users.frame is not None or prepared.items.frame is not None:
                # the model outlives its work directory and the ID index: keep its factors
                factors = [f.localCheckpoint(eager=True, storageLevel=final) for f in factors]
        finally:
            prepared.unpersist()
            if temporary:
                fs.delete(spark, work_dir)
        model = ALSModel(factors[0], factors[1], fitted.mu,
                         model_metadata(params, fitted, prepared, stats, **(
                             {"initial_model": initial_record(start.metadata, None)}
                             if start is not None else {})))
        return self._copyValues(model)


class _ALSWriter(DefaultParamsWriter):
    def save(self, path: str) -> None:
        """Save the parameters at ``path``, committed as a model is
        (:func:`mfspark.io.model.commit_directory`): with ``overwrite()`` an existing
        directory is replaced only once the new one is written, never deleted first (as
        ``MLWriter.save`` would, through the JVM, which a Spark Connect client lacks)."""
        commit_directory(self.sparkSession, path, self.saveImpl, self.shouldOverwrite,
                         OVERWRITE_HINT)
