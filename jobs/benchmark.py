"""Benchmark mfspark against Spark MLlib's ALS (and the in-process NumPy floor).

``python jobs/benchmark.py --ratings DIR --ranks 10 50 100 --out DIR``.  The manual:
``docs/benchmarks.md``.
"""

import os
import sys
from pathlib import Path

# MLlib's native BLAS (and NumPy's) are fastest single-threaded here: each core runs a task.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.benchmark import main  # noqa: E402

if __name__ == "__main__":
    main()
