"""Settings files: TOML read with :mod:`tomllib` into a :class:`~mfspark.config.JobConfig`,
and a config written back as TOML (``jobs/tune.py``'s ``best.toml``)."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from mfspark.config import ConfigError, JobConfig, from_dict, to_dict


def load(path: str | Path) -> JobConfig:
    """Read a TOML settings file (missing keys take the built-in defaults of
    :mod:`mfspark.config`)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    return from_dict(data, source=str(path))


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
