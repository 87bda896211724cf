"""Building the SparkSession with settings that suit this job.

Settings already given (``spark-submit --conf``, ``--properties-file``) always win; the
defaults below only fill the gaps: Arrow for pandas UDFs, and shuffle partitions sized to
the cores instead of Spark's 200 (which makes small jobs several times slower).
"""

from __future__ import annotations

import logging
import os
import sys

from pyspark import SparkConf
from pyspark.sql import SparkSession

DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
}


def get_session(master: str | None = None, app_name: str = "mfspark",
                extra: dict[str, str] | None = None) -> SparkSession:
    """The active session, or a new one (``local[*]`` unless a master is given or set)."""
    conf = SparkConf()
    if master:
        conf.setMaster(master)
    elif not conf.contains("spark.master"):
        conf.setMaster("local[*]")
    if conf.get("spark.master", "").startswith("local"):
        # local mode: Python workers run this interpreter (and see its packages)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf.setIfMissing("spark.app.name", app_name)
    for key, value in {**DEFAULTS, **(extra or {})}.items():
        conf.setIfMissing(key, value)
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    if not conf.contains("spark.sql.shuffle.partitions"):
        cores = spark.sparkContext.defaultParallelism
        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
    spark.sparkContext.setLogLevel("WARN")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return spark
