"""The fitted model of :class:`mfspark.ALS`: factors, global mean, predictions, top-N, I/O.

An :class:`ALSModel` holds the learned state only: the user and item factor DataFrames
(``id``, ``features``, ``bias``), the global mean ``mu`` and the training metadata (history
included).  It saves to and loads from the layout of :mod:`mfspark.io.model` (the one
``jobs/train.py`` writes), plus a ``metadata/`` directory with the ``pyspark.ml`` parameters
so that it also loads as a stage of a saved ``PipelineModel``.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml import Model
from pyspark.ml.util import (DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader,
                             MLWritable, MLWriter)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mfspark.ml import predict, recommend
from mfspark.io import fs
from mfspark.io.model import read_model, write_model
from mfspark.ml.freshness import fold_in
from mfspark.ml.params import ModelParams, ParamError


class ALSModel(Model, ModelParams, MLWritable, MLReadable["ALSModel"]):
    """Biased matrix factorization ``mu + b_i + c_j + u_i . v_j`` fitted by
    :class:`mfspark.ALS`; a drop-in for ``pyspark.ml.recommendation.ALSModel``."""

    def __init__(self, userFactors: DataFrame | None = None,
                 itemFactors: DataFrame | None = None, mu: float = 0.0,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._user_factors = userFactors
        self._item_factors = itemFactors
        self._mu = float(mu)
        self._metadata = dict(metadata or {})

    @property
    def userFactors(self) -> DataFrame:
        """User factors: ``id``, ``features`` (array<double>), ``bias`` (double); with
        ``compatibleSchema``, MLlib's ``id`` (int) and ``features`` (array<float>) only."""
        if self.getCompatibleSchema():
            return predict.mllib_factors(self._user_factors, "user")
        return self._user_factors.select("id", "features", "bias")

    @property
    def itemFactors(self) -> DataFrame:
        """Item factors, as :attr:`userFactors`."""
        if self.getCompatibleSchema():
            return predict.mllib_factors(self._item_factors, "item")
        return self._item_factors.select("id", "features", "bias")

    @property
    def rank(self) -> int:
        """The rank K of the factorization."""
        return int(self._metadata["rank"])

    @property
    def mu(self) -> float:
        """The global mean of the training ratings."""
        return self._mu

    @property
    def history(self) -> list[dict[str, float]]:
        """One entry per iteration: objective, train RMSE, seconds (see docs/model.md)."""
        return list(self._metadata.get("history", []))

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything recorded at training time (parameters, counts, ID types, versions)."""
        return dict(self._metadata)

    def setUserCol(self, value: str) -> "ALSModel":
        return self._set(userCol=value)

    def setItemCol(self, value: str) -> "ALSModel":
        return self._set(itemCol=value)

    def setPredictionCol(self, value: str) -> "ALSModel":
        return self._set(predictionCol=value)

    def setColdStartStrategy(self, value: str) -> "ALSModel":
        return self._set(coldStartStrategy=value)

    def setBlockSize(self, value: int) -> "ALSModel":
        return self._set(blockSize=value)

    def setCompatibleSchema(self, value: bool) -> "ALSModel":
        return self._set(compatibleSchema=value)

    def _sides(self) -> tuple[DataFrame, DataFrame]:
        """The user and item factors with the ID type of the outputs (int with
        ``compatibleSchema``, else the model's own)."""
        users, items = self._user_factors, self._item_factors
        if self.getCompatibleSchema():
            users = users.withColumn("id", predict.int_ids(users, "id", "user"))
            items = items.withColumn("id", predict.int_ids(items, "id", "item"))
        return users, items

    def _transform(self, dataset: DataFrame) -> DataFrame:
        """Append ``predictionCol``: ``mu + b + c + u . v`` with the cold-start strategy
        (a double; with ``compatibleSchema``, MLlib's float, and the ID columns as int)."""
        self.checkModelParams()
        low, high = self.clipRange()
        out = predict.predict_ratings(
            dataset, self._user_factors, self._item_factors, self._mu, self.getUserCol(),
            self.getItemCol(), self.getPredictionCol(), self.getColdStartStrategy(), low, high)
        if self.getCompatibleSchema():  # MLlib casts the ID columns in place, too
            column = self.getPredictionCol()
            out = out.withColumns({
                self.getUserCol(): predict.int_ids(out, self.getUserCol(), "user"),
                self.getItemCol(): predict.int_ids(out, self.getItemCol(), "item"),
                column: F.col(f"`{column}`").cast("float")})
        return out

    def _recommend(self, to_users: bool, k: int, subset: DataFrame | None,
                   exclude: DataFrame | None) -> DataFrame:
        users, items = self._sides()
        src, dst = (users, items) if to_users else (items, users)
        src_col, dst_col = ((self.getUserCol(), self.getItemCol()) if to_users
                            else (self.getItemCol(), self.getUserCol()))
        if subset is not None:
            if src_col not in subset.columns:
                raise ParamError(f"column {src_col!r} not found; the DataFrame has "
                                 f"{subset.columns}")
            wanted = subset.select(subset[src_col].try_cast(src.schema["id"].dataType)
                                   .alias("id")).distinct()
            src = src.join(wanted, "id", "left_semi")
        self.checkModelParams()
        return recommend.recommend(src, dst, self._mu, k, self.getBlockSize(), src_col,
                                   dst_col, exclude)

    def recommendForAllUsers(self, numItems: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``numItems`` items for every user (``userCol``, ``recommendations``: array of
        ``struct<itemCol, rating>``); ``exclude``: (user, item) pairs never to recommend,
        e.g. the training ratings."""
        return self._recommend(True, numItems, None, exclude)

    def recommendForAllItems(self, numUsers: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``numUsers`` users for every item; ``exclude`` as above."""
        return self._recommend(False, numUsers, None, exclude)

    def recommendForUserSubset(self, dataset: DataFrame, numItems: int,
                               exclude: DataFrame | None = None) -> DataFrame:
        """Top ``numItems`` items for the users of ``dataset[userCol]`` known to the model."""
        return self._recommend(True, numItems, dataset, exclude)

    def recommendForItemSubset(self, dataset: DataFrame, numUsers: int,
                               exclude: DataFrame | None = None) -> DataFrame:
        """Top ``numUsers`` users for the items of ``dataset[itemCol]`` known to the model."""
        return self._recommend(False, numUsers, dataset, exclude)

    def foldInUsers(self, ratings: DataFrame, ratingCol: str = "rating"
                    ) -> tuple["ALSModel", dict[str, Any]]:
        """A new model in which the users of ``ratings`` (userCol, itemCol, ratingCol) have
        the factors and biases of one exact half-step against this model's items
        (docs/freshness.md), and the summary: ratings used and ignored (unknown items),
        users solved, new, updated and skipped."""
        return fold_in(self, ratings, "user", rating_col=ratingCol)

    def foldInItems(self, ratings: DataFrame, ratingCol: str = "rating"
                    ) -> tuple["ALSModel", dict[str, Any]]:
        """As :meth:`foldInUsers`, for the items of ``ratings`` against this model's users."""
        return fold_in(self, ratings, "item", rating_col=ratingCol)

    def write(self) -> MLWriter:
        """An :class:`MLWriter` for the model layout of :mod:`mfspark.io.model`."""
        return _ALSModelWriter(self)

    @classmethod
    def read(cls) -> MLReader["ALSModel"]:
        """An :class:`MLReader` that also reads models written by ``jobs/train.py``."""
        return _ALSModelReader()


#: What ``save`` onto an existing path suggests (MLlib's advice).
OVERWRITE_HINT = "use write().overwrite().save(path) to replace it"


class _ALSModelWriter(MLWriter):
    def __init__(self, instance: ALSModel) -> None:
        super().__init__()
        self.instance = instance

    def save(self, path: str) -> None:
        """Save the model at ``path``; with ``overwrite()`` an existing model there is
        replaced only once the new one is complete (:func:`mfspark.io.model.write_model`),
        never deleted first (as ``MLWriter.save`` would, through the JVM)."""
        self.saveImpl(path)

    def saveImpl(self, path: str) -> None:
        model, spark = self.instance, self.sparkSession
        metadata = {**model._metadata, "mu": model._mu}

        def params(staging: str) -> None:
            DefaultParamsWriter.saveMetadata(model, staging, spark)

        write_model(spark, path, model._user_factors, model._item_factors, metadata,
                    overwrite=self.shouldOverwrite, extra=params, hint=OVERWRITE_HINT)


class _ALSModelReader(MLReader[ALSModel]):
    def load(self, path: str) -> ALSModel:
        spark: SparkSession = self.sparkSession
        saved = read_model(spark, path)
        model = ALSModel(saved.user_factors.select("id", "bias", "features"),
                         saved.item_factors.select("id", "bias", "features"),
                         saved.metadata["mu"], saved.metadata)
        if fs.exists(spark, f"{path}/metadata"):  # saved by ALSModel, not by jobs/train.py
            params = DefaultParamsReader.loadMetadata(path, spark)
            model._resetUid(params["uid"])
            DefaultParamsReader.getAndSetParams(model, params)
        return model
