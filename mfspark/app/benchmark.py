"""Benchmark mfspark against Spark MLlib ALS (the NumPy floor, LensKit) on one data set.

``python jobs/benchmark.py --ratings data/synthetic-5m --ranks 10 50 100 --out bench/``
prints a table and writes ``results.json``, ``results.csv`` and (with matplotlib)
``fit_time_vs_rank.png`` to ``--out``.  ``--repeat N`` fits every system N times per rank and
reports medians (every run is kept in ``results.json``'s ``runs``).  ``--systems ... lenskit``
adds LensKit's ``BiasedMFScorer`` (``pip install 'mfspark[benchmark]'``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

from mfspark.app.cli import add_debug_flag, job
from mfspark.app.session import get_session
from mfspark.config import ALSParams
from mfspark.evaluation.benchmark import (arithmetic_bound_seconds, environment, load_split,
                                          repeated, summarize, warm_up)

COLUMNS = ["system", "rank", "fit_seconds", "seconds_per_iteration", "test_rmse",
           "time_vs_mllib", "rmse_vs_mllib", "time_vs_lenskit", "jvm_peak_heap_mb",
           "python_peak_rss_mb", "runs", "fit_seconds_min", "fit_seconds_max"]


def table(rows: list[dict]) -> str:
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = [" | ".join(COLUMNS), " | ".join("---" for _ in COLUMNS)]
    lines += [" | ".join(cell(r.get(c, "")) for c in COLUMNS) for r in rows]
    return "\n".join(f"| {line} |" for line in lines)


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'mfspark[report]'): no plot written")
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for system in sorted({r["system"] for r in rows}):
        pts = sorted((r["rank"], r["fit_seconds"]) for r in rows if r["system"] == system)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
    runs = max((r.get("runs", 1) for r in rows), default=1)
    ax.set_xlabel("rank")
    ax.set_ylabel("fit seconds" if runs == 1 else f"fit seconds (median of {runs} runs)")
    ax.set_title("ALS fit time vs rank")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


@job
def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.splitlines()[0])
    p.add_argument("--ratings", required=True, help="ratings (any format jobs/train.py reads)")
    p.add_argument("--out", required=True, help="directory for results.json/.csv and the plot")
    p.add_argument("--ranks", type=int, nargs="+", default=[10])
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--reg-scale", default="count", choices=["count", "none"])
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", nargs="+", default=None,
                   help="of mfspark, mllib, numpy, lenskit (default: the first three; "
                        "without numpy with --implicit-prefs or --nonnegative; lenskit needs "
                        "the benchmark extra)")
    p.add_argument("--implicit-prefs", action="store_true",
                   help="both systems fit implicit feedback (no test RMSE: see "
                        "benchmarks/implicit.py for ranking metrics)")
    p.add_argument("--alpha", type=float, default=1.0, help="implicit confidence slope")
    p.add_argument("--nonnegative", action="store_true", help="both fit factors >= 0")
    p.add_argument("--cg-steps", type=int, default=0, metavar="N",
                   help="with --implicit-prefs: mfspark takes N conjugate-gradient steps per "
                        "row instead of the exact solve (default 0: exact)")
    p.add_argument("--biases", action=argparse.BooleanOptionalAction, default=None,
                   help="whether mfspark fits user and item biases (default: yes for explicit "
                        "ratings, no with --implicit-prefs; --no-biases with --nonnegative: "
                        "MLlib's u . v model, no global mean)")
    p.add_argument("--blocks", type=int, help="mfspark blocks per side (default 2 x cores)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the untimed warm-up fit of each system before the timed ones")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="fit every system N times per rank, the order reversed every other "
                        "time; report medians (the ratio: median of same-run ratios)")
    p.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    add_debug_flag(p)
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1, got {args.repeat}")
    if args.systems is None:
        args.systems = (["mfspark", "mllib"] if args.implicit_prefs or args.nonnegative
                        else ["mfspark", "mllib", "numpy"])
    # the executors' and MLlib's BLAS single-threaded: each core runs a task
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    spark = get_session(args.master, app_name="mfspark-benchmark")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(spark)
    print("environment: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in env.items()))
    data = load_split(spark, args.ratings, args.test_fraction, args.seed)
    print(f"data: {args.ratings}: {data.num_train} train / {data.num_test} test ratings")
    rows: list[dict] = []
    runs: list[dict] = []
    if args.warmup:
        print("warm-up: one untimed 1-iteration fit of each Spark system on 20,000 ratings")
        warm_up(data, ALSParams(rank=min(args.ranks), reg=args.reg, reg_scale=args.reg_scale,
                                seed=args.seed, implicit_prefs=args.implicit_prefs,
                                alpha=args.alpha, nonnegative=args.nonnegative,
                                biases=args.biases, cg_steps=args.cg_steps),
                str(out / "warmup"), args.systems)
    for rank in args.ranks:
        params = ALSParams(rank=rank, reg=args.reg, reg_scale=args.reg_scale,
                           iterations=args.iterations, seed=args.seed,
                           num_user_blocks=args.blocks, num_item_blocks=args.blocks,
                           implicit_prefs=args.implicit_prefs, alpha=args.alpha,
                           nonnegative=args.nonnegative, biases=args.biases,
                           cg_steps=args.cg_steps)
        measured = repeated(data, params, str(out / "work"), args.systems, args.repeat)
        runs += measured
        result = summarize(measured)
        mf = next((r for r in result if r["system"] == "mfspark"), None)
        if mf is not None:
            bound = arithmetic_bound_seconds(data.num_train, mf["num_users"], mf["num_items"],
                                             rank, args.iterations,
                                             env["numpy_gflops"] * (os.cpu_count() or 1))
            result.append({"system": "arithmetic-bound", "rank": rank, "fit_seconds": bound,
                           "seconds_per_iteration": bound / args.iterations})
        rows += result
        print(table(result), flush=True)
    print("\nall ranks:\n" + table(rows))
    (out / "results.json").write_text(json.dumps({"environment": env, "ratings": args.ratings,
                                                  "repeat": args.repeat, "rows": rows,
                                                  "runs": runs}, indent=2))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    if plot([r for r in rows if r["system"] != "arithmetic-bound"], out / "fit_time_vs_rank.png"):
        print(f"plot: {out / 'fit_time_vs_rank.png'}")
    print(f"results: {out / 'results.json'}, {out / 'results.csv'}")
    return rows
