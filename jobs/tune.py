"""Find the best rank, lambda, reg_scale and iterations by cross-validation.

``python jobs/tune.py --ratings PATH --out DIR --rank 5 10 --reg 0.05 0.1``; writes the
results table and ``best.toml`` (``jobs/train.py --config DIR/best.toml`` trains it).  The
manual: ``docs/model-selection.md``.
"""

import sys
from pathlib import Path

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.tune import main  # noqa: E402

if __name__ == "__main__":
    main()
