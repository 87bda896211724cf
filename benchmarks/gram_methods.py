"""Time the block solver's Gram methods against each other, per rank (no Spark).

``python benchmarks/gram_methods.py --users 50000 --items 20000 --ratings 5000000 --ranks 5 10 16 24 50 100``

builds planted synthetic ratings in memory (the shape of ``jobs/generate.py --size 5m``),
then times one half-step of each side, single-threaded, with every Gram method
(:data:`mfspark.core.normal.GRAM_METHODS`) and prints what ``auto`` picks.  This is how
:data:`mfspark.core.normal.SPARSE_MAX_K1` and :data:`mfspark.core.normal.SPARSE_MAX_WORK`
were chosen, and how the compiled loop was measured the fastest.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, as one Spark task has

import numpy as np  # noqa: E402

try:
    import mfspark  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.core.block import solve_block  # noqa: E402
from mfspark.core.normal import GRAM_METHODS, gather_limit, gram_method  # noqa: E402
from mfspark.core.objective import Objective  # noqa: E402
from mfspark.core.state import init_factors  # noqa: E402
from mfspark.data.synthetic import (PlantedModel, _ratings_for, planted_factors,  # noqa: E402
                                    user_counts)


def ratings(model: PlantedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = 1.0 / (np.arange(model.num_items) + 10.0) ** model.zipf
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    frame = _ratings_for(np.arange(model.num_users), model, user_counts(model),
                         planted_factors(model), cdf)
    return (frame["user"].to_numpy(), frame["item"].to_numpy(),
            frame["rating"].to_numpy().astype(np.float64))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--ratings", type=int, default=5_000_000)
    p.add_argument("--ranks", type=int, nargs="+", default=[5, 10, 16, 24, 50, 100])
    p.add_argument("--methods", nargs="+", default=[m for m in GRAM_METHODS if m != "auto"])
    args = p.parse_args(argv)
    users, items, values = ratings(PlantedModel(num_users=args.users, num_items=args.items,
                                                num_ratings=args.ratings))
    print(f"{len(values)} ratings, {args.users} users x {args.items} items; seconds per "
          "half-step, one core")
    print("| side | rank | " + " | ".join(args.methods) + " | auto picks |")
    print("|---|---|" + "---|" * (len(args.methods) + 1))
    results = []
    for side, rows, cols in (("user", users, items), ("item", items, users)):
        order = np.lexsort((values, cols, rows))
        r, c, y = rows[order], cols[order], values[order]
        n_fixed = int(c.max()) + 1
        for rank in args.ranks:
            fixed, bias = init_factors(n_fixed, rank, 0), np.zeros(n_fixed)
            max_gather = gather_limit(128, rank)
            times = {}
            for method in args.methods:
                began = time.perf_counter()
                solve_block(r, c, y, fixed, bias, 3.5, Objective(0.1), max_gather,
                            method=method)
                times[method] = time.perf_counter() - began
            picked = gram_method(rank + 1, n_fixed, max_gather,
                                 mean_count=len(r) / len(np.unique(r)))
            results.append({"side": side, "rank": rank, **times, "auto": picked})
            print(f"| {side} | {rank} | " + " | ".join(f"{times[m]:.2f}" for m in args.methods)
                  + f" | {picked} |", flush=True)
    return results


if __name__ == "__main__":
    main()
