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
import logging
import os
import re
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


def _jvm_exited(grace: float = 30.0) -> bool | None:
    """Whether the JVM this Python process started has exited, or does within ``grace``
    seconds (a JVM stopping runs its shutdown hooks first); None: not started here, as
    under ``spark-submit``."""
    import subprocess

    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is None:
        return None
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return False
    return True


#: What a call says that reached a SparkContext while Spark stopped it.
_STOPPED = ("SparkContext was shut down", "stopped SparkContext",
            "SparkContext.dagScheduler()\" is null")


def _jvm_lost(err: BaseException) -> bool:
    """Whether ``err`` or one of its causes shows the Spark JVM gone mid-job: its
    connection closed, an error whose text it can no longer give, or a call that found
    the SparkContext stopping (Spark stops the whole driver JVM on an ``OutOfMemoryError``
    in a task of local mode, after logging it); where this process started the JVM, only
    if it has exited."""
    try:
        from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError
    except ImportError:  # a Spark Connect client without py4j: no JVM of its own
        return False
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Py4JNetworkError):
            break
        if isinstance(current, Py4JJavaError):
            try:
                str(current)
            except Exception:  # noqa: BLE001 - the JVM cannot describe its own error
                break
        if isinstance(current, Py4JError) and "does not exist in the JVM" in str(current):
            break  # the gateway answers no more (its classes are unloaded)
        if isinstance(current, Py4JError) and any(m in str(current) for m in _STOPPED):
            break  # the call reached a SparkContext already stopping
        current = current.__cause__ or current.__context__
    else:
        return False
    return _jvm_exited() is not False


def out_of_memory_message(err: BaseException) -> str | None:
    """One line naming the settings to change if ``err`` reports memory exhausted (a JVM
    ``OutOfMemoryError`` in a Spark error's text, a Python ``MemoryError``, a Python worker
    killed, or the JVM gone mid-job), else None."""
    text = _error_text(err)
    if _JVM_OOM in text:
        line = next(x for x in text.splitlines() if _JVM_OOM in x)
        found = "out of memory (" + line[line.index(_JVM_OOM):].strip()[:120] + ")"
    elif isinstance(err, MemoryError) or "\nMemoryError" in text:
        found = "out of memory (Python MemoryError)"
    elif _WORKER_KILLED in text:
        found = "out of memory (a Python worker was killed, most likely for its memory)"
    elif _jvm_lost(err):
        found = ("the Spark JVM stopped during the job, most likely out of memory (its log "
                 f"above names the error, e.g. {_JVM_OOM}: Java heap space)")
    else:
        return None
    return (f"{found}. Give Spark more memory (spark.driver.memory, "
            "spark.executor.memory, and spark.executor.memoryOverhead for the Python "
            "workers, e.g. spark-submit --driver-memory 4g --executor-memory 4g), or make "
            "the blocks smaller: more of them with --user-blocks / --item-blocks "
            "(als.num_user_blocks / als.num_item_blocks; the estimator's numUserBlocks / "
            "numItemBlocks) or a lower --block-memory-mb")


#: Spark's error classes for memory settings it refuses when the session starts.
_REFUSED_SETTINGS = ("[INVALID_DRIVER_MEMORY", "[INVALID_EXECUTOR_MEMORY")


def refused_setting_message(err: BaseException) -> str | None:
    """Spark's own sentence when it refused a memory setting at start-up (``Insufficient
    driver memory: ... Please increase heap size using the --driver-memory option``), else
    None."""
    lines = _error_text(err).splitlines()
    for i, line in enumerate(lines):
        if any(name in line for name in _REFUSED_SETTINGS):
            found = line[line.index("["):]
            advice = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return re.sub(r"\s*SQLSTATE: \w+", "", f"{found} {advice}").strip()
    return None


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
    refused = refused_setting_message(err)
    if refused is not None:
        return refused, EXIT_BAD_INPUT
    message = out_of_memory_message(err)
    return (message, EXIT_OUT_OF_MEMORY) if message is not None else None


def _not_py4j(record: logging.LogRecord) -> bool:
    """py4j logs each lost connection with its traceback to the root logger; when the JVM
    is gone the job says so in one line (:func:`out_of_memory_message`)."""
    return f"{os.sep}py4j{os.sep}" not in record.pathname


def setup_logging() -> None:
    """A job's log lines: mfspark's from info level up, other libraries' from warnings up,
    py4j's connection errors left out."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("mfspark").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_py4j)


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
