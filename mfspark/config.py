"""Typed, validated settings: the ALS parameters, the input description and the job.

Settings live in TOML files (``conf/*.toml``, read with :mod:`tomllib`) with three tables,
``[input]``, ``[als]`` and ``[output]``, whose keys are the field names below.  Each field is
declared once, with :func:`setting`: its default, its one-line help, its rule and, where it
differs from the field name, its command-line flag.  The jobs' flags are generated from
these declarations (:mod:`mfspark.app.cli`), and the estimator's parameters are checked by
the same rules (:meth:`mfspark.ml.params.EstimatorParams.checkParams`), so there is one
validator per setting.  Every dataclass is frozen and validated on construction; a bad value
raises :class:`ConfigError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from mfspark.core.objective import REG_SCALES, Objective
from mfspark.errors import MfsparkValueError

FORMATS = ("auto", "parquet", "csv", "ml-100k", "ml-dat", "ml-csv")
BAD_ROW_POLICIES = ("fail", "quarantine")
DUPLICATE_POLICIES = ("fail", "last", "mean")
#: The common star scale (half stars from 0.5 to 5).
DEFAULT_RATING_RANGE = (0.5, 5.0)


@dataclass(frozen=True)
class Rule:
    """What a setting's value must be: a predicate and its wording."""

    accepts: Callable[[Any], bool]
    requirement: str
    options: tuple[str, ...] | None = None
    """The allowed values, when the rule is a choice among a few."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(low: int | None = None) -> Rule:
    """An integer (not a bool), at least ``low``."""
    return Rule(lambda v: isinstance(v, int) and not isinstance(v, bool)
                and (low is None or v >= low),
                "an integer" if low is None else f"an integer >= {low}")


def number(low: float, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Rule:
    """A finite number in ``[low, high]`` (either end open)."""
    def accepts(v: Any) -> bool:
        return (_is_number(v) and (v > low if low_open else v >= low)
                and (high is None or (v < high if high_open else v <= high)))
    if high is None:
        return Rule(accepts, f"a finite number {'>' if low_open else '>='} {low:g}")
    return Rule(accepts, f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
                         f"{')' if high_open else ']'}")


def boolean() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false")


def choice(options: tuple[str, ...]) -> Rule:
    return Rule(lambda v: v in options, f"one of {options}", options)


def text() -> Rule:
    return Rule(lambda v: isinstance(v, str) and bool(v), "a non-empty string")


def optional(rule: Rule, requirement: str | None = None) -> Rule:
    """``rule``, or unset (None)."""
    return Rule(lambda v: v is None or rule.accepts(v), requirement or rule.requirement)


def value_range() -> Rule:
    """An inclusive ``(min, max)`` pair of finite numbers, or None."""
    return Rule(lambda r: r is None or (isinstance(r, tuple) and len(r) == 2
                                        and all(_is_number(x) for x in r) and r[0] <= r[1]),
                "[min, max] with finite min <= max, or false")


class ConfigError(MfsparkValueError):
    """A setting is missing, unknown or out of range.

    ``setting`` (``table.key``), ``value`` and ``requirement`` say which rule failed, so
    that an API with other parameter names can word the same failure in its own names."""

    def __init__(self, message: str, setting: str | None = None, value: Any = None,
                 requirement: str | None = None) -> None:
        super().__init__(message)
        self.setting, self.value, self.requirement = setting, value, requirement


def setting(default: Any, help: str, rule: Rule | None = None, *, flag: str | None = None,
            metavar: str | None = None) -> Any:
    """A settings field: ``default``, a one-line ``help`` (shown by ``--help``), the
    ``rule`` its value must satisfy and its command-line ``flag`` (default: the field name
    with dashes)."""
    meta = {"help": help, "rule": rule, "flag": flag, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default needs default_factory")
    return field(default=default, metadata=meta)


def _fail(table: str, key: str, value: Any, requirement: str) -> ConfigError:
    return ConfigError(f"{table}.{key} must be {requirement}, got {value!r}", f"{table}.{key}",
                       value, requirement)


def _check_fields(obj: Any, table: str) -> None:
    """Apply every field's rule; the first failure raises :class:`ConfigError`."""
    for f in dataclasses.fields(obj):
        rule = f.metadata.get("rule")
        value = getattr(obj, f.name)
        if rule is not None and not rule.accepts(value):
            raise _fail(table, f.name, value, rule.requirement)


@dataclass(frozen=True)
class ALSParams:
    """What the model is and how it is fitted."""

    rank: int = setting(10, "number of latent factors K (0: the biases-only baseline)",
                        integer(0), metavar="K")
    reg: float = setting(0.1, "regularization lambda", number(0, low_open=True),
                         metavar="LAMBDA")
    reg_scale: str = setting(
        "count", "count: lambda times the row's rating count (ALS-WR, Spark MLlib's "
        "regParam); none: plain lambda on every parameter (docs/model.md)",
        choice(REG_SCALES))
    iterations: int = setting(10, "number of ALS iterations (a user half-step, then an item "
                              "half-step; implicit feedback: items first, as MLlib)",
                              integer(1), metavar="N")
    seed: int = setting(0, "seed of the initial item factors (implicit feedback: of the user "
                        "factors)", integer())
    num_user_blocks: int | None = setting(
        None, "blocks of users (one pandas UDF call each per half-step); unset: twice the "
        "default parallelism, or more, so that a block's own rows and (against routed "
        "items) the item rows it receives fit --block-memory-mb",
        optional(integer(1), "an integer >= 1 or unset"),
        flag="--user-blocks", metavar="N")
    num_item_blocks: int | None = setting(None, "blocks of items; unset: as for users",
                                          optional(integer(1), "an integer >= 1 or unset"),
                                          flag="--item-blocks", metavar="N")
    block_memory_mb: int = setting(
        128, "memory budget (MiB) of one block in its Python worker: for building its "
        "normal equations (whatever the skew of its rows), and for the routed fixed rows it "
        "holds (sizes the block counts)", integer(1), metavar="MB")
    broadcast_mb: int = setting(
        128, "largest fixed side (MiB of factors) a half-step sends whole to every block; "
        "a larger side is routed: each block receives only the rows it references (0: "
        "always routed)", integer(0), metavar="MB")
    factor_dtype: str = setting(
        "float64", "how factors are stored and shipped between half-steps: float64, or "
        "float32 (half the bytes, as MLlib; solves and sums stay float64)",
        choice(("float64", "float32")))
    biases: bool | None = setting(
        None, "fit user and item biases (false: mu + u . v only); unset: true for explicit "
        "ratings, false for implicit feedback", optional(boolean()))
    implicit_prefs: bool = setting(
        False, "implicit feedback (MLlib's implicitPrefs): preference r > 0, confidence "
        "1 + alpha |r|, every unobserved pair a confident 0; no global mean", boolean())
    alpha: float = setting(1.0, "implicit-feedback confidence slope, >= 0", number(0),
                           metavar="A")
    nonnegative: bool = setting(False, "constrain the factors to be >= 0 (NNLS per row); the "
                                "biases stay free", boolean())
    cg_steps: int = setting(
        0, "implicit feedback only: N conjugate-gradient steps per row from its previous "
        "factors instead of the exact solve (0: exact)", integer(0), metavar="N")

    @property
    def fit_biases(self) -> bool:
        """Whether the biases are fitted: ``biases``, or by default not for implicit."""
        return (not self.implicit_prefs) if self.biases is None else self.biases

    @property
    def factor_bytes(self) -> int:
        """Bytes per stored factor value."""
        return 4 if self.factor_dtype == "float32" else 8

    @property
    def has_mean(self) -> bool:
        """Whether the model has a global mean ``mu``: not for implicit feedback, nor for
        nonnegative factors without biases (``u . v >= 0`` added to a fixed mean could
        never predict below it; that model is MLlib's nonnegative ``u . v``)."""
        return not (self.implicit_prefs or (self.nonnegative and not self.fit_biases))

    @property
    def order(self) -> tuple[str, str]:
        """The side every iteration solves first and the side it solves second; the second
        starts from seeded factors (``iter-0000/<second>``).  Explicit ratings: users first
        from seeded items (docs/model.md's order).  Implicit feedback: items first from seeded
        users, MLlib's order, so the last half-step fits the users, the side
        recommendations are queried by, to the final items."""
        return ("item", "user") if self.implicit_prefs else ("user", "item")

    def objective(self) -> Objective:
        """What every row of a half-step minimizes (:mod:`mfspark.core.objective`)."""
        return Objective(reg=float(self.reg), reg_scale=self.reg_scale,
                         biases=self.fit_biases,
                         alpha=float(self.alpha) if self.implicit_prefs else None,
                         nonnegative=self.nonnegative, cg_steps=self.cg_steps)

    def __post_init__(self) -> None:
        _check_fields(self, "als")
        if not (self.fit_biases or self.rank >= 1):
            raise _fail("als", "rank", self.rank,
                        ">= 1 when no biases are fitted (biases false, or unset with "
                        "implicit feedback): nothing would be fitted")
        if self.cg_steps and not (self.implicit_prefs and not self.nonnegative):
            raise _fail("als", "cg_steps", self.cg_steps,
                        "0 unless implicit feedback is on and nonnegative factors are off "
                        "(conjugate gradient serves the unconstrained implicit systems only)")


@dataclass(frozen=True)
class InputSpec:
    """Where the ratings are and how to read them."""

    path: str | None = setting(None, "ratings file or directory (default: the sample shipped "
                               "inside pyspark)", flag="--ratings", metavar="PATH")
    format: str = setting("auto", "input format; auto detects it from the name and the first "
                          "line", choice(FORMATS))
    delimiter: str | None = setting(None, "CSV field delimiter (default: detected)")
    header: bool | None = setting(None, "whether the CSV's first line names the columns "
                                  "(default: detected)", optional(boolean()))
    user_col: str = setting("user", "column of user IDs (integers, longs or strings)", text())
    item_col: str = setting("item", "column of item IDs", text())
    rating_col: str = setting("rating", "column of ratings (numbers)", text())
    timestamp_col: str = setting("timestamp", "optional column of timestamps (kept when "
                                 "present)", text())
    on_bad_rows: str = setting("fail", "fail: stop with the counts and a few bad rows; "
                               "quarantine: write them with a reason to OUT/rejected/ and "
                               "train on the rest", choice(BAD_ROW_POLICIES))
    duplicates: str = setting("fail", "several ratings of one (user, item) pair: fail, last "
                              "(latest timestamp wins) or mean", choice(DUPLICATE_POLICIES))
    rating_range: tuple[float, float] | None = setting(
        DEFAULT_RATING_RANGE, "inclusive [min, max] of valid ratings (false in TOML, "
        "--no-rating-range: no range check)", value_range(), metavar=("MIN", "MAX"))

    def __post_init__(self) -> None:
        if self.rating_range is False:  # TOML has no null: false switches the check off
            object.__setattr__(self, "rating_range", None)
        if isinstance(self.rating_range, list):
            object.__setattr__(self, "rating_range", tuple(self.rating_range))
        _check_fields(self, "input")
        names = [self.user_col, self.item_col, self.rating_col, self.timestamp_col]
        if len(set(names)) != 4:
            raise ConfigError(f"input column names must be four distinct names, got {names!r}",
                              "input.user_col", names, "four distinct names")


@dataclass(frozen=True)
class JobConfig:
    """Everything ``jobs/train.py`` needs."""

    input: InputSpec = field(default_factory=InputSpec)
    als: ALSParams = field(default_factory=ALSParams)
    out: str = setting("output", "output directory: iterations/ (per half-step factors) and "
                       "model/", text(), metavar="DIR")
    test_fraction: float = setting(0.1, "fraction of ratings held out for the test RMSE (0: "
                                   "none)", number(0, 1, high_open=True), metavar="F")
    split_seed: int = setting(0, "seed of the train/test split", integer())
    init_model: str | None = setting(
        None, "warm start: a saved model whose factors and biases the run starts from, "
        "matched by ID (same rank and variant; new IDs start as in a cold fit)",
        optional(text(), "a non-empty path or unset"), metavar="DIR")

    def __post_init__(self) -> None:
        _check_fields(self, "output")


TABLES = {"input": InputSpec, "als": ALSParams, "output": JobConfig}


def fields(cls: type) -> list[dataclasses.Field]:
    """The settings of one table (the nested tables of :class:`JobConfig` left out)."""
    return [f for f in dataclasses.fields(cls) if f.name not in ("input", "als")]


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def from_dict(data: dict[str, Any], source: str = "config") -> JobConfig:
    """Build a JobConfig from ``{"input": {...}, "als": {...}, "output": {...}}``."""
    unknown = set(data) - set(TABLES)
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; "
                          f"expected some of {sorted(TABLES)}")
    for table, cls in TABLES.items():
        extra = set(data.get(table, {})) - _names(cls)
        if extra:
            raise ConfigError(f"{source}: unknown key(s) {sorted(extra)} in [{table}]; "
                              f"known keys: {sorted(_names(cls))}")
    return JobConfig(input=InputSpec(**data.get("input", {})),
                     als=ALSParams(**data.get("als", {})), **data.get("output", {}))


def table_of(key: str) -> str:
    """The table a setting lives in."""
    found = next((t for t, cls in TABLES.items() if key in _names(cls)), None)
    if found is None:
        raise ConfigError(f"unknown setting {key!r}")
    return found


def override(config: JobConfig, **values: Any) -> JobConfig:
    """Return ``config`` with every non-None value replaced, wherever its field lives."""
    parts: dict[str, dict[str, Any]] = {"input": {}, "als": {}, "output": {}}
    for key, value in values.items():
        if value is not None:
            parts[table_of(key)][key] = value
    return dataclasses.replace(
        config, input=dataclasses.replace(config.input, **parts["input"]),
        als=dataclasses.replace(config.als, **parts["als"]), **parts["output"])


def to_dict(config: JobConfig) -> dict[str, dict[str, Any]]:
    """The TOML-shaped view of a config (None values left out, as TOML has no null)."""
    out = {f.name: getattr(config, f.name) for f in fields(JobConfig)
           if getattr(config, f.name) is not None}
    spec = dataclasses.asdict(config.input)
    spec["rating_range"] = list(spec["rating_range"]) if spec["rating_range"] else False
    return {"input": {k: v for k, v in spec.items() if v is not None},
            "als": {k: v for k, v in dataclasses.asdict(config.als).items() if v is not None},
            "output": out}


def settings_record(config: JobConfig) -> dict[str, Any]:
    """Every setting as JSON-ready values (the run record and the model metadata)."""
    spec = dataclasses.asdict(config.input)
    spec["rating_range"] = list(spec["rating_range"]) if spec["rating_range"] else None
    return {"input": spec, "als": dataclasses.asdict(config.als),
            **{f.name: getattr(config, f.name) for f in fields(JobConfig)}}

