"""Implicit ALS on MovieLens 100K over many seeds, in one process: signal or seed noise?

``benchmarks/implicit.py`` fits both systems in Spark, a few seeds at a time.  This script
runs the same implicit half-steps in NumPy (:func:`mfspark.core.block.solve_block` on all
rows at once, the block solver the Spark job runs), on the same per-user holdout, with
the same ranking (training items excluded, top ``--k``) and MLlib's ``RankingEvaluator``
definitions of precision@k and NDCG@k re-computed in NumPy, for hundreds of seeds in minutes.
Its ``mfspark`` variant is mfspark's fit (``ALS(implicitPrefs=True, seed=s)``: users start
from :func:`mfspark.core.state.seeded_factors` of their IDs, items are solved first), so its
numbers for a seed are those ``benchmarks/implicit.py`` prints for mfspark at that seed.

Variants (one thing at a time):

- ``mfspark``: users start ``N(0, 1/K)``, items solved first (MLlib's order: the last
  half-step solves the users), float64 factors;
- ``users-first``: the items start ``N(0, 1/K)`` and users are solved first (the explicit
  model's order, and mfspark's implicit order before it took MLlib's);
- ``mllib-like``: every start vector Gaussian scaled to unit norm (MLlib's ``initialize``),
  items solved first, factors rounded to float32 after every half-step (MLlib stores
  ``Array[Float]``);
- ``unit-norm``: mfspark's start directions scaled to unit norm, items first: with the
  ``mfspark`` variant a paired comparison (common random numbers) of the start's norm alone;
- ``biases``: ``ALS(implicitPrefs=True, biases=True, seed=s)``, the ``mfspark`` variant
  with a user and an item bias (same start factors, zero start biases): with ``mfspark`` a
  paired comparison of the biases alone.

    .venv/bin/python benchmarks/implicit_seeds.py \\
        --seeds 200 [--variants mfspark users-first mllib-like unit-norm]

``--against mllib.json`` (the ``--json`` rows of ``benchmarks/implicit.py --systems mllib``,
MLlib fitted in Spark, one row per seed) compares each variant's mean with MLlib's as a
non-inferiority test: the difference of the means (two independent samples of seeds,
Welch's standard error), its one-sided 95% lower bound, and whether that bound is above
``-margin`` (``--margin``, default 0.001): "not worse than MLlib by more than the margin".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfspark.core.reference import implicit_dense, implicit_objective  # noqa: E402
from mfspark.core.state import seeded_factors  # noqa: E402
from mfspark.core.block import solve_block  # noqa: E402
from mfspark.core.objective import Objective  # noqa: E402

VARIANTS = ("mfspark", "users-first", "mllib-like", "unit-norm", "biases")


def per_user_holdout(ratings: pd.DataFrame, fraction: float, seed: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``round(fraction * n_u)`` random ratings of every user (seeded); also
    ``benchmarks/implicit.py``'s split (pandas only, no pyspark)."""
    rng = np.random.default_rng(seed)
    key = rng.random(len(ratings))
    rank = pd.Series(key).groupby(ratings["user"].to_numpy()).rank(method="first").to_numpy()
    size = ratings.groupby("user")["user"].transform("size").to_numpy()
    test = rank <= np.round(fraction * size)
    return ratings[~test].reset_index(drop=True), ratings[test].reset_index(drop=True)


class Problem:
    """The training ratings as index arrays, and the held-out positives per user."""

    def __init__(self, train: pd.DataFrame, test: pd.DataFrame, alpha: float, reg: float):
        self.alpha, self.reg = alpha, reg
        uid, iid = np.sort(train["user"].unique()), np.sort(train["item"].unique())
        self.n_users, self.n_items = len(uid), len(iid)
        # integral IDs are the Spark job's keys: its seeded start is a function of them
        self.user_keys, self.item_keys = uid.astype(np.int64), iid.astype(np.int64)
        self.u = np.searchsorted(uid, train["user"].to_numpy())
        self.i = np.searchsorted(iid, train["item"].to_numpy())
        self.r = train["rating"].to_numpy(dtype=np.float64)
        self.P, self.C = implicit_dense(self.u, self.i, self.r, self.n_users, self.n_items, alpha)
        self.seen = np.zeros((self.n_users, self.n_items), dtype=bool)
        self.seen[self.u, self.i] = True
        relevant = test[test["rating"] >= 4].groupby("user")["item"].apply(set)
        icol = dict(zip(iid, range(len(iid))))
        self.relevant = [(int(np.searchsorted(uid, u)), {icol[i] for i in items if i in icol},
                          len(items)) for u, items in relevant.items() if u in set(uid)]

    def half_step(self, side: str, fixed: np.ndarray, cg_steps: int = 0,
                  previous: np.ndarray | None = None, biases: bool = False) -> np.ndarray:
        """One side solved given the other; with ``biases`` both carry their bias as a last
        column (``fixed``, ``previous`` and the result)."""
        rows, cols, n = ((self.u, self.i, self.n_users) if side == "user"
                         else (self.i, self.u, self.n_items))
        factors, bias = (fixed[:, :-1], fixed[:, -1]) if biases else (fixed, np.zeros(len(fixed)))
        objective = Objective(self.reg, biases=biases, alpha=self.alpha, cg_steps=cg_steps)
        sol = solve_block(rows, cols, self.r, factors, bias, 0.0, objective, previous=previous)
        out = np.zeros((n, fixed.shape[1]))
        out[sol.rows] = np.column_stack([sol.factors, sol.bias]) if biases else sol.factors
        return out

    def ranking(self, U: np.ndarray, V: np.ndarray, k: int) -> tuple[float, float]:
        """Mean precision@k and NDCG@k over the users with a held-out positive, as MLlib's
        ``RankingMetrics`` (binary relevance, ``1 / log(i + 2)`` discounts, ideal DCG over
        ``min(|relevant|, k)`` positions)."""
        scores = U @ V.T
        scores[self.seen] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        discount = 1.0 / np.log(np.arange(k) + 2.0)
        precision, ndcg = [], []
        for u, found, n_relevant in self.relevant:
            hits = np.fromiter((j in found for j in top[u]), dtype=float, count=k)
            precision.append(hits.sum() / k)
            ndcg.append(hits @ discount / discount[:min(n_relevant, k)].sum())
        return float(np.mean(precision)), float(np.mean(ndcg))


def unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def fit(problem: Problem, variant: str, seed: int, rank: int, iterations: int,
        cg_steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One seed's fit; ``cg_steps``: conjugate-gradient half-steps from the solved side's
    current factors (``ALS(cgSteps=...)``) instead of exact solves.  The ``biases`` variant
    returns each side's bias as a last column (:func:`model_parts`)."""
    users_first = variant == "users-first"
    if variant == "biases":  # mfspark's start and order; zero start biases
        U = np.column_stack([seeded_factors(problem.user_keys, rank, seed),
                             np.zeros(problem.n_users)])
        V = np.zeros((problem.n_items, rank + 1))
        for _ in range(iterations):
            V = problem.half_step("item", U, cg_steps, V, biases=True)
            U = problem.half_step("user", V, cg_steps, U, biases=True)
        return U, V
    if variant == "mllib-like":
        rng = np.random.default_rng(seed)
        U = unit_rows(rng.standard_normal((problem.n_users, rank)))
        V = unit_rows(rng.standard_normal((problem.n_items, rank)))
        store = lambda X: X.astype(np.float32).astype(np.float64)  # noqa: E731
    else:  # as mfspark.engine.loop.fit: the seeded side seeded by ID, the other at zero
        U = (np.zeros((problem.n_users, rank)) if users_first
             else seeded_factors(problem.user_keys, rank, seed))
        V = (seeded_factors(problem.item_keys, rank, seed) if users_first
             else np.zeros((problem.n_items, rank)))
        if variant == "unit-norm":
            U = unit_rows(U)
        store = lambda X: X  # noqa: E731
    for _ in range(iterations):
        if users_first:
            U = store(problem.half_step("user", V, cg_steps, U))
            V = store(problem.half_step("item", U, cg_steps, V))
        else:
            V = store(problem.half_step("item", U, cg_steps, V))
            U = store(problem.half_step("user", V, cg_steps, U))
    return U, V


def model_parts(U: np.ndarray, V: np.ndarray, variant: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(U, V, user_bias, item_bias)`` of a :func:`fit` (no biases: None, None)."""
    if variant != "biases":
        return U, V, None, None
    return U[:, :-1], V[:, :-1], U[:, -1], V[:, -1]


def scoring(U: np.ndarray, V: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """Matrices whose product is the fit's score ``u . v (+ b_u + c_i)``, for ranking."""
    X, Y, b, c = model_parts(U, V, variant)
    if b is None:
        return X, Y
    return (np.column_stack([X, b, np.ones(len(X))]),
            np.column_stack([Y, np.ones(len(Y)), c]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"
                                         / "data" / "ml-100k" / "u.data"))
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seeds", type=int, default=100, help="model seeds 0 .. N-1")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--cg-steps", type=int, default=0,
                   help="conjugate-gradient steps per row instead of exact solves (0: exact)")
    p.add_argument("--csv", help="also write one row per (variant, seed) to this file")
    p.add_argument("--against", help="benchmarks/implicit.py --json rows: compare every "
                                     "variant with MLlib's seeds there (non-inferiority)")
    p.add_argument("--margin", type=float, default=0.001,
                   help="non-inferiority margin for --against (absolute, per metric)")
    args = p.parse_args()
    ratings = pd.read_csv(args.data, sep="\t", names=["user", "item", "rating", "ts"])
    ratings = ratings[["user", "item", "rating"]].astype({"rating": "float64"})
    problem = Problem(*per_user_holdout(ratings, args.holdout, args.split_seed), args.alpha,
                      args.reg)
    k = args.k
    rows = []
    for variant in args.variants:
        began = time.perf_counter()
        for seed in range(args.seeds):
            U, V = fit(problem, variant, seed, args.rank, args.iterations, args.cg_steps)
            prec, ndcg = problem.ranking(*scoring(U, V, variant), k)
            X, Y, b, c = model_parts(U, V, variant)
            rows.append({"variant": variant, "cg_steps": args.cg_steps, "seed": seed,
                         f"precision@{k}": prec,
                         f"ndcg@{k}": ndcg, "train_objective": implicit_objective(
                             problem.P, problem.C, X, Y, args.reg, "count", b, c)})
        print(f"{variant}: {args.seeds} fits in {time.perf_counter() - began:.0f} s",
              flush=True)
    frame = pd.DataFrame(rows)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    cols = [f"precision@{k}", f"ndcg@{k}", "train_objective"]
    groups = frame.groupby("variant", sort=False)[cols]
    table = groups.mean().join(groups.sem(), rsuffix=" se")
    print(f"\nrank {args.rank}, regParam {args.reg}, alpha {args.alpha}, {args.iterations} "
          f"iterations, seeds 0-{args.seeds - 1}: mean and standard error")
    print(table[[c + s for c in cols for s in ("", " se")]].to_string(float_format="%.5f"))
    for other in ("unit-norm", "biases"):  # same start directions: paired
        if {"mfspark", other} <= set(args.variants):
            a, b = (frame[frame["variant"] == v].set_index("seed")[cols]
                    for v in ("mfspark", other))
            d = b - a
            print(f"\npaired, {other} minus mfspark (same start directions):")
            for c in cols:
                print(f"  {c}: {d[c].mean():+.5f} +- {d[c].sem():.5f}")
    if args.against:
        reference = mllib_rows(Path(args.against), args)
        for variant in args.variants:
            ours = frame[frame["variant"] == variant]
            print(f"\n{variant} (seeds 0-{args.seeds - 1}) against MLlib in Spark "
                  f"({len(reference)} seeds, {args.against}), margin {args.margin}:")
            for c in cols[:2]:
                print("  " + non_inferiority(c, ours[c].to_numpy(), reference[c].to_numpy(),
                                             args.margin))


#: One-sided 95% normal quantile: the lower confidence bound of a difference.
Z95 = 1.6449


def non_inferiority(name: str, ours: np.ndarray, theirs: np.ndarray, margin: float) -> str:
    """One line: the difference of the means (``ours - theirs``), Welch's standard error, its
    one-sided 95% lower bound and the verdict against ``-margin``."""
    diff = ours.mean() - theirs.mean()
    se = float(np.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs)))
    low = diff - Z95 * se
    verdict = "not worse by more than the margin" if low > -margin else "NOT shown"
    return (f"{name}: {ours.mean():.5f} vs {theirs.mean():.5f}, difference {diff:+.5f} "
            f"+- {se:.5f}, 95% lower bound {low:+.5f}: {verdict}")


def mllib_rows(path: Path, args: argparse.Namespace) -> pd.DataFrame:
    """MLlib's implicit rows of a ``benchmarks/implicit.py --json`` file, checked to have
    been fitted with this run's settings (one row per seed)."""
    frame = pd.DataFrame(json.loads(path.read_text()))
    frame = frame[(frame["part"] == "implicit") & (frame["system"] == "mllib")
                  & (~frame["nonnegative"].astype(bool))]
    settings = {"alpha": args.alpha, "rank": args.rank, "reg": args.reg,
                "iterations": args.iterations, "holdout": args.holdout,
                "split_seed": args.split_seed}
    for name, value in settings.items():
        if name not in frame or not (frame[name] == value).all():
            raise SystemExit(f"{path}: MLlib's rows were not all fitted with {name} = {value}")
    if frame.empty:
        raise SystemExit(f"{path}: no MLlib implicit rows (nonnegative=False)")
    if frame["seed"].duplicated().any():
        raise SystemExit(f"{path}: a seed appears twice")
    return frame


if __name__ == "__main__":
    main()
