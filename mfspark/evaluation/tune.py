"""Model selection: k-fold cross-validation (or one holdout) over a search space.

The work is arranged so that nothing is computed twice:

- each fold's training data is indexed and partitioned (:func:`mfspark.data.prepare.prepare`)
  once and shared by every candidate;
- candidates that differ only in ``iterations`` share one fit: the fit runs iteration by
  iteration (:func:`mfspark.engine.loop.fit` resumed from its own state) to the largest
  requested
  count, and each requested count is scored when the fit passes it;
- with ``patience``, a fit stops early once the validation RMSE has not improved for that
  many iterations; its larger iteration counts are then not evaluated on that fold, and such
  candidates are reported as ``stopped early`` and never chosen as best.

Validation ratings are scored after every iteration inside the fit's own half-steps (RMSE
and MAE, predictions clipped when asked); ranking metrics only at the requested counts,
when asked.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from mfspark.config import JobConfig
from mfspark.data import split
from mfspark.data.prepare import load, prepare
from mfspark.data.validate import RatingStats
from mfspark.engine.loop import Fit, fit
from mfspark.errors import MfsparkValueError
from mfspark.evaluation.grid import TUNABLE, Candidate
from mfspark.io import fs

log = logging.getLogger("mfspark")

#: Metrics where lower is better; the ranking metrics are higher-is-better.
LOWER_IS_BETTER = ("rmse", "mae")
HOLDOUTS = ("random", "user", "temporal")


class TuneError(MfsparkValueError):
    """Model selection was asked for with bad settings."""


@dataclass(frozen=True)
class Protocol:
    """How the ratings are split for validation."""

    folds: int | None = 5
    """k of k-fold cross-validation (None: a single holdout)."""
    holdout: str = "random"
    """With ``folds=None``: ``random``, ``user`` (per-user fraction) or ``temporal``."""
    test_fraction: float = 0.2
    """Holdout size."""
    seed: int = 0
    """Seed of the folds or of the holdout."""

    def __post_init__(self) -> None:
        if self.folds is not None and (not isinstance(self.folds, int) or self.folds < 2):
            raise TuneError(f"cross-validation needs folds >= 2, got {self.folds!r}")
        if self.holdout not in HOLDOUTS:
            raise TuneError(f"holdout must be one of {HOLDOUTS}, got {self.holdout!r}")
        if not 0 < self.test_fraction < 1:
            raise TuneError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")

    def splits(self, ratings: DataFrame) -> list[tuple[DataFrame, DataFrame]]:
        if self.folds is not None:
            return split.kfold(ratings, self.folds, self.seed)
        if self.holdout == "user":
            return [split.user_holdout(ratings, fraction=self.test_fraction, seed=self.seed)]
        if self.holdout == "temporal":
            return [split.temporal_split(ratings, test_fraction=self.test_fraction)]
        return [split.random_split(ratings, self.test_fraction, self.seed)]


@dataclass
class TuneResult:
    """What a search found."""

    results: pd.DataFrame
    """One row per candidate: its parameters, ``<metric>_mean``/``_std`` over the folds,
    ``folds`` evaluated, ``seconds`` and ``status`` (``ok`` or ``stopped early``)."""
    fold_results: pd.DataFrame
    """One row per (candidate, fold)."""
    curves: pd.DataFrame
    """One row per (fit, fold, iteration): objective, train RMSE, test RMSE and MAE."""
    best: Candidate
    """The best candidate's parameters."""
    best_score: float
    metric: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def load_ratings(spark: SparkSession, config: JobConfig, rejected_dir: str
                 ) -> tuple[DataFrame, RatingStats]:
    """The validated, de-duplicated ratings of ``config.input``, as ``jobs/train.py`` reads
    them (so folds and holdouts here are those of the same data there), and the
    validation's counts (they size each fold's blocks)."""
    loaded = load(spark, config.input, rejected_dir)
    return loaded.ratings, loaded.stats


def fit_groups(candidates: list[Candidate]) -> list[tuple[tuple[Any, ...], list[int]]]:
    """Candidates grouped by everything but ``iterations``: one fit per group, scored at each
    of the group's iteration counts (returned sorted)."""
    groups: dict[tuple[Any, ...], set[int]] = {}
    for c in candidates:
        key = tuple(c[n] for n in TUNABLE if n != "iterations")
        groups.setdefault(key, set()).add(int(c["iterations"]))
    return [(key, sorted(its)) for key, its in groups.items()]


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _ranking(spark: SparkSession, fold: dict[str, Any], state: Fit, k: int) -> dict[str, float]:
    from mfspark.evaluation.metrics import ranking_metrics
    from mfspark.ml.model import ALSModel

    prepared = fold["prepared"]
    model = ALSModel(prepared.factors(spark, state, "user"),
                     prepared.factors(spark, state, "item"), state.mu)
    found = ranking_metrics(model, fold["test_raw"], k, exclude=fold["train_raw"],
                            metrics=("precisionAtK", "ndcgAtK", "meanAveragePrecisionAtK"))
    return {f"{name}@{k}" if name.endswith("AtK") else name: value
            for name, value in found.items() if name != "users"}


def check_metric(metric: str, ranking_k: int | None) -> None:
    """Refuse a selection metric that the search will not compute."""
    if ranking_k is not None and (not isinstance(ranking_k, int) or ranking_k < 1):
        raise TuneError(f"ranking_k must be an integer >= 1, got {ranking_k!r}")
    allowed = list(LOWER_IS_BETTER) + ([f"{m}@{ranking_k}" for m in
                                        ("precisionAtK", "ndcgAtK", "meanAveragePrecisionAtK")]
                                       if ranking_k else [])
    if metric not in allowed:
        raise TuneError(f"metric must be one of {allowed}, got {metric!r}")


def tune(spark: SparkSession, config: JobConfig, candidates: list[Candidate],
         protocol: Protocol, work_dir: str, metric: str = "rmse",
         ranking_k: int | None = None, patience: int | None = None,
         clip: tuple[float, float] | None = None,
         on_progress: Callable[[str], None] = print) -> TuneResult:
    """Evaluate every candidate (``ALSParams`` overrides of ``config.als``) under
    ``protocol`` and return the table and the best candidate by ``metric``'s fold mean.

    ``metric`` is ``rmse``, ``mae`` or, with ``ranking_k``, ``precisionAtK@k``,
    ``ndcgAtK@k`` or ``meanAveragePrecisionAtK@k``.  ``clip = (min, max)`` clips the
    predictions to the rating scale before RMSE and MAE (as Surprise does).  ``work_dir``
    holds the fits' factor Parquet (deleted as each fit ends).
    """
    if not candidates:
        raise TuneError("no candidates to evaluate (empty search space)")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise TuneError(f"patience must be an integer >= 1, got {patience!r}")
    check_metric(metric, ranking_k)
    for c in candidates:
        dataclasses.replace(config.als, **c)  # validates before any work
    began = time.perf_counter()
    fs.delete(spark, work_dir)  # what a killed earlier search left behind
    ratings, stats = load_ratings(spark, config, f"{work_dir}/rejected")
    ratings = ratings.persist(StorageLevel.MEMORY_AND_DISK)
    pairs = protocol.splits(ratings)
    groups = fit_groups(candidates)
    index_of = {tuple(c[n] for n in TUNABLE): i for i, c in enumerate(candidates)}
    n_folds = len(pairs)
    total_units = n_folds * sum(its[-1] for _, its in groups)
    done_units = 0
    fold_rows: list[dict[str, Any]] = []
    curve_rows: list[dict[str, Any]] = []
    for f, (train_df, test_df) in enumerate(pairs):
        prepared = prepare(train_df, config.als, test_df, stats=stats)
        parts = prepared.ratings
        fold = {"prepared": prepared, "train_raw": train_df, "test_raw": test_df}
        log.info("fold %d/%d: %d train ratings (%d users, %d items), %d test", f + 1, n_folds,
                 parts.count, parts.num_users, parts.num_items, parts.num_test)
        for g, (key, checkpoints) in enumerate(groups):
            fixed = dict(zip([n for n in TUNABLE if n != "iterations"], key))
            fit_dir = f"{work_dir}/fold-{f}/fit-{g}"
            state: Fit | None = None
            best_rmse, since_best, fit_began = math.inf, 0, time.perf_counter()
            stopped_at = None
            for it in range(1, checkpoints[-1] + 1):
                params = dataclasses.replace(config.als, **fixed, iterations=it)
                state = fit(parts, params, fit_dir, resume=state, clip=clip)
                done_units += 1
                entry = state.history[-1]
                scores = {"rmse": entry.get("test_rmse", math.nan),
                          "mae": entry.get("test_mae", math.nan)}
                curve_rows.append({**fixed, "fold": f, "iteration": it,
                                   "objective": entry["objective"],
                                   "train_rmse": entry["train_rmse"],
                                   "test_rmse": scores["rmse"], "test_mae": scores["mae"]})
                if it in checkpoints:
                    if ranking_k:
                        scores.update(_ranking(spark, fold, state, ranking_k))
                    seconds = time.perf_counter() - fit_began
                    cand = index_of[tuple({**fixed, "iterations": it}[n] for n in TUNABLE)]
                    fold_rows.append({"candidate": cand, **fixed, "iterations": it, "fold": f,
                                      **scores, "seconds": seconds})
                    elapsed = time.perf_counter() - began
                    left = elapsed / done_units * (total_units - done_units)
                    shown = " ".join(f"{k}={v:.4f}" for k, v in scores.items())
                    on_progress(f"candidate {cand + 1}/{len(candidates)} fold {f + 1}/{n_folds} "
                                f"{' '.join(f'{n}={v}' for n, v in fixed.items())} "
                                f"iterations={it}: {shown}  {seconds:.1f}s  "
                                f"ETA {_fmt_seconds(left)}")
                if scores["rmse"] < best_rmse - 1e-9:
                    best_rmse, since_best = scores["rmse"], 0
                else:
                    since_best += 1
                if patience is not None and since_best >= patience and it < checkpoints[-1]:
                    stopped_at = it
                    break
            if stopped_at is not None:
                total_units -= checkpoints[-1] - stopped_at
                on_progress(f"fold {f + 1}/{n_folds} "
                            f"{' '.join(f'{n}={v}' for n, v in fixed.items())}: stopped early "
                            f"after iteration {stopped_at} (test RMSE no better for "
                            f"{patience} iterations)")
            fs.delete(spark, fit_dir)
        fs.delete(spark, f"{work_dir}/fold-{f}")
        prepared.unpersist()
    ratings.unpersist()
    return summarize(candidates, pd.DataFrame(fold_rows), pd.DataFrame(curve_rows), n_folds,
                     metric, time.perf_counter() - began)


def summarize(candidates: list[Candidate], folds: pd.DataFrame, curves: pd.DataFrame,
              n_folds: int, metric: str, seconds: float) -> TuneResult:
    """Average each candidate's fold scores and pick the best complete candidate."""
    metrics = [c for c in folds.columns
               if c not in ("candidate", "fold", "seconds", *TUNABLE)]
    rows = []
    for i, cand in enumerate(candidates):
        mine = folds[folds["candidate"] == i]
        row: dict[str, Any] = {"candidate": i, **cand}
        for m in metrics:
            values = mine[m].to_numpy(np.float64)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        row["folds"] = len(mine)
        row["seconds"] = float(mine["seconds"].sum()) if len(mine) else 0.0
        row["status"] = "ok" if len(mine) == n_folds else "stopped early"
        rows.append(row)
    table = pd.DataFrame(rows)
    complete = table[table["status"] == "ok"]
    lower = metric in LOWER_IS_BETTER
    ranked = complete.sort_values([f"{metric}_mean", "candidate"], ascending=[lower, True])
    best_row = ranked.iloc[0]
    best = {n: _plain(best_row[n]) for n in TUNABLE}
    return TuneResult(results=table, fold_results=folds, curves=curves, best=best,
                      best_score=float(best_row[f"{metric}_mean"]), metric=metric,
                      seconds=seconds)


def _plain(value: Any) -> Any:
    """NumPy scalars as Python ones (for TOML and JSON)."""
    return value.item() if hasattr(value, "item") else value


def best_config(config: JobConfig, result: TuneResult) -> JobConfig:
    """``config`` with the best candidate's parameters."""
    return dataclasses.replace(config, als=dataclasses.replace(config.als, **result.best))

