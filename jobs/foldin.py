"""Fold new ratings into a saved model: exact factors for the given users (or items).

``python jobs/foldin.py --model DIR --ratings NEW --out DIR2 [--side item]``.  The manual:
``docs/freshness.md``.
"""

import sys
from pathlib import Path

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.foldin import main  # noqa: E402

if __name__ == "__main__":
    main()
