"""Time the block solver's Gram methods against each other, per rank (no Spark).

``python benchmarks/gram_methods.py --users 50000 --items 20000 --ratings 5000000 --ranks 5 10 16 24 50 100``

``python benchmarks/gram_methods.py --dual --ranks 20 30 50 100 200``

The first builds planted synthetic ratings in memory (the shape of ``jobs/generate.py --size
5m``), then times one half-step of each side, single-threaded, with every Gram method
(:data:`mfspark.solve.GRAM_METHODS`) and prints what ``auto`` picks.  This is how
:data:`mfspark.solve.SPARSE_MAX_K1` and :data:`mfspark.solve.SPARSE_MAX_WORK` were chosen.
The second times, per rank and per rating count ``n``, a row solved in dual form against
the primal form (microseconds per row, 2,000 random rows of that count): how
:func:`mfspark.solve.dual_limit` was chosen.
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

from mfspark.solve import (GRAM_METHODS, _row_solve, augmented, dual_limit,  # noqa: E402
                           gather_limit, gram_method, init_factors, solve_block)
from mfspark.synthetic import PlantedModel, _ratings_for, planted_factors, user_counts  # noqa: E402


def ratings(model: PlantedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = 1.0 / (np.arange(model.num_items) + 10.0) ** model.zipf
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    frame = _ratings_for(np.arange(model.num_users), model, user_counts(model),
                         planted_factors(model), cdf)
    return (frame["user"].to_numpy(), frame["item"].to_numpy(),
            frame["rating"].to_numpy().astype(np.float64))


def dual_crossover(ranks: list[int], counts: list[int], rows: int = 2000) -> list[dict]:
    """Microseconds per row of the dual and the primal form, per rank and rating count."""
    rng = np.random.default_rng(0)
    print("microseconds per row, one core; dual_limit(K + 1) in the last column")
    print("| rank | n | dual | primal | dual_limit |")
    print("|---|---|---|---|---|")
    results = []
    for rank in ranks:
        F = augmented(init_factors(20_000, rank, 0))
        for n in (c for c in counts if c <= rank + 1):
            per_row = np.full(rows, n)
            start = np.arange(rows) * n
            cols, y = rng.integers(0, len(F), rows * n), rng.standard_normal(rows * n)
            lam = 0.1 * per_row.astype(np.float64)
            times = {}
            for form, below in (("dual", n + 1), ("primal", 0)):
                began = time.perf_counter()
                _row_solve(F, cols, y, start, per_row, lam, 1 << 24, dual_below=below)
                times[form] = (time.perf_counter() - began) / rows * 1e6
            results.append({"rank": rank, "n": n, **times, "dual_limit": dual_limit(rank + 1)})
            print(f"| {rank} | {n} | {times['dual']:.1f} | {times['primal']:.1f} | "
                  f"{dual_limit(rank + 1)} |", flush=True)
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--ratings", type=int, default=5_000_000)
    p.add_argument("--ranks", type=int, nargs="+", default=[5, 10, 16, 24, 50, 100])
    p.add_argument("--methods", nargs="+", default=[m for m in GRAM_METHODS if m != "auto"])
    p.add_argument("--dual", action="store_true",
                   help="time the dual against the primal form per rating count instead")
    p.add_argument("--counts", type=int, nargs="+",
                   default=[5, 10, 20, 30, 40, 50, 60, 80, 100, 150, 200])
    args = p.parse_args(argv)
    if args.dual:
        return dual_crossover(args.ranks, args.counts)
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
                solve_block(r, c, y, fixed, bias, 3.5, 0.1, "count", max_gather, method=method)
                times[method] = time.perf_counter() - began
            picked = gram_method(rank + 1, n_fixed, max_gather,
                                 mean_count=len(r) / len(np.unique(r)))
            results.append({"side": side, "rank": rank, **times, "auto": picked})
            print(f"| {side} | {rank} | " + " | ".join(f"{times[m]:.2f}" for m in args.methods)
                  + f" | {picked} |", flush=True)
    return results


if __name__ == "__main__":
    main()
