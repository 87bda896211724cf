"""File-system operations on the work directory and model paths, on classic Spark and on
Spark Connect alike.

Data always moves through DataFrame reads and writes; what is left here is small: whether a
path exists, small text files (metadata, markers, the run record), listing, deleting and
renaming directories.  On a classic session they go through Hadoop's FileSystem API in the
driver's JVM, so local paths, HDFS and object stores behave as for Spark itself.  A Spark
Connect client has no JVM: it uses PyArrow's file systems (local paths, ``hdfs://``,
``s3://`` / ``s3a://``, ``gs://``), which must reach the same storage as the cluster.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import uuid
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import SparkSession


class FileSystemError(OSError):
    """A path cannot be reached with the file systems this session has."""


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect session (no JVM in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


class _Hadoop:
    """Hadoop's FileSystem through the classic session's JVM gateway."""

    def __init__(self, spark: SparkSession) -> None:
        context = spark.sparkContext
        self.jvm, self.conf = context._jvm, context._jsc.hadoopConfiguration()

    def _fs(self, path: str) -> tuple[Any, Any]:
        hpath = self.jvm.org.apache.hadoop.fs.Path(path)
        return hpath.getFileSystem(self.conf), hpath

    def exists(self, path: str) -> bool:
        fs, p = self._fs(path)
        return bool(fs.exists(p))

    def is_dir(self, path: str) -> bool:
        fs, p = self._fs(path)
        return bool(fs.exists(p) and fs.getFileStatus(p).isDirectory())

    def delete(self, path: str) -> None:
        fs, p = self._fs(path)
        fs.delete(p, True)

    def rename(self, src: str, dst: str) -> None:
        fs, p = self._fs(src)
        _, q = self._fs(dst)
        if q.getParent() is not None:
            fs.mkdirs(q.getParent())
        if not fs.rename(p, q):
            raise OSError(f"could not rename {src} to {dst}")

    def list_names(self, path: str) -> list[str]:
        fs, p = self._fs(path)
        if not fs.exists(p):
            return []
        return sorted(str(s.getPath().getName()) for s in fs.listStatus(p))

    def write_bytes(self, path: str, data: bytes) -> None:
        fs, p = self._fs(path)
        out = fs.create(p, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def read_bytes(self, path: str) -> bytes:
        fs, p = self._fs(path)
        stream = fs.open(p)
        try:
            return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def qualify(self, path: str) -> str:
        fs, p = self._fs(path)
        return str(fs.makeQualified(p).toString())


class _Arrow:
    """PyArrow's file systems, for clients without a JVM (Spark Connect)."""

    def _fs(self, path: str) -> tuple[Any, str]:
        from pyarrow import fs as pafs

        parsed = urlparse(path)
        if parsed.scheme in ("", "file"):
            return pafs.LocalFileSystem(), os.path.abspath(parsed.path if parsed.scheme
                                                           else path)
        uri = path.replace("s3a://", "s3://", 1) if parsed.scheme == "s3a" else path
        try:
            return pafs.FileSystem.from_uri(uri)
        except Exception as err:  # noqa: BLE001 - PyArrow raises several kinds
            raise FileSystemError(
                f"{path}: on Spark Connect mfspark reaches files with PyArrow, which cannot "
                f"open {parsed.scheme}:// paths here ({err}); use a local, hdfs://, s3:// or "
                "gs:// path that both this client and the cluster reach") from err

    def exists(self, path: str) -> bool:
        from pyarrow import fs as pafs

        fs, p = self._fs(path)
        return fs.get_file_info(p).type != pafs.FileType.NotFound

    def is_dir(self, path: str) -> bool:
        from pyarrow import fs as pafs

        fs, p = self._fs(path)
        return fs.get_file_info(p).type == pafs.FileType.Directory

    def delete(self, path: str) -> None:
        from pyarrow import fs as pafs

        fs, p = self._fs(path)
        kind = fs.get_file_info(p).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(p)
        elif kind != pafs.FileType.NotFound:
            fs.delete_file(p)

    def rename(self, src: str, dst: str) -> None:
        fs, p = self._fs(src)
        _, q = self._fs(dst)
        fs.create_dir(posixpath.dirname(q), recursive=True)
        fs.move(p, q)

    def list_names(self, path: str) -> list[str]:
        from pyarrow import fs as pafs

        fs, p = self._fs(path)
        if fs.get_file_info(p).type != pafs.FileType.Directory:
            return []
        return sorted(posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(p)))

    def write_bytes(self, path: str, data: bytes) -> None:
        fs, p = self._fs(path)
        fs.create_dir(posixpath.dirname(p), recursive=True)
        with fs.open_output_stream(p) as out:
            out.write(data)

    def read_bytes(self, path: str) -> bytes:
        fs, p = self._fs(path)
        with fs.open_input_stream(p) as stream:
            return stream.read()

    def qualify(self, path: str) -> str:
        parsed = urlparse(path)
        if parsed.scheme in ("", "file"):
            return "file:" + os.path.abspath(parsed.path if parsed.scheme else path)
        return path


def _backend(spark: SparkSession) -> _Hadoop | _Arrow:
    return _Arrow() if is_connect(spark) else _Hadoop(spark)


def exists(spark: SparkSession, path: str) -> bool:
    """Whether a file or directory exists at ``path``."""
    return _backend(spark).exists(path)


def is_dir(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` is a directory."""
    return _backend(spark).is_dir(path)


def delete(spark: SparkSession, path: str) -> None:
    """Remove ``path`` recursively (nothing happens if it does not exist)."""
    _backend(spark).delete(path)


def rename(spark: SparkSession, src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` (an atomic rename on HDFS and local disks)."""
    _backend(spark).rename(src, dst)


def list_names(spark: SparkSession, path: str) -> list[str]:
    """The names of the entries of directory ``path`` (empty if it does not exist)."""
    return _backend(spark).list_names(path)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``, replacing any file there.

    The text goes to a hidden temporary sibling first and is renamed into place, so a
    process killed while writing never leaves a partial file under ``path``.
    """
    fs = _backend(spark)
    parent, name = path.rstrip("/").rsplit("/", 1) if "/" in path else (".", path)
    tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:12]}"
    fs.write_bytes(tmp, text.encode("utf-8"))
    try:
        if fs.exists(path):
            fs.delete(path)
        fs.rename(tmp, path)
    except BaseException:
        fs.delete(tmp)
        raise


def read_text(spark: SparkSession, path: str) -> str:
    """The whole UTF-8 text of the file at ``path`` (not through Spark's readers, which
    skip files whose names start with ``_`` or ``.``)."""
    return _backend(spark).read_bytes(path).decode("utf-8")


def scratch_dir(spark: SparkSession, prefix: str) -> str | None:
    """A new, qualified directory name ``<base>/<prefix>-<random>`` for a run's temporary
    files, where ``base`` is ``spark.checkpoint.dir`` or, on a local master, the local
    temporary directory; None when neither applies (the caller must be given a directory
    that the driver and every executor can reach)."""
    base = spark.conf.get("spark.checkpoint.dir", None)
    if not base and spark.conf.get("spark.master", "").startswith("local"):
        base = (spark.conf.get("spark.local.dir", None) or tempfile.gettempdir()).split(",")[0]
    return qualify(spark, f"{base}/{prefix}-{uuid.uuid4().hex[:12]}") if base else None


def qualify(spark: SparkSession, path: str) -> str:
    """``path`` made absolute with its scheme (``file:/...``, ``hdfs://...``), so that later
    reads do not depend on the working directory."""
    return _backend(spark).qualify(path)
