"""Train a biased ALS model: ``python jobs/train.py [flags]`` or ``spark-submit jobs/train.py``.

Settings come from ``--config FILE`` (TOML, see ``conf/``) and are overridden by flags;
without ``--ratings`` it trains on the sample shipped inside pyspark.  The manual:
``docs/jobs.md``.
"""

import sys
from pathlib import Path

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.train import main  # noqa: E402

if __name__ == "__main__":
    main()
