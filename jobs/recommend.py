"""Top-N recommendations from a saved model.

``python jobs/recommend.py --model DIR --out PATH [--k 10] [--exclude RATINGS]``.  The
manual: ``docs/jobs.md``.
"""

import sys
from pathlib import Path

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.recommend import main  # noqa: E402

if __name__ == "__main__":
    main()
