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


def dockerfile_steps() -> list[str]:
    """The Dockerfile's instructions, one string each (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_is_lean_and_cache_friendly():
    """Dependencies (pinned by constraints.txt) in a layer before the sources, no pip cache,
    an unprivileged user."""
    steps = dockerfile_steps()
    index = {s: i for i, s in enumerate(steps)}

    def first(pattern: str) -> int:
        found = [i for s, i in index.items() if re.search(pattern, s)]
        assert found, f"no Dockerfile step matches {pattern!r}"
        return min(found)

    deps = first(r"^RUN .*pip install .*-r constraints\.txt")
    assert first(r"^COPY .*\bconstraints\.txt\b") < deps < first(r"^COPY \S* ?\. \.$")
    assert not re.search(r"^COPY .*pyproject", steps[first(r"^COPY .*constraints")]), \
        "the dependency layer must depend on constraints.txt alone"
    assert first(r"^COPY \S* ?\. \.$") < first(r"^RUN make install\b")
    assert first(r"^USER mfspark$") < deps
    assert first(r"PIP_NO_CACHE_DIR=1") < deps
    assert "USER root" not in steps
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^pyspark==4\.3\.0$", pins, re.M)
    assert re.search(r"-c constraints\.txt", (ROOT / "Makefile").read_text()), \
        "make install and the image use the same pins"


def test_dockerignore_keeps_secrets_environments_and_data_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv", "output", "data", "*.secret"):
        assert pattern in ignored


def compose_config(*files: str) -> subprocess.CompletedProcess:
    args = ["docker-compose"]
    for name in files:
        args += ["-f", str(ROOT / name)]
    return subprocess.run(args + ["config"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin",
                               "SPARK_AUTH_SECRET_FILE": "/nonexistent/spark-auth.secret"})


def test_compose_secret_is_a_file_not_an_environment_variable():
    """``docker inspect`` shows a container's environment: the secret comes from a Docker
    secret (a mounted file), read into the processes' environment when they start."""
    for name in ("docker-compose.yml", "docker-compose.host.yml"):
        text = (ROOT / name).read_text()
        assert not re.search(r"^\s*(_SPARK_AUTH_SECRET|SPARK_AUTHENTICATE_SECRET)\s*:", text, re.M)
        assert "spark.authenticate.secret=" not in text
    text = (ROOT / "docker-compose.yml").read_text()
    assert "/run/secrets/spark-auth" in text
    # the daemons read _SPARK_AUTH_SECRET, the driver (mfspark.app.session) SPARK_AUTHENTICATE_SECRET
    from mfspark.app.session import SECRET_ENV

    assert re.search(rf'export _SPARK_AUTH_SECRET=\S+ {SECRET_ENV}=', text)
    assert not re.search(r"^\s*- \.\./shared", text, re.M), "the test service must not need ../shared"
    assert "${MFSPARK_DATA:-" in text


def test_compose_host_override_keeps_spark_on_loopback():
    text = (ROOT / "docker-compose.host.yml").read_text()
    assert text.count("<<: *host") == 5 and "network_mode: host" in text
    assert "spark.shuffle.readHostLocalDisk=false" in text
    assert "spark.driver.bindAddress=127.0.0.1" in text
    assert "0.0.0.0" not in text
    # docker-compose refuses published ports with network_mode: host, and an override cannot
    # remove them: the base file publishes none
    assert not re.search(r"^\s*ports:", (ROOT / "docker-compose.yml").read_text(), re.M)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed "
                    "(.ci/run installs it and validates the file itself)")
@pytest.mark.parametrize("files", [("docker-compose.yml",),
                                   ("docker-compose.yml", "docker-compose.host.yml")])
def test_compose_file_is_valid(files):
    proc = compose_config(*files)
    assert proc.returncode == 0, proc.stderr
    services = subprocess.run(
        ["docker-compose", *[a for f in files for a in ("-f", str(ROOT / f))], "config",
         "--services"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin"})
    assert set(services.stdout.split()) == {"spark-master", "spark-worker-1", "spark-worker-2",
                                            "train", "test"}, services.stderr
    config = proc.stdout
    assert config.count("condition: service_healthy") == 4   # workers wait for the master
    assert "/nonexistent/spark-auth.secret" in config          # SPARK_AUTH_SECRET_FILE
    if "docker-compose.host.yml" in files:
        assert config.count("network_mode: host") == 5


def test_ci_docker_script():
    """.ci/docker: bash, syntax-checked, stops what it started by PID in an exit trap."""
    script = ROOT / ".ci" / "docker"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and script.stat().st_mode & 0o111
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert "trap cleanup EXIT" in text and 'kill "$DOCKERD_PID"' in text
    for forbidden in ("pkill", "killall"):
        assert forbidden not in text
    assert "--bridge=none" in text and "docker-compose.host.yml" in text


@pytest.mark.parametrize("job", ["train", "tune", "recommend", "evaluate", "generate",
                                 "benchmark", "foldin"])
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
