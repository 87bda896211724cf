"""Building the SparkSession with settings that suit this job.

Settings already given (``spark-submit --master``, ``--conf``, ``--properties-file``) always
win; the defaults below only fill the gaps: Arrow for pandas UDFs, and shuffle partitions sized
to the cores instead of Spark's 200 (which makes small jobs several times slower).

Under ``spark-submit`` those settings live in the JVM that started this Python driver, not in
a fresh Python-side :class:`SparkConf`; the session therefore joins that JVM first and reads
them from there (otherwise ``--master spark://...`` would silently become ``local[*]``).
With ``spark.authenticate=true`` the shared secret may come from the environment variable
``SPARK_AUTHENTICATE_SECRET`` (never from a file in the repository or the command line).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile

from pyspark import SparkConf, SparkContext, SparkFiles
from pyspark.sql import SparkSession

DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
}


def submitted_by_spark_submit() -> bool:
    """Whether this Python driver was started by ``spark-submit`` (which hands it the port of
    its already-running JVM), rather than by ``python`` (the session then starts its own)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


#: Environment variable holding the shared secret of ``spark.authenticate``.
SECRET_ENV = "SPARK_AUTHENTICATE_SECRET"


def add_secret(conf: SparkConf, environ: dict[str, str]) -> None:
    """Set ``spark.authenticate.secret`` from :data:`SECRET_ENV` when authentication is on
    and no secret (or secret file) is configured."""
    if conf.get("spark.authenticate", "false").lower() != "true":
        return
    if (conf.contains("spark.authenticate.secret")
            or conf.contains("spark.authenticate.secret.file")):
        return
    if environ.get(SECRET_ENV):
        conf.set("spark.authenticate.secret", environ[SECRET_ENV])


def wheels_to_executors(sc: SparkContext) -> list[str]:
    """Ship each pure-Python wheel of ``--py-files`` again under a ``.zip`` name.

    The driver imports from every archive spark-submit was given, but the executors get only
    the ``.zip``, ``.egg`` and ``.jar`` ones on their ``sys.path``.  A ``*-none-any.whl`` is
    a zip archive that zipimport reads, so its copy named ``<wheel>.zip`` lets the executors
    import what the driver imports.  Returns the names shipped.
    """
    shipped = []
    for path in filter(None, sc.getConf().get("spark.submit.pyFiles", "").split(",")):
        name = os.path.basename(path)
        local = os.path.join(SparkFiles.getRootDirectory(), name)
        if not name.endswith("-none-any.whl") or not os.path.isfile(local):
            continue
        where = tempfile.mkdtemp(prefix="mfspark-wheel-")
        atexit.register(shutil.rmtree, where, True)
        copy = os.path.join(where, name + ".zip")
        shutil.copyfile(local, copy)
        sc.addPyFile(copy)
        shipped.append(name + ".zip")
    if shipped:
        logging.getLogger("mfspark").info("wheels on --py-files shipped to the executors as %s",
                                          ", ".join(shipped))
    return shipped


def connect_session(remote: str, app_name: str = "mfspark",
                    extra: dict[str, str] | None = None) -> SparkSession:
    """A Spark Connect session: ``sc://host:port`` reaches a Spark Connect server,
    ``local[N]`` starts one in this process (pyspark's package ships it)."""
    if remote.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.remote(remote).appName(app_name)
    for key, value in {**DEFAULTS, **(extra or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not (extra or {}).get("spark.sql.shuffle.partitions"):
        from mfspark.engine.loop import parallelism

        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, 2 * parallelism(spark))))
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return spark


def get_session(master: str | None = None, app_name: str = "mfspark",
                extra: dict[str, str] | None = None, remote: str | None = None
                ) -> SparkSession:
    """The active session, or a new one (``local[*]`` unless a master is given or set);
    with ``remote``, a Spark Connect session (:func:`connect_session`)."""
    if remote:
        return connect_session(remote, app_name, extra)
    if submitted_by_spark_submit():
        # join spark-submit's JVM so that SparkConf() sees its --master, --conf and properties
        SparkContext._ensure_initialized()
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
    add_secret(conf, dict(os.environ))
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    if not conf.contains("spark.sql.shuffle.partitions"):
        cores = spark.sparkContext.defaultParallelism
        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
    spark.sparkContext.setLogLevel("WARN")
    wheels_to_executors(spark.sparkContext)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return spark
