"""Command-line flags generated from the settings, and the pieces the jobs share.

Every field of :mod:`mfspark.config` carries its help and, where it differs from the field
name, its flag; :func:`add_settings_flags` turns them into ``argparse`` arguments (booleans
as ``--x / --no-x``, choices from the field's rule, pairs as two values), so a setting is
declared once for the TOML files, the flags and the validation.  :func:`settings` applies
the parsed flags over a ``--config`` file.

:func:`job` wraps every job's ``main``: an expected failure (bad settings or input, a
missing file, an existing model, a run that cannot be resumed, memory exhausted) is one
line on stderr and a non-zero exit, not a traceback; ``--debug`` or ``MFSPARK_DEBUG=1``
shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession

from mfspark.config import FORMATS, TABLES, InputSpec, JobConfig, fields, override
from mfspark.data.validate import typed_ratings
from mfspark.engine.resume import ResumeError
from mfspark.errors import MfsparkValueError
from mfspark.io.model import ModelExistsError
from mfspark.io.ratings import read_ratings
from mfspark.io.settings import load

#: Set to 1 to show the traceback of every failure of a job, as ``--debug`` does.
DEBUG_ENV = "MFSPARK_DEBUG"
#: Exit status of a job stopped by bad settings or input (argparse's, for its own errors).
EXIT_BAD_INPUT = 2
#: Exit status of a job that ran out of memory.
EXIT_OUT_OF_MEMORY = 1

_PACKAGE = Path(__file__).resolve().parent.parent
_JVM_OOM = "java.lang.OutOfMemoryError"
#: What Spark reports when the operating system (or a container's limit) kills a worker.
_WORKER_KILLED = "Python worker exited unexpectedly"

Result = TypeVar("Result")

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


def add_debug_flag(p: argparse.ArgumentParser) -> None:
    """``--debug``: show the Python traceback of a failure (read by :func:`job`)."""
    p.add_argument("--debug", action="store_true",
                   help=f"show the Python traceback of an error (also: {DEBUG_ENV}=1)")


def _raised_by_mfspark(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is mfspark's code, i.e. the error
    is one of its worded checks rather than a failure inside a library it calls."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


def _error_text(err: BaseException) -> str:
    """``err``'s message, its JVM stack trace if captured, and those of its causes."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:  # a Py4JJavaError asks the JVM for its text, which may be gone
            parts.append(str(current))
        except Exception:  # noqa: BLE001 - any failure only loses this part of the text
            parts.append(type(current).__name__)
        parts.append(str(getattr(current, "_stackTrace", "") or ""))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def out_of_memory_message(err: BaseException) -> str | None:
    """One line naming the settings to change if ``err`` reports memory exhausted (a JVM
    ``OutOfMemoryError`` in a Spark error's text, or a Python ``MemoryError``), else None."""
    text = _error_text(err)
    if _JVM_OOM in text:
        line = next(x for x in text.splitlines() if _JVM_OOM in x)
        found = line[line.index(_JVM_OOM):].strip()[:120]
    elif isinstance(err, MemoryError) or "\nMemoryError" in text:
        found = "Python MemoryError"
    elif _WORKER_KILLED in text:
        found = "a Python worker was killed, most likely for its memory"
    else:
        return None
    return (f"out of memory ({found}). Give Spark more memory (spark.driver.memory, "
            "spark.executor.memory, and spark.executor.memoryOverhead for the Python "
            "workers, e.g. spark-submit --driver-memory 4g --executor-memory 4g), or make "
            "the blocks smaller: more of them with --user-blocks / --item-blocks "
            "(als.num_user_blocks / als.num_item_blocks; the estimator's numUserBlocks / "
            "numItemBlocks) or a lower --block-memory-mb")


def error_message(err: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit status of an expected failure; None for anything else
    (a bug: its traceback is shown)."""
    if isinstance(err, MfsparkValueError) or (isinstance(err, ValueError)
                                              and _raised_by_mfspark(err)):
        return str(err), EXIT_BAD_INPUT
    if isinstance(err, (ModelExistsError, ResumeError)):
        return str(err), EXIT_BAD_INPUT
    if isinstance(err, FileNotFoundError):
        missing = f"{err.strerror}: {err.filename}" if err.filename else str(err)
        return f"{missing} (check the path)", EXIT_BAD_INPUT
    message = out_of_memory_message(err)
    return (message, EXIT_OUT_OF_MEMORY) if message is not None else None


def _debug_requested(argv: list[str]) -> bool:
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return True
    probe = argparse.ArgumentParser(add_help=False)
    add_debug_flag(probe)
    return probe.parse_known_args(argv)[0].debug


def job(main: Callable[[list[str] | None], Result]) -> Callable[[list[str] | None], Result]:
    """Wrap a job's ``main(argv)``: what it returns is returned; an expected failure
    (:func:`error_message`) prints ``PROG: error: MESSAGE`` to stderr and exits with its
    status (2 for bad settings or input); anything else, and everything with ``--debug`` or
    ``MFSPARK_DEBUG=1``, propagates with its traceback.  ``PROG`` is the job's script
    name, as argparse names it."""
    prog = f"{main.__module__.rsplit('.', 1)[-1]}.py"

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> Result:
        args = sys.argv[1:] if argv is None else list(argv)
        try:
            return main(args)
        except Exception as err:  # noqa: BLE001 - classified below, else re-raised
            found = None if _debug_requested(args) else error_message(err)
            if found is None:
                raise
            message, status = found
            print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
            raise SystemExit(status) from None

    return run
