"""Model selection: search spaces, the CV loop against a direct NumPy computation, the jobs'
TOML round trip, reports with and without matplotlib, and bad input."""

from __future__ import annotations

import re
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest

from mfspark import config as cfg
from mfspark.config import ALSParams
from mfspark.core.local import predict
from mfspark.evaluation.grid import GridError, grid_candidates, random_candidates, validate_space
from mfspark.core.local import fit_in_memory
from mfspark.core.state import seeded_factors
from mfspark.data.split import assign_folds
from mfspark.evaluation.tune import Protocol, TuneError, summarize, tune

from conftest import ROOT

sys.path.insert(0, str(ROOT / "jobs"))
import train as train_job  # noqa: E402
import tune as tune_job  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory) -> str:
    """25 users x 30 items, about half rated, ratings 1-5 with a user and an item effect."""
    rng = np.random.default_rng(7)
    rows = []
    for u in range(25):
        for i in range(30):
            if rng.random() < 0.5:
                r = np.clip(np.round(3 + (u % 5 - 2) * 0.4 + (i % 3 - 1) * 0.6
                                     + rng.normal(0, 0.7)), 1, 5)
                rows.append(f"{u},{100 + i},{r:.1f},{rng.integers(10**6)}")
    path = tmp_path_factory.mktemp("tune-data") / "ratings.csv"
    path.write_text("user,item,rating,timestamp\n" + "\n".join(rows) + "\n")
    return str(path)


# --- search spaces ------------------------------------------------------------------------

def test_grid_is_the_product_of_the_lists():
    base = ALSParams(rank=3, iterations=4)
    cands = grid_candidates({"reg": [0.5, 0.1, 0.5], "reg_scale": ["none", "count"]}, base)
    assert len(cands) == 4
    assert {(c["reg"], c["reg_scale"]) for c in cands} == {
        (0.1, "none"), (0.1, "count"), (0.5, "none"), (0.5, "count")}
    assert all(c["rank"] == 3 and c["iterations"] == 4 for c in cands)


def test_random_search_is_seeded_and_draws_from_the_space():
    space = {"rank": [2, 4, 8], "iterations": [5, 10]}
    a = random_candidates(space, ALSParams(), 3, seed=1, reg_range=(0.01, 1.0))
    assert a == random_candidates(space, ALSParams(), 3, seed=1, reg_range=(0.01, 1.0))
    assert len(a) == 3 and all(c["rank"] in (2, 4, 8) and 0.01 <= c["reg"] <= 1.0 for c in a)
    full = grid_candidates(space, ALSParams())
    sample = random_candidates(space, ALSParams(), 4, seed=2)
    assert len(sample) == 4 and all(c in full for c in sample)
    assert len({tuple(c.values()) for c in sample}) == 4


@pytest.mark.parametrize("space, message", [
    ({"rnak": [1], "alpha": [2]}, r"unknown search parameter\(s\) \['alpha', 'rnak'\]; "
                                  r"tunable: \['rank', 'reg', 'reg_scale', 'iterations'\]"),
    ({}, "the search space is empty"),
    ({"reg": []}, "'reg' has an empty list of values"),
    ({"reg": 0.1}, "'reg' needs a list of values, got 0.1"),
    ({"reg": [0.1, -1.0]}, r"'reg': als.reg must be a finite number > 0, got -1.0"),
    ({"reg_scale": ["count", "log"]}, r"'reg_scale': als.reg_scale must be one of"),
])
def test_bad_search_spaces_are_named(space, message):
    with pytest.raises(GridError, match=message):
        validate_space(space, ALSParams())


def test_protocol_needs_two_folds():
    with pytest.raises(TuneError, match="folds >= 2, got 1"):
        Protocol(folds=1)


def test_a_candidate_stopped_early_is_never_best():
    cands = [{"rank": 1, "reg": 0.1, "reg_scale": "none", "iterations": n} for n in (2, 4)]
    folds = pd.DataFrame([
        {"candidate": 0, **cands[0], "fold": 0, "rmse": 0.9, "seconds": 1.0},
        {"candidate": 0, **cands[0], "fold": 1, "rmse": 0.9, "seconds": 1.0},
        {"candidate": 1, **cands[1], "fold": 0, "rmse": 0.5, "seconds": 2.0}])
    result = summarize(cands, folds, pd.DataFrame(), 2, "rmse", 0.0)
    assert result.results["status"].tolist() == ["ok", "stopped early"]
    assert result.best["iterations"] == 2 and result.best_score == pytest.approx(0.9)


# --- the search against a direct computation ----------------------------------------------

def direct_cv(spark, path: str, cands: list[dict], k: int, seed: int) -> list[float]:
    """Each candidate's mean test RMSE over the same folds, by the in-memory NumPy ALS."""
    config = cfg.override(cfg.JobConfig(), path=path)
    from mfspark.evaluation.tune import load_ratings
    pdf = assign_folds(load_ratings(spark, config, "/nonexistent")[0], k, seed).toPandas()
    means = []
    for c in cands:
        scores = []
        for f in range(k):
            tr, te = pdf[pdf.fold != f], pdf[pdf.fold == f]
            uids, items = np.unique(tr.user), np.unique(tr.item)
            u, i = np.searchsorted(uids, tr.user), np.searchsorted(items, tr.item)
            params = ALSParams(**c)
            # the Spark fit seeds each item's start from its ID (integral IDs are keys)
            start = seeded_factors(items.astype(np.int64), params.rank, params.seed)
            fitted = fit_in_memory(u, i, tr.rating.to_numpy(), len(uids), len(items),
                                   params.objective(), params.rank, params.iterations,
                                   params.seed, initial_items=start)

            def index(ids, x):
                p = np.minimum(np.searchsorted(ids, x), len(ids) - 1)
                return np.where(ids[p] == x, p, -1)

            pred = predict(index(uids, te.user.to_numpy()), index(items, te.item.to_numpy()),
                           fitted.users, fitted.items, fitted.mu)
            scores.append(np.sqrt(np.mean((te.rating.to_numpy() - pred) ** 2)))
        means.append(float(np.mean(scores)))
    return means


def test_tune_picks_what_a_direct_computation_says_is_best(spark, ratings_csv, tmp_path):
    cands = grid_candidates({"rank": [2], "reg": [0.02, 0.5], "reg_scale": ["count"],
                             "iterations": [1, 3]}, ALSParams())
    config = cfg.override(cfg.JobConfig(), path=ratings_csv, num_user_blocks=2,
                          num_item_blocks=2)
    lines: list[str] = []
    result = tune(spark, config, cands, Protocol(folds=2, seed=3), str(tmp_path / "work"),
                  on_progress=lines.append)
    expected = direct_cv(spark, ratings_csv, cands, 2, 3)
    got = result.results.sort_values("candidate")["rmse_mean"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert result.best == cands[int(np.argmin(expected))]
    assert len(set(np.round(expected, 4))) == len(expected)  # a real choice, no ties
    # one progress line per (candidate, fold), with the metric, seconds and time left
    assert len(lines) == len(cands) * 2
    assert all("fold" in ln and "rmse=" in ln and "ETA" in ln for ln in lines)
    # one fit per (rank, reg, reg_scale) and fold, recorded per iteration
    assert len(result.curves) == 2 * 2 * 3
    assert not (tmp_path / "work" / "fold-0").exists()


def test_ranking_metric_and_early_stopping_end_to_end(spark, ratings_csv, tmp_path):
    """``ranking_k`` adds ranking columns and can be the selection metric; ``patience`` stops
    a fit whose validation RMSE has not improved for that many iterations (an overfitting
    setting: rank 6, tiny lambda), and never stops one that is still improving."""
    cands = grid_candidates({"rank": [6], "reg": [0.001, 0.3], "reg_scale": ["none"],
                             "iterations": [2, 12]}, ALSParams())
    config = cfg.override(cfg.JobConfig(), path=ratings_csv, num_user_blocks=2,
                          num_item_blocks=2)
    result = tune(spark, config, cands, Protocol(folds=2, seed=1), str(tmp_path / "work"),
                  metric="precisionAtK@3", ranking_k=3, patience=1, on_progress=lambda _: None)
    table = result.results
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 2
    for column in ("precisionAtK@3_mean", "ndcgAtK@3_mean", "meanAveragePrecisionAtK@3_mean"):
        assert ok[column].between(0, 1).all(), table[column]
    # a candidate whose fits all stopped before its iteration count was never scored; one
    # that some folds stopped short of is incomplete, reported, and not a choice
    assert table.loc[table["folds"] == 0, "precisionAtK@3_mean"].isna().all()
    assert (table.loc[table["status"] != "ok", "folds"] < 2).all()
    assert (table.loc[table["status"] == "ok", "folds"] == 2).all()
    assert result.best_score == ok["precisionAtK@3_mean"].max()  # higher is better
    curves = result.curves
    stopped = 0
    for (reg, fold), fit in curves.groupby(["reg", "fold"]):
        rmse = fit.sort_values("iteration")["test_rmse"].to_numpy()
        best_before = np.minimum.accumulate(rmse)
        if len(rmse) < 12:  # stopped early: the last iteration did not improve on the best
            stopped += 1
            assert rmse[-1] >= best_before[-2] - 1e-9, (reg, fold, rmse)
        # it never stopped while improving: every iteration before the last improved
        # or was followed by one (patience 1 stops right after the first non-improvement)
        assert all(rmse[j] < best_before[j - 1] - 1e-9 for j in range(1, len(rmse) - 1)), rmse
    assert stopped >= 1  # the overfitting setting did stop


# --- the jobs -----------------------------------------------------------------------------

def test_tune_job_writes_a_toml_that_train_accepts_with_reports(ratings_csv, tmp_path, capsys):
    out, report = tmp_path / "tuned", tmp_path / "tune-report"
    result = tune_job.main(["--ratings", ratings_csv, "--out", str(out), "--rank", "1", "2",
                            "--reg", "0.1", "--iterations", "2", "--holdout", "user",
                            "--test-fraction", "0.2", "--user-blocks", "2", "--item-blocks",
                            "2", "--report", str(report), "--table-format", "both",
                            "--master", "local[2]"])
    printed = capsys.readouterr().out
    assert "candidate 2/2" in printed and "best: rank=" in printed
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 and (table["status"] == "ok").all()
    assert (out / "results.parquet").is_dir()
    text = (out / "best.toml").read_text()
    assert tomllib.loads(text)["als"]["rank"] == result.best["rank"]
    for name in ("convergence.png", "reg_path.png"):
        assert (report / name).read_bytes().startswith(PNG)
    assert len(pd.read_csv(report / "metrics.csv")) == 2 * 2  # two fits x two iterations

    trained = train_job.main(["--config", str(out / "best.toml"), "--out",
                              str(tmp_path / "model"), "--report", str(tmp_path / "rep"),
                              "--master", "local[2]"])
    meta = trained.metadata
    assert {k: meta[k] for k in result.best} == result.best
    assert meta["input"]["path"] == ratings_csv
    assert (tmp_path / "rep" / "convergence.png").read_bytes().startswith(PNG)
    history = pd.read_csv(tmp_path / "rep" / "metrics.csv")
    assert history["train_rmse"].tolist() == [h["train_rmse"] for h in meta["history"]]


def test_train_report_without_matplotlib_still_succeeds(ratings_csv, tmp_path, capsys,
                                                        monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    train_job.main(["--ratings", ratings_csv, "--out", str(tmp_path / "m"), "--rank", "1",
                    "--iterations", "2", "--report", str(tmp_path / "rep"), "--master",
                    "local[2]"])
    assert "pip install 'mfspark[report]'" in capsys.readouterr().out
    assert (tmp_path / "rep" / "metrics.csv").is_file()
    assert (tmp_path / "rep" / "metrics.json").is_file()
    assert not list((tmp_path / "rep").glob("*.png"))


@pytest.mark.parametrize("flags, message", [
    (["--grid", "GRID"], r"unknown search parameter\(s\) \['lambda'\]"),
    (["--folds", "1", "--reg", "0.1"], "folds >= 2, got 1"),
    (["--reg-scale", "loud"], "'reg_scale': als.reg_scale must be one of"),
    ([], "the search space is empty"),
    (["--reg", "0.1", "--metric", "auc"], r"metric must be one of \['rmse', 'mae'\]"),
])
def test_tune_job_rejects_bad_input_before_spark(ratings_csv, tmp_path, capsys, flags, message):
    grid = tmp_path / "grid.toml"
    grid.write_text("[grid]\nlambda = [0.1]\n")
    flags = [str(grid) if f == "GRID" else f for f in flags]
    with pytest.raises(SystemExit) as err:
        tune_job.main(["--ratings", ratings_csv, "--out", str(tmp_path / "o"), *flags])
    assert err.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()
