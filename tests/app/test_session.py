"""Session settings: the authentication secret comes from the environment only when asked."""

from __future__ import annotations

from pyspark import SparkConf

from mfspark.app.session import SECRET_ENV, add_secret


def conf(**settings):
    c = SparkConf(loadDefaults=False)
    for key, value in settings.items():
        c.set(key.replace("_", "."), value)
    return c


def test_secret_from_environment_when_authentication_is_on():
    c = conf(spark_authenticate="true")
    add_secret(c, {SECRET_ENV: "s3cret"})
    assert c.get("spark.authenticate.secret") == "s3cret"


def test_secret_left_alone_otherwise():
    off = conf()
    add_secret(off, {SECRET_ENV: "s3cret"})
    assert not off.contains("spark.authenticate.secret")
    given = conf(spark_authenticate="true")
    given.set("spark.authenticate.secret", "mine")
    add_secret(given, {SECRET_ENV: "s3cret"})
    assert given.get("spark.authenticate.secret") == "mine"
    missing = conf(spark_authenticate="true")
    add_secret(missing, {})
    assert not missing.contains("spark.authenticate.secret")
