"""Report directories: the metrics as CSV and JSON, and PNG plots when matplotlib is there.

matplotlib is an optional extra (``pip install 'mfspark[report]'``).  Without it the metrics
are still written, no plot is, and :func:`plot` returns the message saying how to get them;
the jobs print it and succeed.

Layout of a report directory (a local path: plots are written by matplotlib)::

    metrics.json       summary: settings, best result (tune), history (train)
    metrics.csv        one row per iteration (train) / per fit, fold and iteration (tune)
    results.csv        (tune) one row per candidate
    convergence.png    objective and train/test RMSE per iteration
    reg_path.png       (tune) test RMSE vs lambda, one line per rank, a panel per reg_scale
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

INSTALL_HINT = ("matplotlib is not installed: metrics written, no plots. "
                "For plots: pip install 'mfspark[report]'")


def _pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=True) + "\n")


def plot(directory: Path, plots: dict[str, Callable[[Any], None]]) -> list[str] | str:
    """Draw each ``name -> draw(plt)`` into ``directory/name``; the names written, or the
    install hint when matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return INSTALL_HINT
    written = []
    for name, draw in plots.items():
        fig = draw(plt)
        fig.savefig(directory / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written


def convergence_figure(history: pd.DataFrame, title: str,
                       mark: int | None = None) -> Callable[[Any], Any]:
    """Objective (left) and train/test RMSE (right) against the iteration; ``mark``: an
    iteration to mark with a vertical line (the chosen one)."""
    def draw(plt: Any) -> Any:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.plot(history["iteration"], history["objective"], marker="o")
        left.set_xlabel("iteration")
        left.set_ylabel("objective J")
        left.set_title("objective")
        right.plot(history["iteration"], history["train_rmse"], marker="o", label="train")
        if "test_rmse" in history and history["test_rmse"].notna().any():
            right.plot(history["iteration"], history["test_rmse"], marker="o", label="test")
        right.set_xlabel("iteration")
        right.set_ylabel("RMSE")
        right.set_title("RMSE")
        if mark is not None:
            for ax in (left, right):
                ax.axvline(mark, color="grey", linestyle=":")
        right.legend()
        fig.suptitle(title)
        return fig
    return draw


def reg_path_figure(results: pd.DataFrame, metric: str = "rmse") -> Callable[[Any], Any]:
    """Mean test ``metric`` against lambda, one line per rank (at each (rank, lambda)'s best
    iteration count), one panel per ``reg_scale``."""
    ok = results[results["status"] == "ok"]
    col = f"{metric}_mean"
    best = ok.groupby(["reg_scale", "rank", "reg"], as_index=False)[col].min()

    def draw(plt: Any) -> Any:
        scales = sorted(best["reg_scale"].unique())
        fig, axes = plt.subplots(1, max(1, len(scales)), figsize=(5 * max(1, len(scales)), 4),
                                 squeeze=False)
        for ax, scale in zip(axes[0], scales):
            mine = best[best["reg_scale"] == scale]
            for rank, line in mine.groupby("rank"):
                line = line.sort_values("reg")
                ax.plot(line["reg"], line[col], marker="o", label=f"rank {rank}")
            ax.set_xscale("log")
            ax.set_xlabel(f"lambda (reg_scale={scale})")
            ax.set_ylabel(f"test {metric.upper()} (mean over folds)")
            ax.legend()
        fig.suptitle(f"test {metric.upper()} vs lambda")
        return fig
    return draw


def train_report(directory: str | Path, metadata: dict[str, Any]) -> list[str] | str:
    """The training job's report: ``metrics.json`` (the model's metadata, history included),
    ``metrics.csv`` (the history) and ``convergence.png``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    history = pd.DataFrame(metadata["history"])
    history.to_csv(out / "metrics.csv", index=False)
    write_json(out / "metrics.json", metadata)
    title = (f"rank {metadata['rank']}, lambda {metadata['reg']} ({metadata['reg_scale']})")
    return plot(out, {"convergence.png": convergence_figure(history, title)})


def tune_report(directory: str | Path, summary: dict[str, Any], results: pd.DataFrame,
                curves: pd.DataFrame, best: dict[str, Any]) -> list[str] | str:
    """The tuning job's report: ``metrics.json`` (``summary``), ``metrics.csv`` (every fit's
    per-iteration curve), ``results.csv``, ``convergence.png`` (the best setting's curves,
    averaged over the folds) and ``reg_path.png``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(out / "metrics.csv", index=False)
    results.to_csv(out / "results.csv", index=False)
    write_json(out / "metrics.json", summary)
    mine = curves
    for name in ("rank", "reg", "reg_scale"):
        mine = mine[mine[name] == best[name]]
    history = (mine.groupby("iteration", as_index=False)[["objective", "train_rmse", "test_rmse"]]
               .mean())
    title = (f"best: rank {best['rank']}, lambda {best['reg']} ({best['reg_scale']}), "
             f"mean over folds; dotted: chosen iterations")
    return plot(out, {"convergence.png": convergence_figure(history, title, best["iterations"]),
                      "reg_path.png": reg_path_figure(results)})
