"""The files that ship the job: Spark defaults, the Dockerfile's install step, compose."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT


def spark_defaults() -> dict[str, str]:
    lines = (ROOT / "conf" / "spark-defaults.conf").read_text().splitlines()
    pairs = [line.split(None, 1) for line in lines if line.strip() and not line.startswith("#")]
    assert all(len(p) == 2 for p in pairs), [p for p in pairs if len(p) != 2]
    return {k: v.strip() for k, v in pairs}


def test_spark_defaults_hold_the_job_settings():
    conf = spark_defaults()
    assert conf["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert conf["spark.serializer"] == "org.apache.spark.serializer.KryoSerializer"
    assert int(conf["spark.sql.shuffle.partitions"]) < 200
    for key in ("spark.driver.memory", "spark.executor.memory", "spark.task.maxFailures"):
        assert key in conf


def test_dockerfile_installs_like_ci():
    """The image installs through `make install`, the target `make test` (CI) bootstraps."""
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", docker, re.M)
    assert re.search(r"openjdk-(17|21)-jre-headless", docker)
    assert re.search(r"^RUN make install\b", docker, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.M)
    assert re.search(r"^install: \$\(STAMP\)", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed "
                    "(.ci/run installs it and validates the file itself)")
def test_compose_file_is_valid():
    proc = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config",
                           "--services"], capture_output=True, text=True, timeout=60,
                          env={"SPARK_AUTH_SECRET": "test-only", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"spark-master", "spark-worker-1", "spark-worker-2",
                                        "train", "test"}


@pytest.mark.parametrize("job", ["train", "tune", "recommend", "evaluate", "generate",
                                 "benchmark"])
def test_console_scripts_are_the_jobs(job):
    """``pip install`` puts each job on PATH as ``mfspark-<job>``, the same program as
    ``python jobs/<job>.py`` (one main per job, in mfspark.app)."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / f"mfspark-{job}"
    assert script.is_file(), f"{script} missing: reinstall (make install)"
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                               timeout=120)
    by_file = subprocess.run([sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--help"],
                             capture_output=True, text=True, timeout=120)
    assert by_script.returncode == by_file.returncode == 0, by_script.stderr + by_file.stderr
    assert by_script.stdout == by_file.stdout
    assert by_file.stdout.startswith(f"usage: {job}.py")
