"""Where one half-step's time goes: the grouped-UDF stage with and without the math.

``SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/profile_halfstep.py --ratings DIR``

Partitions the ratings once (timed), then times the user half-step several ways on the same
packed blocks, each twice (the first run of a kind warms Python workers up):

- ``full``: what :func:`mfspark.engine.halfstep.half_step` does (solve, write Parquet);
- ``empty``: the same stage with a UDF that unpacks its block and returns nothing (broadcast,
  Python workers, Arrow hand-off, an empty Parquet write): the fixed cost;
- ``noop-write``: the full solve, output discarded by Spark's ``noop`` sink (so ``full`` minus
  this is the Parquet write);
- ``handoff``: the ``empty`` UDF into the ``noop`` sink: the grouped stage and the hand-off of
  the packed blocks to Python alone;
- ``math``: the solver alone on the driver, all blocks one after the other (CPU seconds);
- a plain JVM aggregation over the cached blocks, and reading the factors back
  (:func:`mfspark.io.factors.read_side`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.app.session import get_session  # noqa: E402
from mfspark.config import ALSParams  # noqa: E402
from mfspark.core.block import BlockSolution, solve_block  # noqa: E402
from mfspark.core.normal import gather_limit  # noqa: E402
from mfspark.core.objective import Objective  # noqa: E402
from mfspark.core.state import Side, init_factors  # noqa: E402
from mfspark.data.indexing import build_index  # noqa: E402
from mfspark.data.prepare import partition_ids  # noqa: E402
from mfspark.engine.blocks import unpack  # noqa: E402
from mfspark.evaluation.benchmark import load_split  # noqa: E402
from mfspark.io.factors import (FACTOR_WRITE_OPTIONS, SOLUTION_SCHEMA,  # noqa: E402
                                pack_solution, read_side)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratings", required=True)
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--out", default="/tmp/mfspark-profile")
    p.add_argument("--master", default="local[2]")
    args = p.parse_args(argv)
    spark = get_session(args.master, app_name="mfspark-profile")
    sc = spark.sparkContext
    data = load_split(spark, args.ratings, 0.1, 0)
    users, items = build_index(spark, data.train, "user"), build_index(spark, data.train, "item")
    timings: dict[str, float] = {}
    began = time.perf_counter()
    parts = partition_ids(data.train, users, items,
                          ALSParams(rank=args.rank, num_user_blocks=args.blocks,
                                    num_item_blocks=args.blocks))
    parts.by_item.unpersist()
    by_user = parts.by_user
    timings["partition (both sides)"] = time.perf_counter() - began
    fixed = Side(init_factors(len(items), args.rank, 0), np.zeros(len(items)), items.counts)
    max_gather = gather_limit(128, args.rank)
    path = f"{args.out}/user"

    def stage(kind: str) -> float:
        state = sc.broadcast((fixed.factors, fixed.bias))

        def solve(block: pd.DataFrame) -> pd.DataFrame:
            factors, bias = state.value
            rows, cols, ratings = unpack(block)
            if kind in ("empty", "handoff"):
                empty = np.zeros(0)
                return pack_solution(0, BlockSolution(np.zeros(0, np.int64),
                                                      np.zeros((0, args.rank)), empty, empty,
                                                      empty, np.zeros(0, np.int64)))
            sol = solve_block(rows, cols, ratings, factors, bias, 3.5, Objective(0.1),
                              max_gather)
            return pack_solution(0, sol)

        began = time.perf_counter()
        writer = by_user.groupBy("block").applyInPandas(solve, SOLUTION_SCHEMA).write
        if kind in ("noop-write", "handoff"):
            writer.format("noop").mode("overwrite").save()
        else:
            writer.mode("overwrite").options(**FACTOR_WRITE_OPTIONS).parquet(path)
        state.destroy()
        return time.perf_counter() - began

    for kind in ("full", "empty", "noop-write", "handoff"):
        for run in (1, 2):
            timings[f"{kind} (run {run})"] = stage(kind)
    blocks = by_user.toPandas()
    began = time.perf_counter()
    for _, block in blocks.groupby("block"):
        rows, cols, ratings = unpack(block)
        solve_block(rows, cols, ratings, fixed.factors, fixed.bias, 3.5, Objective(0.1),
                    max_gather)
    timings["math (CPU, all blocks)"] = time.perf_counter() - began
    began = time.perf_counter()
    by_user.groupBy("block").count().collect()
    timings["JVM aggregation over the cached blocks"] = time.perf_counter() - began
    began = time.perf_counter()
    read_side(spark, path, users.counts, args.rank)
    timings["read_side"] = time.perf_counter() - began
    print(f"{args.ratings}, rank {args.rank}, {args.blocks} blocks, {args.master}:")
    for name, seconds in timings.items():
        print(f"  {name:45s} {seconds:6.2f} s")
    return timings


if __name__ == "__main__":
    main()
