"""Typed, validated settings: the ALS parameters, the input description and the job.

Settings live in TOML files (``conf/*.toml``, read with :mod:`tomllib`) with three tables,
``[input]``, ``[als]`` and ``[output]``, whose keys are the field names below; command-line
flags override single fields.  Every dataclass is frozen and validated on construction, and
a bad value raises :class:`ConfigError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfspark.solve import REG_SCALES

FORMATS = ("auto", "parquet", "csv", "ml-100k", "ml-dat", "ml-csv")
BAD_ROW_POLICIES = ("fail", "quarantine")
DUPLICATE_POLICIES = ("fail", "last", "mean")
#: The common star scale (half stars from 0.5 to 5).
DEFAULT_RATING_RANGE = (0.5, 5.0)


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range."""


def _require(ok: bool, name: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class ALSParams:
    """What the model is and how it is fitted."""

    rank: int = 10
    """Number of latent factors K (0 fits the biases-only baseline)."""
    reg: float = 0.1
    """Regularization lambda (> 0)."""
    reg_scale: str = "count"
    """``none``: lambda on every parameter (MODEL.md as written); ``count``: lambda times the
    row's rating count (ALS-WR, Spark MLlib's regParam)."""
    iterations: int = 10
    """Number of full iterations (a user half-step then an item half-step; implicit feedback:
    items first, as MLlib)."""
    seed: int = 0
    """Seed of the initial item factors (implicit feedback: of the initial user factors)."""
    num_user_blocks: int | None = None
    """Blocks of users (one grouped-UDF group each); None: twice the default parallelism."""
    num_item_blocks: int | None = None
    """Blocks of items; None: as for users."""
    block_memory_mb: int = 128
    """Memory budget (MiB) for building one block's normal equations (the gathered, padded
    factor rows); bounds a block's memory whatever the skew of its rows' rating counts."""
    biases: bool | None = None
    """Fit the user and item biases b, c (False: ``mu + u . v`` only; needs rank >= 1);
    None (unset): True for explicit feedback, False for implicit feedback."""
    implicit_prefs: bool = False
    """Implicit feedback (Hu, Koren, Volinsky 2008; MLlib's ``implicitPrefs``): preference
    ``r > 0``, confidence ``1 + alpha |r|``, every unobserved pair a confident-1 zero; no
    global mean, and biases only with ``biases = true``.  See :mod:`mfspark.implicit`."""
    alpha: float = 1.0
    """Confidence slope of implicit feedback (MLlib's ``alpha``, >= 0; unused otherwise)."""
    nonnegative: bool = False
    """Constrain the factors to be >= 0 (NNLS per row; the biases stay free)."""
    cg_steps: int = 0
    """Implicit feedback only: 0 solves each row's system exactly (Cholesky); N >= 1 takes N
    conjugate-gradient steps from the row's previous factors instead (as the ``implicit``
    library does): approximate, cheaper at high rank, J still never increases."""

    @property
    def fit_biases(self) -> bool:
        """Whether the biases are fitted: ``biases``, or by default not for implicit."""
        return (not self.implicit_prefs) if self.biases is None else self.biases

    def __post_init__(self) -> None:
        _require(isinstance(self.rank, int) and self.rank >= 0, "als.rank", self.rank,
                 "an integer >= 0")
        _require(isinstance(self.reg, (int, float)) and math.isfinite(self.reg) and self.reg > 0,
                 "als.reg", self.reg, "a finite number > 0")
        _require(self.reg_scale in REG_SCALES, "als.reg_scale", self.reg_scale,
                 f"one of {REG_SCALES}")
        _require(isinstance(self.iterations, int) and self.iterations >= 1, "als.iterations",
                 self.iterations, "an integer >= 1")
        _require(isinstance(self.seed, int), "als.seed", self.seed, "an integer")
        _require(isinstance(self.block_memory_mb, int) and self.block_memory_mb >= 1,
                 "als.block_memory_mb", self.block_memory_mb, "an integer >= 1")
        _require(self.biases is None or isinstance(self.biases, bool), "als.biases",
                 self.biases, "true or false")
        _require(isinstance(self.implicit_prefs, bool), "als.implicit_prefs",
                 self.implicit_prefs, "true or false")
        _require(isinstance(self.nonnegative, bool), "als.nonnegative", self.nonnegative,
                 "true or false")
        _require(isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)
                 and math.isfinite(self.alpha) and self.alpha >= 0, "als.alpha", self.alpha,
                 "a finite number >= 0")
        _require(self.fit_biases or self.rank >= 1, "als.rank", self.rank,
                 ">= 1 when no biases are fitted (als.biases false, or unset with "
                 "als.implicit_prefs true): nothing would be fitted")
        _require(isinstance(self.cg_steps, int) and not isinstance(self.cg_steps, bool)
                 and self.cg_steps >= 0, "als.cg_steps", self.cg_steps, "an integer >= 0")
        _require(self.cg_steps == 0 or (self.implicit_prefs and not self.nonnegative),
                 "als.cg_steps", self.cg_steps, "0 unless als.implicit_prefs is true and "
                 "als.nonnegative false (conjugate gradient serves the unconstrained implicit "
                 "systems only)")
        for name in ("num_user_blocks", "num_item_blocks"):
            value = getattr(self, name)
            _require(value is None or (isinstance(value, int) and value >= 1), f"als.{name}",
                     value, "an integer >= 1 or unset")


@dataclass(frozen=True)
class InputSpec:
    """Where the ratings are and how to read them."""

    path: str | None = None
    """File or directory of ratings; None: the sample shipped inside pyspark."""
    format: str = "auto"
    """One of FORMATS; ``auto`` detects it from the name and the first line."""
    delimiter: str | None = None
    """CSV field delimiter; None: detected."""
    header: bool | None = None
    """Whether the CSV's first line names the columns; None: detected."""
    user_col: str = "user"
    """Column of user IDs (integers, longs or strings)."""
    item_col: str = "item"
    """Column of item IDs."""
    rating_col: str = "rating"
    """Column of ratings (numbers)."""
    timestamp_col: str = "timestamp"
    """Optional column of timestamps (kept when present)."""
    on_bad_rows: str = "fail"
    """``fail``: stop with the counts and a few bad rows; ``quarantine``: write them with a
    ``reason`` column to ``OUT/rejected/`` and train on the rest."""
    duplicates: str = "fail"
    """Several ratings of one (user, item) pair: ``fail``, ``last`` (latest timestamp wins)
    or ``mean`` (their average)."""
    rating_range: tuple[float, float] | None = DEFAULT_RATING_RANGE
    """Inclusive (min, max) of valid ratings; None (``false`` in TOML): no range check."""

    def __post_init__(self) -> None:
        if self.rating_range is False:  # TOML has no null: false switches the check off
            object.__setattr__(self, "rating_range", None)
        if isinstance(self.rating_range, list):
            object.__setattr__(self, "rating_range", tuple(self.rating_range))
        _require(self.on_bad_rows in BAD_ROW_POLICIES, "input.on_bad_rows", self.on_bad_rows,
                 f"one of {BAD_ROW_POLICIES}")
        _require(self.duplicates in DUPLICATE_POLICIES, "input.duplicates", self.duplicates,
                 f"one of {DUPLICATE_POLICIES}")
        r = self.rating_range
        _require(r is None or (isinstance(r, tuple) and len(r) == 2
                               and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                       and math.isfinite(x) for x in r) and r[0] <= r[1]),
                 "input.rating_range", r, "[min, max] with finite min <= max, or false")
        _require(self.format in FORMATS, "input.format", self.format, f"one of {FORMATS}")
        names = [self.user_col, self.item_col, self.rating_col, self.timestamp_col]
        _require(all(isinstance(n, str) and n for n in names), "input column names", names,
                 "non-empty strings")
        _require(len(set(names)) == 4, "input column names", names, "four distinct names")


@dataclass(frozen=True)
class JobConfig:
    """Everything ``jobs/train.py`` needs."""

    input: InputSpec = field(default_factory=InputSpec)
    als: ALSParams = field(default_factory=ALSParams)
    out: str = "output"
    """Output directory: ``iterations/`` (per half-step factors) and ``model/``."""
    test_fraction: float = 0.1
    """Fraction of ratings held out for the test RMSE (0 for none)."""
    split_seed: int = 0
    """Seed of the train/test split."""

    def __post_init__(self) -> None:
        _require(isinstance(self.test_fraction, (int, float)) and 0 <= self.test_fraction < 1,
                 "output.test_fraction", self.test_fraction, "a number in [0, 1)")
        _require(isinstance(self.out, str) and bool(self.out), "output.out", self.out,
                 "a non-empty path")


_TABLES = {"input": InputSpec, "als": ALSParams, "output": JobConfig}


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"input", "als"}


def from_dict(data: dict[str, Any], source: str = "config") -> JobConfig:
    """Build a JobConfig from ``{"input": {...}, "als": {...}, "output": {...}}``."""
    unknown = set(data) - set(_TABLES)
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; "
                          f"expected some of {sorted(_TABLES)}")
    for table, cls in _TABLES.items():
        extra = set(data.get(table, {})) - _fields(cls)
        if extra:
            raise ConfigError(f"{source}: unknown key(s) {sorted(extra)} in [{table}]; "
                              f"known keys: {sorted(_fields(cls))}")
    return JobConfig(input=InputSpec(**data.get("input", {})),
                     als=ALSParams(**data.get("als", {})), **data.get("output", {}))


def load(path: str | Path) -> JobConfig:
    """Read a TOML settings file (missing keys take the defaults above)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    return from_dict(data, source=str(path))


def override(config: JobConfig, **values: Any) -> JobConfig:
    """Return ``config`` with every non-None value replaced, wherever its field lives."""
    values = {k: v for k, v in values.items() if v is not None}
    parts: dict[str, dict[str, Any]] = {"input": {}, "als": {}, "output": {}}
    for key, value in values.items():
        table = next((t for t, cls in _TABLES.items() if key in _fields(cls)), None)
        if table is None:
            raise ConfigError(f"unknown setting {key!r}")
        parts[table][key] = value
    return dataclasses.replace(
        config, input=dataclasses.replace(config.input, **parts["input"]),
        als=dataclasses.replace(config.als, **parts["als"]), **parts["output"])


def to_dict(config: JobConfig) -> dict[str, dict[str, Any]]:
    """The TOML-shaped view of a config (None values left out, as TOML has no null)."""
    out = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("input", "als")}
    spec = dataclasses.asdict(config.input)
    spec["rating_range"] = list(spec["rating_range"]) if spec["rating_range"] else False
    return {"input": {k: v for k, v in spec.items() if v is not None},
            "als": {k: v for k, v in dataclasses.asdict(config.als).items() if v is not None},
            "output": out}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write the non-finite number {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def dumps(config: JobConfig, comment: str = "") -> str:
    """The TOML text of ``config`` (what :func:`load` reads back into an equal config);
    ``comment`` lines go on top, prefixed with ``#``."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    for table, values in to_dict(config).items():
        lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
