"""Generate seeded synthetic ratings from a planted biased low-rank model, as Parquet.

``python jobs/generate.py --size 5m --out data/synthetic-5m``.  The manual:
``docs/benchmarks.md``.
"""

import sys
from pathlib import Path

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.generate import main  # noqa: E402

if __name__ == "__main__":
    main()
