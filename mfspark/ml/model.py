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

from mfspark.ml import predict, recommend
from mfspark.io import fs
from mfspark.io.model import read_model, write_model
from mfspark.ml.params import ModelParams


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
        """User factors: ``id``, ``features`` (array<double>), ``bias`` (double)."""
        return self._user_factors.select("id", "features", "bias")

    @property
    def itemFactors(self) -> DataFrame:
        """Item factors: ``id``, ``features`` (array<double>), ``bias`` (double)."""
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

    def _transform(self, dataset: DataFrame) -> DataFrame:
        """Append ``predictionCol``: ``mu + b + c + u . v`` with the cold-start strategy."""
        self.checkModelParams()
        low, high = self.clipRange()
        return predict.predict_ratings(
            dataset, self._user_factors, self._item_factors, self._mu, self.getUserCol(),
            self.getItemCol(), self.getPredictionCol(), self.getColdStartStrategy(), low, high)

    def _recommend(self, to_users: bool, k: int, subset: DataFrame | None,
                   exclude: DataFrame | None) -> DataFrame:
        src, dst = ((self._user_factors, self._item_factors) if to_users
                    else (self._item_factors, self._user_factors))
        src_col, dst_col = ((self.getUserCol(), self.getItemCol()) if to_users
                            else (self.getItemCol(), self.getUserCol()))
        if subset is not None:
            if src_col not in subset.columns:
                raise ValueError(f"column {src_col!r} not found; the DataFrame has "
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

    def write(self) -> MLWriter:
        """An :class:`MLWriter` for the model layout of :mod:`mfspark.io.model`."""
        return _ALSModelWriter(self)

    @classmethod
    def read(cls) -> MLReader["ALSModel"]:
        """An :class:`MLReader` that also reads models written by ``jobs/train.py``."""
        return _ALSModelReader()


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
                    overwrite=self.shouldOverwrite, extra=params)


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
