"""Train a biased ALS model: ``python jobs/train.py [flags]`` or ``spark-submit jobs/train.py``.

Settings come from ``--config FILE`` (TOML, see ``conf/``) and are overridden by flags.
Without ``--ratings`` it trains on the sample shipped inside pyspark.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing: the package sits beside jobs/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mfspark
from mfspark import config as cfg
from mfspark.config import BAD_ROW_POLICIES, DUPLICATE_POLICIES, FORMATS
from mfspark.report import train_report as write_report
from mfspark.session import get_session
from mfspark.solve import REG_SCALES
from mfspark.topn import top_n
from mfspark.train import TrainResult, train

log = logging.getLogger("mfspark")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML settings file (tables [input], [als], [output])")
    p.add_argument("--ratings", dest="path", help="ratings file or directory")
    p.add_argument("--format", choices=FORMATS, help="input format (default: auto)")
    p.add_argument("--delimiter", help="CSV delimiter (default: detected)")
    p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="whether the CSV has a header line (default: detected)")
    for side in ("user", "item", "rating", "timestamp"):
        p.add_argument(f"--{side}-col", dest=f"{side}_col", help=f"column of {side}s")
    p.add_argument("--on-bad-rows", choices=BAD_ROW_POLICIES,
                   help="fail (default) or quarantine bad rows to OUT/rejected/")
    p.add_argument("--duplicates", choices=DUPLICATE_POLICIES,
                   help="repeated (user, item) pairs: fail (default), last or mean")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--rating-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                       help="valid ratings, inclusive (default: 0.5 5.0)")
    scale.add_argument("--no-rating-range", dest="rating_range", action="store_false",
                       help="accept any finite rating")
    p.set_defaults(rating_range=None)
    p.add_argument("--out", help="output directory (default: output)")
    p.add_argument("--rank", type=int, help="number of latent factors K")
    p.add_argument("--reg", type=float, help="regularization lambda")
    p.add_argument("--reg-scale", choices=REG_SCALES, help="none: plain lambda; count: ALS-WR")
    p.add_argument("--iterations", type=int, help="number of ALS iterations")
    p.add_argument("--seed", type=int, help="seed of the initial factors")
    p.add_argument("--test-fraction", type=float, help="held-out fraction (0: none)")
    p.add_argument("--split-seed", type=int, help="seed of the train/test split")
    p.add_argument("--user-blocks", dest="num_user_blocks", type=int, help="user blocks")
    p.add_argument("--item-blocks", dest="num_item_blocks", type=int, help="item blocks")
    p.add_argument("--block-memory-mb", type=int,
                   help="memory budget (MiB) for building one block's normal equations")
    p.add_argument("--implicit-prefs", action=argparse.BooleanOptionalAction, default=None,
                   help="implicit feedback (MLlib's implicitPrefs): preference rating > 0, "
                        "confidence 1 + alpha |rating|, no biases unless --biases "
                        "(default: explicit)")
    p.add_argument("--alpha", type=float,
                   help="implicit-feedback confidence slope, >= 0 (default 1.0)")
    p.add_argument("--nonnegative", action=argparse.BooleanOptionalAction, default=None,
                   help="constrain the factors to be >= 0; biases stay free (default: no)")
    p.add_argument("--cg-steps", type=int, metavar="N",
                   help="implicit feedback: N conjugate-gradient steps per row from its "
                        "previous factors instead of the exact solve (default 0: exact)")
    p.add_argument("--biases", action=argparse.BooleanOptionalAction, default=None,
                   help="fit user and item biases (default: yes, except with "
                        "--implicit-prefs)")
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model")
    p.add_argument("--resume", action="store_true",
                   help="continue the run stored in OUT/iterations from its last complete "
                        "iteration (same settings and input required)")
    p.add_argument("--baselines", action="store_true",
                   help="also report the global-mean and biases-only test RMSE")
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="print the top 5 unseen items of N users")
    p.add_argument("--report", metavar="DIR",
                   help="write metrics (CSV, JSON) and plots (PNG, with matplotlib) to DIR")
    return p


def settings(args: argparse.Namespace) -> cfg.JobConfig:
    base = cfg.load(args.config) if args.config else cfg.JobConfig()
    keys = ("path", "format", "delimiter", "header", "user_col", "item_col", "rating_col",
            "timestamp_col", "out", "rank", "reg", "reg_scale", "iterations", "seed",
            "test_fraction", "split_seed", "num_user_blocks", "num_item_blocks",
            "on_bad_rows", "duplicates", "rating_range", "block_memory_mb",
            "implicit_prefs", "alpha", "nonnegative", "biases", "cg_steps")
    return cfg.override(base, **{k: getattr(args, k) for k in keys})


def report(result: TrainResult, show: int) -> None:
    md = result.metadata
    last = md["history"][-1]
    print(f"\nmodel written to {result.model_dir}")
    print(f"rank={md['rank']} reg={md['reg']} reg_scale={md['reg_scale']} "
          f"iterations={md['iterations']}  train {md['num_train']} / test {md['num_test']} "
          f"ratings  {md['seconds']:.1f}s")
    c = md["counts"]
    print(f"rows: {c['read']} read = {c['used']} used + {c['rejected']} rejected + "
          f"{c['merged']} merged")
    if md.get("implicit_prefs"):
        print(f"implicit feedback (alpha={md['alpha']}): objective {last['objective']:.6g}; "
              "no RMSE (the model predicts preferences, not ratings)")
    else:
        print(f"train RMSE {last['train_rmse']:.4f}")
    if "test_rmse" in last:
        print(f"test RMSE  {last['test_rmse']:.4f}  (model)")
    for name, value in result.baselines.items():
        print(f"test RMSE  {value:.4f}  ({name.replace('_', '-')} baseline)")
    if show <= 0:
        return
    f = result.fitted
    rows = list(range(min(show, len(result.users))))
    seen = (result.train.filter(result.train.user_idx < len(rows))
            .select("user_idx", "item_idx").toPandas().groupby("user_idx")["item_idx"])
    exclude = [seen.get_group(r).to_numpy() if r in seen.groups else [] for r in rows]
    best, scores = top_n(f.users.factors[rows], f.users.bias[rows], f.items.factors,
                         f.items.bias, f.mu, 5, exclude)
    item_ids = result.items.ids.to_pylist()
    for r in rows:
        recs = ", ".join(f"{item_ids[j]} ({s:.2f})" for j, s in zip(best[r], scores[r]) if j >= 0)
        print(f"user {result.users.ids[r].as_py()}: top unseen items {recs}")


def main(argv: list[str] | None = None) -> TrainResult:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # where the code came from: the checkout, an install, or a --py-files archive
    log.info("mfspark %s loaded from %s", mfspark.__version__, Path(mfspark.__file__).parent)
    try:
        config = settings(args)
    except cfg.ConfigError as err:
        parser().error(str(err))
    spark = get_session(args.master, app_name="mfspark-train")
    result = train(spark, config, overwrite=args.overwrite, with_baselines=args.baselines,
                   resume_run=args.resume)
    report(result, args.show)
    if args.report:
        made = write_report(args.report, result.metadata)
        print(made if isinstance(made, str) else f"report in {args.report}: {', '.join(made)}")
    return result


if __name__ == "__main__":
    main()
