"""Whole jobs: mfspark's training job against MLlib's ALS, each as its own process.

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/scale.py --data DIR \\
        [--users 1700000 --items 20000 --ratings 6000000] [--ranks 64] [--iterations 2]
    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/scale.py --data DIR \\
        --curve 500000 1000000 2000000 4000000 [--ratings-per-user 3.5]

What a user waits for, from the command to the saved model; past one machine's memory with
the defaults (1.7M users), and the whole-job speed on any planted set (``--data`` of
``jobs/generate.py --size 5m``, ``--ranks 10 50 100 --iterations 10``).

Generates the planted ratings into ``DIR`` first when it holds none (``jobs/generate.py``,
seeded). Then, for each rank, runs one after the other, each as its own process on the same
session settings (``mfspark.app.session``'s defaults, ``local[2]``, and ``--driver-memory``
when given):

- ``mfspark``: ``jobs/train.py --ratings DIR --format parquet --rank K --iterations N``
  (read, validate, split 90/10, fit, test RMSE, model written): the whole job;
- ``mllib``: this script's ``--mllib`` child: read the same Parquet, the same 90/10 split
  (``mfspark.data.split``), ``pyspark.ml.recommendation.ALS(rank=K, maxIter=N).fit``, the
  test RMSE and ``model.save``.

With ``--float32``, mfspark's job runs a second time, with float32 factors between
half-steps (``--factor-dtype float32``). With ``--floor``, a last process follows: the
design's floor, the same read and split, then grouped pandas UDFs over both sides' blocks
that load the solver's libraries and only count rows (no factor): what any job of this shape
keeps resident, whatever its math.

For each it prints the exit code, the wall time, the peak resident memory of the whole
process tree and of its largest processes (the JVM, the Python driver, the largest Python
worker), and the tree's peak proportional set size (PSS: a page a forked Python worker
shares with the daemon it came from counts once), all sampled from ``/proc`` every 0.2 s;
then the ratios to MLlib of this one run, and each system's test RMSE.

``--curve U ...`` is the memory scale curve: for each user count ``U`` it generates (into
``DIR/users-U``, when missing) ``U x --ratings-per-user`` planted ratings over ``--items``
items, runs both jobs at the first rank, and at the end prints the table of peaks against
users, saves it (``OUT/curve.json``) and draws it (``OUT/curve.png``, with matplotlib: the
``report`` extra); ``--plot OUT/curve.json`` prints and draws a saved curve again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


ROLES = ("jvm", "driver", "worker")


def role(pid: int, root: int) -> str:
    """What a process of a job's tree is: the JVM, the Python driver (the tree's root), a
    Python worker (or the daemon forking them), or another (the launch scripts)."""
    if pid == root:
        return "driver"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().split(b"\0")[0]
    except OSError:
        return "other"
    name = os.path.basename(command)
    return "jvm" if name == b"java" else "worker" if name.startswith(b"python") else "other"


def pss_mb(pid: int) -> float:
    """A process's proportional set size (MiB): its resident pages, each page it shares
    with other processes (a forked Python worker with the daemon it was forked from)
    divided among them; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(root: int) -> dict[int, float]:
    """Resident memory (MiB) of ``root`` and each of its descendants, from ``/proc``."""
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
    return {p: rss[p] / 2**20 for p in members if p in rss}


def measured(command: list[str], log: Path, env: dict[str, str] | None = None
             ) -> dict[str, float]:
    """Run ``command`` (output to ``log``), sampling its process tree's memory: the peak of
    the whole tree's resident memory (``peak_rss_mb``: a page shared by two processes counts
    twice) and proportional set size (``peak_pss_mb``: it counts once), and of the largest
    process of each role (``peak_jvm_mb``, ``peak_driver_mb``, ``peak_worker_mb``)."""
    began = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env)
        peaks = {"peak_rss_mb": 0.0, "peak_pss_mb": 0.0,
                 **{f"peak_{r}_mb": 0.0 for r in ROLES}}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                sizes = tree_rss_mb(proc.pid)
                peaks["peak_rss_mb"] = max(peaks["peak_rss_mb"], sum(sizes.values()))
                peaks["peak_pss_mb"] = max(peaks["peak_pss_mb"],
                                           sum(pss_mb(pid) for pid in sizes))
                for pid, mb in sizes.items():
                    # not cached: the launch scripts exec the JVM under their own pid
                    key = f"peak_{role(pid, proc.pid)}_mb"
                    peaks[key] = max(peaks.get(key, 0.0), mb)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        stop.set()
        sampler.join()
    return {"exit": code, "seconds": time.perf_counter() - began, **peaks}


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


def floor_child(args: argparse.Namespace) -> None:
    """The design's floor (the ``--floor`` child): the same read and split, then the
    training ratings grouped by a hash block of each side in turn, through a grouped pandas
    UDF that loads the solver's libraries (NumPy, pandas, Arrow, Numba, SciPy: what a
    half-step's Python worker loads) and counts its rows batch by batch; the counts are
    written to Parquet.  No factor is computed: what any job of this shape keeps resident,
    whatever its math."""
    from pyspark.sql import functions as F

    from mfspark.app.session import get_session
    from mfspark.data.split import random_split

    def count(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import mfspark.core.block  # noqa: F401 - the solver's libraries, loaded as a half-step does

        block, rows = -1, 0
        for pdf in batches:
            block, rows = int(pdf["block"].iloc[0]), rows + len(pdf)
        yield pd.DataFrame({"block": [block], "rows": [rows]})

    spark = get_session("local[2]", "floor-scale")
    ratings = spark.read.parquet(args.data).select("user", "item", "rating")
    train, _ = random_split(ratings, 0.1, args.seed)
    blocks = 2 * spark.sparkContext.defaultParallelism
    for side in ("user", "item"):
        (train.withColumn("block", F.pmod(F.hash(side), F.lit(blocks)))
         .groupBy("block").applyInPandas(count, "block long, rows long")
         .write.mode("overwrite").parquet(f"{args.out}/floor-{side}"))
    print("floor: done")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="planted ratings (Parquet), made if missing")
    p.add_argument("--out", default="output/scale")
    p.add_argument("--users", type=int, default=1_700_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--ratings", type=int, default=6_000_000)
    p.add_argument("--ranks", type=int, nargs="+", default=[64])
    p.add_argument("--rank", type=int, help=argparse.SUPPRESS)  # the --mllib child's
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--driver-memory", metavar="SIZE",
                   help="spark.driver.memory of both jobs, e.g. 12g (default: Spark's, 1g)")
    p.add_argument("--curve", type=int, nargs="+", metavar="USERS",
                   help="the memory scale curve over these user counts (at the first rank)")
    p.add_argument("--ratings-per-user", type=float, default=3.5,
                   help="ratings per user of the --curve's data (default 3.5)")
    p.add_argument("--plot", metavar="JSON", help="print and draw a curve saved by --curve "
                   "(its curve.json) again")
    p.add_argument("--floor", action="store_true",
                   help="also run the design's floor: the same read and split, then grouped "
                        "pandas UDFs that load the solver's libraries and only count rows")
    p.add_argument("--float32", action="store_true",
                   help="also run mfspark's job with float32 factors between half-steps "
                        "(jobs/train.py --factor-dtype float32)")
    p.add_argument("--mllib", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--floor-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mllib:
        mllib_child(args)
        return
    if args.floor_child:
        floor_child(args)
        return
    if not args.data and not args.plot:
        p.error("--data is required (unless --plot)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.curve:
        curve(args)
        return
    if args.plot:
        report(json.loads(Path(args.plot).read_text()), Path(args.plot).with_suffix(".png"))
        return
    generate(args.data, args.users, args.items, args.ratings, args.seed)
    for rank in args.ranks:
        compare_jobs(args, args.data, rank)


def generate(data: str, users: int, items: int, ratings: int, seed: int) -> None:
    """Planted ratings into ``data`` (``jobs/generate.py``), unless it holds some already."""
    if not list(Path(data).glob("*.parquet")):
        subprocess.run([sys.executable, "jobs/generate.py", "--out", data, "--users",
                        str(users), "--items", str(items), "--ratings", str(ratings),
                        "--seed", str(seed), "--master", "local[2]", "--overwrite"],
                       check=True, cwd=ROOT)


def compare_jobs(args: argparse.Namespace, data: str, rank: int) -> dict[str, dict]:
    """Both whole jobs on ``data`` at ``rank``, one after the other, and their ratios."""
    python = sys.executable
    out = f"{args.out}/{Path(data).name}"

    def mfspark(name: str, *options: str) -> list[str]:
        return [python, "jobs/train.py", "--ratings", data, "--format", "parquet",
                "--rank", str(rank), "--iterations", str(args.iterations),
                "--seed", str(args.seed), "--master", "local[2]",
                "--out", f"{out}/{name}", "--overwrite", *options]

    systems = {
        "mfspark": mfspark("mfspark"),
        "mllib": [python, __file__, "--mllib", "--data", data, "--out", out,
                  "--rank", str(rank), "--iterations", str(args.iterations),
                  "--seed", str(args.seed)],
    }
    if args.float32:
        systems["mfspark-float32"] = mfspark("mfspark-float32", "--factor-dtype", "float32")
    if args.floor:
        systems["floor"] = [python, __file__, "--floor-child", "--data", data, "--out", out,
                            "--seed", str(args.seed)]
    env = dict(os.environ)
    if args.driver_memory:
        env["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {args.driver_memory} pyspark-shell"
    Path(out).mkdir(parents=True, exist_ok=True)
    results = {}
    for name, command in systems.items():
        log = Path(out) / f"{name}-rank-{rank}.log"
        results[name] = r = measured(command, log, env)
        r["rmse"] = test_rmse(log)
        print(f"rank {rank:3d} {name:15s} exit {r['exit']}  {r['seconds']:7.1f} s  peak RSS "
              f"{r['peak_rss_mb']:7.0f} MiB (JVM {r['peak_jvm_mb']:.0f}, Python driver "
              f"{r['peak_driver_mb']:.0f}, largest Python worker {r['peak_worker_mb']:.0f}), "
              f"PSS {r['peak_pss_mb']:.0f} MiB  test RMSE {r['rmse']}  (log: {log})",
              flush=True)
    b = results["mllib"]
    for name in results.keys() - {"mllib"}:
        a = results[name]
        print(f"rank {rank}, {args.iterations} iterations, {data}: {name} / MLlib "
              f"time = {a['seconds'] / b['seconds']:.2f}, peak RSS = "
              f"{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}, peak PSS = "
              f"{a['peak_pss_mb'] / max(b['peak_pss_mb'], 1e-9):.2f}", flush=True)
    return results


def curve(args: argparse.Namespace) -> None:
    """The peaks of both jobs against the number of users: a table, ``OUT/curve.json`` and
    the plot ``OUT/curve.png``."""
    rank = args.ranks[0]
    rows = []
    for users in args.curve:
        data = f"{args.data}/users-{users}"
        ratings = round(users * args.ratings_per_user)
        generate(data, users, args.items, ratings, args.seed)
        rows.append({"users": users, "ratings": ratings, **compare_jobs(args, data, rank)})
    memory = f"driver memory {args.driver_memory}" if args.driver_memory else "Spark's defaults"
    record = {"settings": f"rank {rank}, {args.iterations} iterations, {args.items} items, "
                          f"local[2], {memory}", "rows": rows}
    (Path(args.out) / "curve.json").write_text(json.dumps(record, indent=1))
    report(record, Path(args.out) / "curve.png")


def report(record: dict, path: Path) -> None:
    """Print a curve's table (peak RSS in MiB) and draw it."""
    print(f"\n{record['settings']}; peak RSS in MiB")
    print(f"{'users':>9s} {'ratings':>10s} | {'system':8s} {'exit':>4s} {'seconds':>8s} "
          f"{'tree':>6s} {'JVM':>6s} {'driver':>6s} {'worker':>6s}")
    for row in record["rows"]:
        for name in SYSTEMS:
            r = row[name]
            print(f"{row['users']:9d} {row['ratings']:10d} | {name:8s} {r['exit']:4d} "
                  f"{r['seconds']:8.1f} {r['peak_rss_mb']:6.0f} {r['peak_jvm_mb']:6.0f} "
                  f"{r['peak_driver_mb']:6.0f} {r['peak_worker_mb']:6.0f}")
    plot(record, path)


SYSTEMS = ("mfspark", "mllib")


def plot(record: dict, path: Path) -> None:
    """Peak memory of the whole tree and of the largest processes against users, both
    systems; a run that failed is left out of its line and named below the plot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (the report extra): no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4.8))
    failed = []
    for name, style in zip(SYSTEMS, ("-", "--")):
        shown = "MLlib" if name == "mllib" else name
        done = [row for row in record["rows"] if row[name]["exit"] == 0]
        failed += [f"{shown} at {row['users'] / 1e6:g}M users (exit {row[name]['exit']})"
                   for row in record["rows"] if row[name]["exit"] != 0]
        for key, label, marker in (("peak_rss_mb", "whole tree", "o"),
                                   ("peak_jvm_mb", "JVM", "s"),
                                   ("peak_worker_mb", "largest Python worker", "^")):
            if name == "mllib" and key == "peak_worker_mb":
                continue
            ax.plot([row["users"] / 1e6 for row in done], [row[name][key] for row in done],
                    style, marker=marker, label=f"{shown}: {label}")
    ax.set_xlabel("users (millions)")
    ax.set_ylabel("peak resident memory (MiB)")
    ax.set_title(f"Peak memory against users\n({record['settings']})", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if failed:
        fig.text(0.01, 0.01, "failed: " + "; ".join(failed), fontsize=7)
    fig.tight_layout(rect=(0, 0.04 if failed else 0, 1, 1))
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


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
