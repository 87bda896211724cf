"""The ``pyspark.ml`` parameters of :class:`mfspark.ALS` and :class:`mfspark.ALSModel`.

The names, defaults and meanings follow ``pyspark.ml.recommendation.ALS`` wherever they make
sense for this model, so that a pipeline built on MLlib's ALS keeps working when only the
import changes; ``regParam`` keeps MLlib's meaning (lambda scaled by each row's rating
count) unless ``regScale="none"``.  ``implicitPrefs``/``alpha`` (implicit feedback, MLlib's
semantics, see :mod:`mfspark.core.implicit`) and ``nonnegative`` (NNLS, :mod:`mfspark.core.nnls`)
have MLlib's meaning too; ``biases`` unset means on for explicit and off for implicit
feedback (where ``biases=True`` adds a user and an item bias to MLlib's model).

Where mfspark accepts less than MLlib (``maxIter >= 1``, ``regParam > 0``) or ignores a
default (the block counts), the parameter's doc says so, so that ``explainParams()`` tells
what ``fit`` does.  A bad value is a :class:`ParamError`: a ``ValueError`` and pyspark's
``IllegalArgumentException`` (what MLlib raises) at once.
"""

from __future__ import annotations

from typing import Any

from pyspark import StorageLevel
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (HasBlockSize, HasCheckpointInterval, HasMaxIter,
                                     HasPredictionCol, HasRegParam, HasSeed)

from mfspark.config import ALSParams, ConfigError
from mfspark.errors import MfsparkValueError

#: The cold-start strategies, lower case; the parameter's value is matched case-insensitively.
COLD_START_STRATEGIES = ("nan", "drop", "fallback")

#: Every storage level name MLlib's ``StorageLevel.fromString`` accepts, plus pyspark's
#: ``MEMORY_AND_DISK_DESER``.  Python persists DataFrames serialized either way, so MLlib's
#: ``*_SER`` names are the same levels as their plain names.
STORAGE_LEVELS: dict[str, StorageLevel] = {
    **{name: level for name, level in vars(StorageLevel).items()
       if name.isupper() and isinstance(level, StorageLevel)},
    "MEMORY_ONLY_SER": StorageLevel.MEMORY_ONLY, "MEMORY_ONLY_SER_2": StorageLevel.MEMORY_ONLY_2,
    "MEMORY_AND_DISK_SER": StorageLevel.MEMORY_AND_DISK,
    "MEMORY_AND_DISK_SER_2": StorageLevel.MEMORY_AND_DISK_2}

#: The estimator's name of each training setting (:class:`mfspark.config.ALSParams`).
PARAM_NAMES = {"rank": "rank", "reg": "regParam", "reg_scale": "regScale",
               "iterations": "maxIter", "seed": "seed", "num_user_blocks": "numUserBlocks",
               "num_item_blocks": "numItemBlocks", "biases": "biases",
               "implicit_prefs": "implicitPrefs", "alpha": "alpha",
               "nonnegative": "nonnegative", "cg_steps": "cgSteps"}


class ParamError(MfsparkValueError):
    """A parameter value is out of range or not supported by this model, or an input
    DataFrame does not fit the parameters (a missing column, a column that would be
    overwritten)."""


def _param(name: str, doc: str, converter: Any) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=converter)


class ModelParams(HasPredictionCol, HasBlockSize):
    """Parameters shared by the estimator and the model (prediction and recommendation)."""

    # pyspark's shared doc describes stacking input rows; here it sizes the top-N blocks
    blockSize: Param[int] = _param("blockSize", "factor rows per block of the top-N "
                                   "recommendations (>= 1)", TypeConverters.toInt)

    userCol: Param[str] = _param("userCol", "column of user IDs (integers, longs or strings)",
                                 TypeConverters.toString)
    itemCol: Param[str] = _param("itemCol", "column of item IDs (integers, longs or strings)",
                                 TypeConverters.toString)
    coldStartStrategy: Param[str] = _param(
        "coldStartStrategy",
        "prediction for a user or item unseen in training: 'nan' (MLlib: NaN), 'drop' (MLlib: "
        "drop the row), 'fallback' (mu + the known side's bias; mu when both are unknown); "
        "case-insensitive",
        TypeConverters.toString)
    minRating: Param[float] = _param("minRating", "clip predictions below this value (unset: "
                                     "no clipping)", TypeConverters.toFloat)
    maxRating: Param[float] = _param("maxRating", "clip predictions above this value (unset: "
                                     "no clipping)", TypeConverters.toFloat)
    compatibleSchema: Param[bool] = _param(
        "compatibleSchema", "MLlib's output schema: factors 'id' int and 'features' "
        "array<float> (no 'bias' column), predictions float, IDs cast to int (fit refuses "
        "IDs that are not integers in the int range, as MLlib); false: array<double>, double "
        "and the IDs' own type", TypeConverters.toBoolean)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(blockSize=4096, userCol="user", itemCol="item",
                         coldStartStrategy="nan", compatibleSchema=False)

    def getUserCol(self) -> str:
        """The column of user IDs."""
        return self.getOrDefault(self.userCol)

    def getItemCol(self) -> str:
        """The column of item IDs."""
        return self.getOrDefault(self.itemCol)

    def getColdStartStrategy(self) -> str:
        """``nan``, ``drop`` or ``fallback``: the value set, in lower case (as MLlib's, so
        that ``"DROP"`` and ``"NaN"`` are accepted)."""
        return self.getOrDefault(self.coldStartStrategy).lower()

    def getCompatibleSchema(self) -> bool:
        """Whether the outputs have MLlib's schema (float factors and predictions, int IDs)."""
        return self.getOrDefault(self.compatibleSchema)

    def clipRange(self) -> tuple[float | None, float | None]:
        """``(minRating, maxRating)``, None where unset."""
        return (self.getOrDefault(self.minRating) if self.isDefined(self.minRating) else None,
                self.getOrDefault(self.maxRating) if self.isDefined(self.maxRating) else None)

    def checkModelParams(self) -> None:
        """Raise :class:`ParamError` naming the parameter and the bad value."""
        if self.getColdStartStrategy() not in COLD_START_STRATEGIES:
            raise ParamError(f"coldStartStrategy must be one of {COLD_START_STRATEGIES} "
                             f"(any case), got {self.getOrDefault(self.coldStartStrategy)!r}")
        if self.getBlockSize() < 1:
            raise ParamError(f"blockSize must be >= 1, got {self.getBlockSize()}")
        low, high = self.clipRange()
        if low is not None and high is not None and low > high:
            raise ParamError(f"minRating must be <= maxRating, got {low} > {high}")


class EstimatorParams(ModelParams, HasMaxIter, HasRegParam, HasCheckpointInterval, HasSeed):
    """Parameters of the estimator: MLlib's names plus ``regScale``, ``biases``,
    ``workDir``."""

    # MLlib's shared docs say ">= 0"; mfspark's rules are stricter (ALSParams)
    maxIter: Param[int] = _param("maxIter", "number of iterations (>= 1)", TypeConverters.toInt)
    regParam: Param[float] = _param("regParam", "regularization parameter (> 0)",
                                    TypeConverters.toFloat)
    checkpointInterval: Param[int] = _param(
        "checkpointInterval", "accepted for compatibility with MLlib, no effect: every "
        "half-step is written to the work directory, so no lineage grows",
        TypeConverters.toInt)
    rank: Param[int] = _param("rank", "rank of the factorization (0: biases only)",
                              TypeConverters.toInt)
    numUserBlocks: Param[int] = _param(
        "numUserBlocks", "number of user blocks (pandas UDF calls of the user half-step, "
        ">= 1)", TypeConverters.toInt)
    numItemBlocks: Param[int] = _param(
        "numItemBlocks", "number of item blocks (pandas UDF calls of the item half-step, "
        ">= 1)", TypeConverters.toInt)
    intermediateStorageLevel: Param[str] = _param(
        "intermediateStorageLevel", "StorageLevel name of the two block-partitioned copies of "
        "the ratings kept during fit; cannot be 'NONE'", TypeConverters.toString)
    finalStorageLevel: Param[str] = _param(
        "finalStorageLevel", "StorageLevel name of the local checkpoint that keeps the fitted "
        "factors when the model outlives its work directory ('NONE': DISK_ONLY)",
        TypeConverters.toString)
    ratingCol: Param[str] = _param("ratingCol", "column of ratings", TypeConverters.toString)
    implicitPrefs: Param[bool] = _param(
        "implicitPrefs", "implicit feedback (Hu, Koren, Volinsky 2008, as MLlib): preference "
        "rating > 0, confidence 1 + alpha |rating|, no biases unless biases=True",
        TypeConverters.toBoolean)
    alpha: Param[float] = _param("alpha", "implicit-feedback confidence slope (>= 0)",
                                 TypeConverters.toFloat)
    nonnegative: Param[bool] = _param("nonnegative", "constrain the factors to be >= 0 "
                                      "(biases stay free)", TypeConverters.toBoolean)
    cgSteps: Param[int] = _param(
        "cgSteps", "implicit feedback: 0 solves each row exactly (Cholesky); N >= 1 takes N "
        "conjugate-gradient steps from the row's previous factors instead (approximate, "
        "cheaper at high rank)", TypeConverters.toInt)
    regScale: Param[str] = _param(
        "regScale", "'count': regParam times each row's rating count (MLlib's meaning, "
        "ALS-WR); 'none': plain lambda on every parameter (docs/model.md)", TypeConverters.toString)
    biases: Param[bool] = _param("biases", "fit user and item biases (false: mu + u.v); "
                                 "unset: true for explicit, false for implicit feedback "
                                 "(MLlib's model: u.v only)", TypeConverters.toBoolean)
    workDir: Param[str] = _param(
        "workDir", "directory for the per-iteration factor Parquet (kept); unset: a temporary "
        "directory under the checkpoint dir or spark.local.dir, deleted after fitting",
        TypeConverters.toString)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(rank=10, maxIter=10, regParam=0.1, numUserBlocks=10,
                         numItemBlocks=10, ratingCol="rating", implicitPrefs=False, alpha=1.0,
                         nonnegative=False, checkpointInterval=10, seed=0, regScale="count",
                         cgSteps=0, intermediateStorageLevel="MEMORY_AND_DISK",
                         finalStorageLevel="MEMORY_AND_DISK")

    def explainParam(self, param: str | Param) -> str:
        """``pyspark``'s explanation, except for the block counts, whose default is what
        ``fit`` uses: twice Spark's default parallelism.  Their default value 10 is MLlib's,
        returned by ``getNumUserBlocks()`` for compatibility but not fitted with."""
        param = self._resolveParam(param)
        if param.name not in ("numUserBlocks", "numItemBlocks"):
            return super().explainParam(param)
        getter = f"get{param.name[0].upper()}{param.name[1:]}()"
        value = (f"current: {self.getOrDefault(param)}" if self.isSet(param) else
                 f"{getter} returns MLlib's {self.getOrDefault(param)}, not used by fit")
        return (f"{param.name}: {param.doc} (default: twice Spark's default parallelism; "
                f"{value})")

    def getRank(self) -> int:
        """The rank K."""
        return self.getOrDefault(self.rank)

    def getNumUserBlocks(self) -> int:
        """Blocks of users (the value set, else MLlib's default 10, which fit ignores)."""
        return self.getOrDefault(self.numUserBlocks)

    def getNumItemBlocks(self) -> int:
        """Blocks of items (the value set, else MLlib's default 10, which fit ignores)."""
        return self.getOrDefault(self.numItemBlocks)

    def getIntermediateStorageLevel(self) -> str:
        """The storage level name of the block-partitioned ratings during fit."""
        return self.getOrDefault(self.intermediateStorageLevel)

    def getFinalStorageLevel(self) -> str:
        """The storage level name of the checkpointed fitted factors."""
        return self.getOrDefault(self.finalStorageLevel)

    def storage_levels(self) -> tuple[StorageLevel, StorageLevel]:
        """``(intermediate, final)`` as :class:`StorageLevel` values; :class:`ParamError`
        for a name that is not a storage level, or an intermediate level of ``NONE`` (MLlib's
        rules).  A final level of ``NONE`` is ``DISK_ONLY``: mfspark's factors cannot be
        recomputed from lineage once the work directory is gone, so they are always kept."""
        levels = []
        for param in (self.intermediateStorageLevel, self.finalStorageLevel):
            name = self.getOrDefault(param)
            if name not in STORAGE_LEVELS:
                raise ParamError(f"{param.name} must be a StorageLevel name, one of "
                                 f"{sorted(STORAGE_LEVELS)}, got {name!r}")
            levels.append(STORAGE_LEVELS[name])
        if levels[0] == StorageLevel.NONE:
            raise ParamError("intermediateStorageLevel cannot be 'NONE': the ratings' blocks "
                             "are read at every half-step; use e.g. 'MEMORY_AND_DISK' or "
                             "'DISK_ONLY'")
        if levels[1] == StorageLevel.NONE:
            levels[1] = StorageLevel.DISK_ONLY
        return levels[0], levels[1]

    def getImplicitPrefs(self) -> bool:
        """Whether the ratings are implicit feedback."""
        return self.getOrDefault(self.implicitPrefs)

    def getAlpha(self) -> float:
        """The implicit-feedback confidence scale."""
        return self.getOrDefault(self.alpha)

    def getNonnegative(self) -> bool:
        """Whether the factors are constrained to be >= 0."""
        return self.getOrDefault(self.nonnegative)

    def getCgSteps(self) -> int:
        """Conjugate-gradient steps per row and half-step (0: exact solves)."""
        return self.getOrDefault(self.cgSteps)

    def getRatingCol(self) -> str:
        """The column of ratings."""
        return self.getOrDefault(self.ratingCol)

    def getBiases(self) -> bool | None:
        """Whether biases are fitted; None when unset (then: not for implicit feedback)."""
        return self.getOrDefault(self.biases) if self.isDefined(self.biases) else None

    def getRegScale(self) -> str:
        """``count`` or ``none``."""
        return self.getOrDefault(self.regScale)

    def training_params(self) -> ALSParams:
        """The training library's parameters equivalent to this estimator's, checked by
        their one set of rules (:class:`mfspark.config.ALSParams`); a failure is a
        :class:`ParamError` in this API's names.  The storage levels are checked here too,
        so that every parameter fails before any work."""
        self.checkModelParams()
        self.storage_levels()
        values = {
            "rank": self.getRank(), "reg": self.getRegParam(), "reg_scale": self.getRegScale(),
            "iterations": self.getMaxIter(), "seed": self.getSeed() % (1 << 63),
            # unset: one block per task slot, twice over (MLlib's default of 10 would queue
            # five waves of grouped-UDF tasks on a 2-core machine, each with its fixed cost)
            "num_user_blocks": (self.getOrDefault(self.numUserBlocks)
                                if self.isSet(self.numUserBlocks) else None),
            "num_item_blocks": (self.getOrDefault(self.numItemBlocks)
                                if self.isSet(self.numItemBlocks) else None),
            "biases": self.getBiases(), "implicit_prefs": self.getImplicitPrefs(),
            "alpha": self.getAlpha(), "nonnegative": self.getNonnegative(),
            "cg_steps": self.getCgSteps()}
        try:
            return ALSParams(**values)
        except ConfigError as err:
            key = (err.setting or "").rsplit(".", 1)[-1]
            name = PARAM_NAMES.get(key, key)
            raise ParamError(f"{name} must be {err.requirement}, got {err.value!r}") from None

    def checkParams(self) -> None:
        """Validate before fitting; :class:`ParamError` names the parameter and the value."""
        self.training_params()
