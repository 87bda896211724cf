"""File-system operations through Hadoop's FileSystem API, so local paths, HDFS and object
stores behave the same on the driver of a cluster job."""

from __future__ import annotations

import uuid
from typing import Any

from pyspark.sql import SparkSession


def _fs_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def exists(spark: SparkSession, path: str) -> bool:
    """Whether a file or directory exists at ``path``."""
    fs, p = _fs_path(spark, path)
    return bool(fs.exists(p))


def delete(spark: SparkSession, path: str) -> None:
    """Remove ``path`` recursively (nothing happens if it does not exist)."""
    fs, p = _fs_path(spark, path)
    fs.delete(p, True)


def rename(spark: SparkSession, src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` (an atomic rename on HDFS and local disks)."""
    fs, p = _fs_path(spark, src)
    _, q = _fs_path(spark, dst)
    parent = q.getParent()
    if parent is not None:
        fs.mkdirs(parent)
    if not fs.rename(p, q):
        raise OSError(f"could not rename {src} to {dst}")


def list_names(spark: SparkSession, path: str) -> list[str]:
    """The names of the entries of directory ``path`` (empty if it does not exist)."""
    fs, p = _fs_path(spark, path)
    if not fs.exists(p):
        return []
    return sorted(str(s.getPath().getName()) for s in fs.listStatus(p))


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path``, replacing any file there.

    The text goes to a hidden temporary sibling first and is renamed into place, so a
    process killed while writing never leaves a partial file under ``path``.
    """
    fs, p = _fs_path(spark, path)
    tmp = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(
        p.getParent(), f".{p.getName()}.tmp-{uuid.uuid4().hex[:12]}")
    out = fs.create(tmp, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
    if fs.exists(p):
        fs.delete(p, False)
    if not fs.rename(tmp, p):
        fs.delete(tmp, False)
        raise OSError(f"could not write {path}")


def read_text(spark: SparkSession, path: str) -> str:
    """The whole UTF-8 text of the file at ``path`` (read through the FileSystem API:
    Spark's readers skip files whose names start with ``_`` or ``.``)."""
    fs, p = _fs_path(spark, path)
    stream = fs.open(p)
    try:
        return str(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def qualify(spark: SparkSession, path: str) -> str:
    """``path`` made absolute with its scheme (``file:/...``, ``hdfs://...``), so that later
    reads do not depend on the working directory."""
    fs, p = _fs_path(spark, path)
    return str(fs.makeQualified(p).toString())
