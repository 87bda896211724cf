"""Command-line flags generated from the settings, and the pieces the jobs share.

Every field of :mod:`mfspark.config` carries its help and, where it differs from the field
name, its flag; :func:`add_settings_flags` turns them into ``argparse`` arguments (booleans
as ``--x / --no-x``, choices from the field's rule, pairs as two values), so a setting is
declared once for the TOML files, the flags and the validation.  :func:`settings` applies
the parsed flags over a ``--config`` file.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession

from mfspark.config import FORMATS, TABLES, InputSpec, JobConfig, fields, override
from mfspark.data.validate import typed_ratings
from mfspark.io.ratings import read_ratings
from mfspark.io.settings import load

_TYPES = {"int": int, "float": float, "str": str}


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_settings_flags(p: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """One flag per setting of ``[input]``, ``[als]`` and ``[output]`` (or of the names in
    ``only``), each defaulting to None: unset flags leave the config file's value."""
    wanted = None if only is None else set(only)
    for cls in TABLES.values():
        for f in fields(cls):
            if wanted is not None and f.name not in wanted:
                continue
            kind = str(f.type).split(" |")[0].strip()
            rule = f.metadata.get("rule")
            options = {"dest": f.name, "default": None, "help": f.metadata.get("help")}
            if kind == "bool":
                p.add_argument(_flag(f), action=argparse.BooleanOptionalAction, **options)
            elif kind.startswith("tuple"):
                group = p.add_mutually_exclusive_group()
                group.add_argument(_flag(f), type=float, nargs=2,
                                   metavar=f.metadata.get("metavar"), **options)
                group.add_argument("--no-" + _flag(f)[2:], dest=f.name, action="store_false",
                                   help=f"no {f.name.replace('_', ' ')} check")
            else:
                choices = getattr(rule, "options", None)
                p.add_argument(_flag(f), type=_TYPES[kind], choices=choices,
                               metavar=None if choices else f.metadata.get("metavar"),
                               **options)


def settings(args: argparse.Namespace, base: JobConfig | None = None) -> JobConfig:
    """``--config`` (or ``base``, or the built-in defaults) with every given flag applied."""
    config = load(args.config) if getattr(args, "config", None) else (base or JobConfig())
    names = {f.name for cls in TABLES.values() for f in fields(cls)}
    return override(config, **{k: v for k, v in vars(args).items() if k in names})


def add_ratings_flags(p: argparse.ArgumentParser, flag: str, what: str,
                      required: bool = False) -> None:
    """``--{flag} PATH`` plus ``--{flag}-format`` and ``--{flag}-delimiter``, for the jobs
    that read a ratings file beside a model."""
    p.add_argument(f"--{flag}", required=required, metavar="PATH", help=what)
    p.add_argument(f"--{flag}-format", choices=FORMATS, default="auto",
                   help=f"format of --{flag} (default: auto)")
    p.add_argument(f"--{flag}-delimiter", help=f"CSV delimiter of --{flag} (default: detected)")


def read_flagged_ratings(spark: SparkSession, args: argparse.Namespace,
                         flag: str) -> DataFrame | None:
    """The validated ratings (``user``, ``item``, ``rating``) named by ``--{flag}``, if any."""
    key = flag.replace("-", "_")
    path = getattr(args, key)
    if path is None:
        return None
    spec = InputSpec(path=path, format=getattr(args, f"{key}_format"),
                     delimiter=getattr(args, f"{key}_delimiter"))
    return typed_ratings(read_ratings(spark, spec), path)[0]
