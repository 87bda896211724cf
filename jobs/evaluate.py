"""Evaluate a saved model on held-out ratings: rating and ranking metrics.

``python jobs/evaluate.py --model DIR --ratings PATH [--test-fraction F]``.  The manual:
``docs/jobs.md``.
"""

import sys
from pathlib import Path

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.evaluate import main  # noqa: E402

if __name__ == "__main__":
    main()
