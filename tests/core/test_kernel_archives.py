"""The compiled kernel works however mfspark is imported: from a zip or a wheel archive (as
``spark-submit --py-files`` ships it, or zipimport in general), with a disk cache in a
per-user directory, and without any writable directory, compiled in the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfspark.core.block import solve_block
from mfspark.core.objective import Objective

#: Solves a block with the compiled loop in a fresh interpreter that imports mfspark from
#: the archive first on sys.path, and prints where it came from and the solution.
PROBE = """
import logging, os, sys, tempfile
sys.path.insert(0, sys.argv[1])
tempfile.tempdir = os.environ.get("PROBE_TMPDIR") or None
logging.basicConfig(level=logging.INFO, format="%(message)s")
import numpy as np
import mfspark
from mfspark.core import kernel
from mfspark.core.block import solve_block
from mfspark.core.objective import Objective
assert kernel.available()
rng = np.random.default_rng(0)
sol = solve_block(rng.integers(0, 50, 2000), rng.integers(0, 30, 2000),
                  rng.uniform(1, 5, 2000), rng.standard_normal((30, 5)), np.zeros(30), 3.0,
                  Objective(0.1), method="compiled")
print("FROM", mfspark.__file__)
print("FACTORS", repr(float(sol.factors.sum())))
"""


def expected_sum() -> float:
    rng = np.random.default_rng(0)
    sol = solve_block(rng.integers(0, 50, 2000), rng.integers(0, 30, 2000),
                      rng.uniform(1, 5, 2000), rng.standard_normal((30, 5)), np.zeros(30), 3.0,
                      Objective(0.1), method="compiled")
    return float(sol.factors.sum())


def probe(archive: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-I", "-c", PROBE, str(archive)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("kind", ["whl", "zip"])
def test_kernel_from_an_archive_caches_per_user(dist_zip, tmp_path, kind):
    archive = (dist_zip if kind == "zip"
               else next(dist_zip.parent.glob("mfspark-*-py3-none-any.whl")))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = probe(archive, env, tmp_path)
    assert f"FROM {archive}{os.sep}mfspark" in first.stdout  # imported from the archive
    cache = tmp_path / "cache" / "mfspark"
    assert f"compiled solver cached in {cache}" in first.stderr
    assert list(cache.glob("numba-*/*.nbi")) and list(cache.glob("numba-*/*.nbc"))
    value = float(first.stdout.split("FACTORS ")[1])
    assert value == pytest.approx(expected_sum(), rel=1e-12)
    again = probe(archive, env, tmp_path)  # a new process loads the cached machine code
    assert float(again.stdout.split("FACTORS ")[1]) == value


def test_kernel_without_a_writable_directory_compiles_in_process(dist_zip, tmp_path):
    wheel = next(dist_zip.parent.glob("mfspark-*-py3-none-any.whl"))
    unwritable = "/proc/mfspark-nowhere"  # not even root can create files under /proc
    env = {**os.environ, "XDG_CACHE_HOME": unwritable, "PROBE_TMPDIR": unwritable}
    done = probe(wheel, env, tmp_path)
    assert "compiled solver has no disk cache here" in done.stderr
    assert float(done.stdout.split("FACTORS ")[1]) == pytest.approx(expected_sum(), rel=1e-12)
