"""Command-line pieces shared by the jobs that read a ratings file besides the model
(``jobs/recommend.py``, ``jobs/evaluate.py``)."""

from __future__ import annotations

import argparse

from pyspark.sql import DataFrame, SparkSession

from mfspark.config import FORMATS, InputSpec
from mfspark.io.ratings import read_ratings
from mfspark.validate import typed_ratings


def add_ratings_flags(p: argparse.ArgumentParser, flag: str, what: str,
                      required: bool = False) -> None:
    """``--{flag} PATH`` plus ``--{flag}-format`` and ``--{flag}-delimiter``."""
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
