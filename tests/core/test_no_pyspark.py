"""The math layer stays free of Spark: importing every module of ``mfspark.core`` in a fresh
interpreter loads no pyspark (nor py4j), so it runs and is tested without a JVM."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import mfspark.core


def test_core_imports_no_pyspark():
    modules = [f"mfspark.core.{m.name}" for m in pkgutil.iter_modules(mfspark.core.__path__)]
    assert len(modules) >= 8
    probe = ("import sys\n"
             + "".join(f"import {m}\n" for m in modules)
             + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j'))\n"
             + "print(','.join(bad))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"mfspark.core imports {done.stdout.strip()}"
