"""A Spark standalone cluster on 127.0.0.1 for tests, and spark-submit runs against it.

The master and each worker are JVMs started from the installed pyspark's ``bin/spark-class``
(the pip package has no ``start-master.sh``), each in its own process group, so that stopping
a worker also stops the executor JVM and Python workers it launched.  Every process started
here is stopped by its process-group ID, never by name; :class:`StandaloneCluster` does it on
exit even when the test body fails.  Ports are picked free, never hard-coded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def spark_env(**extra: str) -> dict[str, str]:
    """The environment for Spark processes: loopback only, this pyspark as SPARK_HOME, and
    none of the test process's Python settings (each run says which Python it uses)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_CONF_DIR")}
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP=LOOPBACK, **extra)
    return env


def start_group(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group, output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop the process group led by ``proc``: SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        deadline = time.monotonic() + wait
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or its zombie keeps the group alive
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    proc.poll()


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


@dataclass
class Worker:
    """One worker JVM and the address of its web UI (which its executors' log URLs name)."""

    proc: subprocess.Popen
    webui_port: int
    log: Path


class StandaloneCluster:
    """A master and ``workers`` workers (``cores`` cores, ``memory`` each) on 127.0.0.1."""

    def __init__(self, work: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> None:
        self.work, self.num_workers, self.cores, self.memory = work, workers, cores, memory
        self.port, self.webui_port = free_port(), free_port()
        self.master: subprocess.Popen | None = None
        self.workers: list[Worker] = []
        self.env = spark_env(SPARK_DAEMON_MEMORY="512m", SPARK_CONF_DIR=str(work / "conf"))

    @property
    def url(self) -> str:
        return f"spark://{LOOPBACK}:{self.port}"

    def _class(self, name: str, *args: str) -> list[str]:
        return [str(SPARK_HOME / "bin" / "spark-class"), f"org.apache.spark.deploy.{name}", *args]

    def state(self) -> dict:
        """The master's JSON view (workers, their state, applications)."""
        url = f"http://{LOOPBACK}:{self.webui_port}/json/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)

    def alive_workers(self) -> int:
        try:
            return sum(w.get("state") == "ALIVE" for w in self.state().get("workers", []))
        except (OSError, ValueError):
            return -1  # the master's UI is not up yet (no answer, or not its JSON yet)

    def start(self, timeout: float = 120.0) -> StandaloneCluster:
        (self.work / "conf").mkdir(parents=True, exist_ok=True)  # empty: no stray settings
        self.master = start_group(
            self._class("master.Master", "--host", LOOPBACK, "--port", str(self.port),
                        "--webui-port", str(self.webui_port)),
            self.work / "master.log", self.env, self.work)
        for i in range(self.num_workers):
            ui, wdir = free_port(), self.work / f"worker-{i}"
            wdir.mkdir(exist_ok=True)
            log = self.work / f"worker-{i}.log"
            proc = start_group(
                self._class("worker.Worker", "--host", LOOPBACK, "--cores", str(self.cores),
                            "--memory", self.memory, "--webui-port", str(ui),
                            "--work-dir", str(wdir), self.url),
                log, self.env, self.work)
            self.workers.append(Worker(proc, ui, log))
        deadline = time.monotonic() + timeout
        while self.alive_workers() < self.num_workers:
            processes = [self.master, *(w.proc for w in self.workers)]
            dead = [p for p in processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"standalone cluster did not come up ({self.alive_workers()} of "
                                   f"{self.num_workers} workers alive)\nmaster log:\n"
                                   f"{tail(self.work / 'master.log')}")
            time.sleep(0.5)
        return self

    def kill_worker(self, i: int) -> None:
        """Lose worker ``i`` at once, as a crashed machine: SIGKILL to its JVM's process group
        (the worker, its executor JVM and their Python workers)."""
        os.killpg(self.workers[i].proc.pid, signal.SIGKILL)
        self.workers[i].proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop every JVM started here (workers first), by process group."""
        for proc in [w.proc for w in reversed(self.workers)] + [self.master]:
            if proc is not None:
                stop_group(proc)

    def __enter__(self) -> StandaloneCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Submitted:
    """A finished spark-submit: exit code and the driver's output."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def spark_submit(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900.0,
                 when: tuple[str, Callable[[], None]] | None = None) -> Submitted:
    """Run ``spark-submit args`` in its own process group from ``cwd``.

    ``when=(text, action)`` calls ``action()`` once, as soon as the driver's output contains
    ``text`` (the driver's Python prints to spark-submit's stdout, Spark's log4j to stderr).
    The whole group is killed if the run outlives ``timeout`` seconds (then ``TimeoutError``),
    and in any case before returning.
    """
    out, err = cwd / "submit.stdout", cwd / "submit.stderr"
    began = time.monotonic()
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([str(SPARK_HOME / "bin" / "spark-submit"), *args], stdout=o,
                                stderr=e, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)
    try:
        while proc.poll() is None:
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"spark-submit ran over {timeout}s\n{tail(err)}")
            if when is not None and when[0] in out.read_text(errors="replace"):
                when[1]()
                when = None
            time.sleep(0.5)
    finally:
        stop_group(proc, grace=5.0)
    return Submitted(proc.returncode, out.read_text(errors="replace"),
                     err.read_text(errors="replace"), time.monotonic() - began)
