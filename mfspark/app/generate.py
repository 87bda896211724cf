"""Generate seeded synthetic ratings from a planted biased low-rank model, as Parquet.

``python jobs/generate.py --size 5m --out data/synthetic-5m`` (or under spark-submit).
Prints the planted model's own RMSE: the floor any method can reach on these data.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from mfspark.io.ratings import write_ratings
from mfspark.app.cli import add_debug_flag, job
from mfspark.app.session import get_session
from mfspark.data.synthetic import PlantedModel, floor_rmse, generate

#: Named sizes: (users, items, ratings); 20m is shaped like MovieLens 20M.
SIZES = {"100k": (1_000, 1_700, 100_000), "1m": (6_000, 4_000, 1_000_000),
         "5m": (50_000, 20_000, 5_000_000), "20m": (140_000, 27_000, 20_000_000)}


@job
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="generate.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output Parquet directory")
    p.add_argument("--size", choices=SIZES, default="100k", help="named size (default 100k)")
    p.add_argument("--users", type=int, help="number of users (overrides --size)")
    p.add_argument("--items", type=int, help="number of items (overrides --size)")
    p.add_argument("--ratings", type=int, help="target number of ratings (overrides --size)")
    p.add_argument("--rank", type=int, default=10, help="planted rank (default 10)")
    p.add_argument("--noise", type=float, default=0.5, help="noise std (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    p.add_argument("--overwrite", action="store_true")
    add_debug_flag(p)
    args = p.parse_args(argv)
    users, items, ratings = SIZES[args.size]
    model = PlantedModel(num_users=args.users or users, num_items=args.items or items,
                         num_ratings=args.ratings or ratings, rank=args.rank,
                         noise=args.noise, seed=args.seed)
    spark = get_session(args.master, app_name="mfspark-generate")
    began = time.perf_counter()
    write_ratings(generate(spark, model), args.out, overwrite=args.overwrite)
    written = spark.read.parquet(args.out)
    print(f"wrote {written.count()} ratings ({model.num_users} users x {model.num_items} items, "
          f"planted rank {model.rank}) to {args.out} in {time.perf_counter() - began:.1f}s")
    print(f"planted model RMSE (the floor): {floor_rmse(written):.4f}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(model).items()))
