"""Whole jobs: mfspark's training job against MLlib's ALS, each as its own process.

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/scale.py --data DIR \\
        [--users 1700000 --items 20000 --ratings 6000000] [--ranks 64] [--iterations 2]

What a user waits for, from the command to the saved model; past one machine's memory with
the defaults (1.7M users), and the whole-job speed on any planted set (``--data`` of
``jobs/generate.py --size 5m``, ``--ranks 10 50 100 --iterations 10``).

Generates the planted ratings into ``DIR`` first when it holds none (``jobs/generate.py``,
seeded). Then, for each rank, runs one after the other, each as its own process on the same
session settings (``mfspark.app.session``'s defaults, ``local[2]``):

- ``mfspark``: ``jobs/train.py --ratings DIR --format parquet --rank K --iterations N``
  (read, validate, split 90/10, fit, test RMSE, model written): the whole job;
- ``mllib``: this script's ``--mllib`` child: read the same Parquet, the same 90/10 split
  (``mfspark.data.split``), ``pyspark.ml.recommendation.ALS(rank=K, maxIter=N).fit``, the
  test RMSE and ``model.save``.

For each it prints the exit code, the wall time and the peak resident memory of the whole
process tree (driver JVM, Python driver, Python workers; sampled from ``/proc`` every 0.2 s),
then the two ratios, mfspark / MLlib, of this one run, and each system's test RMSE.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tree_rss_mb(root: int) -> float:
    """Resident memory (MiB) of ``root`` and all its descendants, from ``/proc``."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in members]
        members.update(children)
        frontier.extend(children)
    return sum(rss.get(p, 0) for p in members) / 2**20


def measured(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command`` (output to ``log``), sampling its process tree's memory."""
    began = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        peak = 0.0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss_mb(proc.pid))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        stop.set()
        sampler.join()
    return {"exit": code, "seconds": time.perf_counter() - began, "peak_rss_mb": peak}


def mllib_child(args: argparse.Namespace) -> None:
    """Read, split, fit, score and save with MLlib's ALS (the ``--mllib`` child)."""
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.recommendation import ALS

    from mfspark.app.session import get_session
    from mfspark.data.split import random_split

    spark = get_session("local[2]", "mllib-scale")
    ratings = spark.read.parquet(args.data).select("user", "item", "rating")
    train, test = random_split(ratings, 0.1, args.seed)
    model = ALS(rank=args.rank, maxIter=args.iterations, regParam=0.1, userCol="user",
                itemCol="item", ratingCol="rating", seed=args.seed,
                coldStartStrategy="drop").fit(train)
    rmse = RegressionEvaluator(metricName="rmse", labelCol="rating").evaluate(
        model.transform(test))
    model.write().overwrite().save(f"{args.out}/mllib-model")
    print(f"mllib test RMSE {rmse:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="planted ratings (Parquet), made if missing")
    p.add_argument("--out", default="output/scale")
    p.add_argument("--users", type=int, default=1_700_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--ratings", type=int, default=6_000_000)
    p.add_argument("--ranks", type=int, nargs="+", default=[64])
    p.add_argument("--rank", type=int, help=argparse.SUPPRESS)  # the --mllib child's
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mllib", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mllib:
        mllib_child(args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    python = sys.executable
    if not list(Path(args.data).glob("*.parquet")):
        subprocess.run([python, "jobs/generate.py", "--out", args.data, "--users",
                        str(args.users), "--items", str(args.items), "--ratings",
                        str(args.ratings), "--seed", str(args.seed), "--master", "local[2]",
                        "--overwrite"], check=True, cwd=ROOT)
    for rank in args.ranks:
        compare_jobs(args, rank)


def compare_jobs(args: argparse.Namespace, rank: int) -> None:
    """Both whole jobs at ``rank``, one after the other, and their ratios."""
    python = sys.executable
    systems = {
        "mfspark": [python, "jobs/train.py", "--ratings", args.data, "--format", "parquet",
                    "--rank", str(rank), "--iterations", str(args.iterations),
                    "--seed", str(args.seed), "--master", "local[2]",
                    "--out", f"{args.out}/mfspark", "--overwrite"],
        "mllib": [python, __file__, "--mllib", "--data", args.data, "--out", args.out,
                  "--rank", str(rank), "--iterations", str(args.iterations),
                  "--seed", str(args.seed)],
    }
    results = {}
    for name, command in systems.items():
        log = Path(args.out) / f"{name}-rank-{rank}.log"
        results[name] = r = measured(command, log)
        r["rmse"] = test_rmse(log)
        print(f"rank {rank:3d} {name:8s} exit {r['exit']}  {r['seconds']:7.1f} s  peak RSS "
              f"{r['peak_rss_mb']:7.0f} MiB  test RMSE {r['rmse']}  (log: {log})", flush=True)
    a, b = results["mfspark"], results["mllib"]
    print(f"rank {rank}, {args.iterations} iterations, {args.data}: mfspark / MLlib "
          f"time = {a['seconds'] / b['seconds']:.2f}, peak RSS = "
          f"{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}", flush=True)


def test_rmse(log: Path) -> str:
    """The test RMSE a job printed (``test RMSE  0.6134  (model)`` or ``mllib test RMSE
    0.6706``), or ``-``."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        words = line.split()
        if "RMSE" in words and words.index("RMSE") + 1 < len(words) and (
                line.startswith("test RMSE") or line.startswith("mllib test RMSE")):
            return words[words.index("RMSE") + 1]
    return "-"

if __name__ == "__main__":
    main()
