"""Smoke test of jobs/benchmark.py, so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from mfspark.evaluation.benchmark import summarize
from mfspark.data.synthetic import PlantedModel, generate

from conftest import ROOT


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_all_systems(spark, tmp_path):
    data = tmp_path / "ratings"
    generate(spark, PlantedModel(num_users=200, num_items=150, num_ratings=4000, rank=3)
             ).write.parquet(str(data))
    rows = load_job("benchmark").main([
        "--ratings", str(data), "--out", str(tmp_path / "bench"), "--ranks", "2",
        "--iterations", "2", "--systems", "mfspark", "mllib", "numpy", "--repeat", "2"])
    by_system = {r["system"]: r for r in rows}
    assert set(by_system) == {"mfspark", "mllib", "numpy", "arithmetic-bound"}
    # the distributed job and the in-process floor fit the same model on the same split
    assert by_system["mfspark"]["test_rmse"] == pytest.approx(by_system["numpy"]["test_rmse"],
                                                              rel=1e-9)
    assert by_system["mllib"]["time_vs_mllib"] == 1.0
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert len(saved["rows"]) == 4 and "mllib_blas" in saved["environment"]
    assert (tmp_path / "bench" / "results.csv").read_text().count("\n") == 5
    # --repeat 2: every system twice, the second time in reverse order; the table's row is
    # the median (of two: the mean) of the runs kept in results.json
    runs = saved["runs"]
    assert [(r["system"], r["repeat"]) for r in runs] == [
        ("mfspark", 0), ("mllib", 0), ("numpy", 0), ("numpy", 1), ("mllib", 1), ("mfspark", 1)]
    fits = [r["fit_seconds"] for r in runs if r["system"] == "mfspark"]
    assert by_system["mfspark"]["runs"] == 2
    assert by_system["mfspark"]["fit_seconds"] == pytest.approx(sum(fits) / 2)
    assert by_system["mfspark"]["fit_seconds_min"] == min(fits)


def _run(system: str, repeat: int, fit: float, ratio: float, rmse: float, heap: float) -> dict:
    return {"system": system, "rank": 10, "iterations": 10, "fit_seconds": fit,
            "time_vs_mllib": ratio, "test_rmse": rmse, "jvm_peak_heap_mb": heap,
            "implicit_prefs": False, "repeat": repeat}


def test_summarize_takes_medians_of_runs_and_same_run_ratios():
    runs = [_run("mfspark", 0, 30.0, 0.6, 0.61, 900.0), _run("mllib", 0, 50.0, 1.0, 0.67, 700.0),
            _run("mllib", 1, 20.0, 1.0, 0.67, 800.0), _run("mfspark", 1, 16.0, 0.8, 0.61, 1000.0),
            _run("mfspark", 2, 22.0, 0.7, 0.61, 950.0),
            _run("mllib", 2, 31.0, 1.0, 0.67, math.nan)]
    mf, ml = summarize(runs)
    assert (mf["system"], ml["system"]) == ("mfspark", "mllib")
    assert mf["fit_seconds"] == 22.0 and ml["fit_seconds"] == 31.0
    # the ratio is the median of same-run ratios (0.6, 0.8, 0.7), not 22 / 31
    assert mf["time_vs_mllib"] == pytest.approx(0.7)
    assert (mf["runs"], mf["fit_seconds_min"], mf["fit_seconds_max"]) == (3, 16.0, 30.0)
    assert mf["jvm_peak_heap_mb"] == 1000.0 and ml["jvm_peak_heap_mb"] == 800.0  # peaks: max
    assert mf["iterations"] == 10 and mf["implicit_prefs"] is False and "repeat" not in mf


def test_gram_methods_benchmark_times_every_method():
    spec = importlib.util.spec_from_file_location("gram_methods",
                                                  ROOT / "benchmarks" / "gram_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--users", "300", "--items", "200", "--ratings", "6000",
                        "--ranks", "3", "40"])
    assert [(r["side"], r["rank"]) for r in rows] == [("user", 3), ("user", 40),
                                                      ("item", 3), ("item", 40)]
    for r in rows:
        assert all(r[m] > 0 for m in ("compiled", "sparse", "rows", "bucket"))
        assert r["auto"] == "compiled"  # Numba is installed: the compiled loop at every rank


def test_benchmark_nonnegative_and_implicit_against_mllib(spark, tmp_path):
    data = tmp_path / "ratings"
    generate(spark, PlantedModel(num_users=100, num_items=80, num_ratings=1500, rank=2)
             ).write.parquet(str(data))
    job = load_job("benchmark")
    rows = job.main(["--ratings", str(data), "--out", str(tmp_path / "nn"), "--ranks", "2",
                     "--iterations", "2", "--nonnegative", "--no-biases"])
    by_system = {r["system"]: r for r in rows}
    assert {"mfspark", "mllib"} <= set(by_system) and "numpy" not in by_system
    assert by_system["mfspark"]["nonnegative"] and by_system["mllib"]["nonnegative"]
    assert by_system["mfspark"]["biases"] is False  # MLlib's u . v model on both sides
    assert 0 < by_system["mfspark"]["test_rmse"] < 5 and 0 < by_system["mllib"]["test_rmse"] < 5
    rows = job.main(["--ratings", str(data), "--out", str(tmp_path / "imp"), "--ranks", "2",
                     "--iterations", "2", "--implicit-prefs", "--alpha", "3"])
    mf = next(r for r in rows if r["system"] == "mfspark")
    assert mf["implicit_prefs"] and mf["alpha"] == 3.0 and mf["fit_seconds"] > 0


def _lenskit_split(spark):
    from mfspark.evaluation.benchmark import Split

    train = generate(spark, PlantedModel(num_users=120, num_items=80, num_ratings=3000, rank=3,
                                         seed=4)).select("user", "item", "rating")
    test = train.limit(200)
    return Split(train, test, train.count(), test.count())


def test_lenskit_without_the_benchmark_extra_says_how_to_install_it(spark, monkeypatch):
    import sys

    from mfspark.config import ALSParams
    from mfspark.evaluation.benchmark import compare

    monkeypatch.setitem(sys.modules, "lenskit", None)  # importing it fails, as when absent
    monkeypatch.setitem(sys.modules, "lenskit.als", None)
    with pytest.raises(ValueError, match=r"pip install 'mfspark\[benchmark\]'"):
        compare(_lenskit_split(spark), ALSParams(rank=2, iterations=1), "unused", ["lenskit"])
    with pytest.raises(ValueError, match="unknown system 'surprise'; known: mfspark, mllib, "
                                         "numpy, lenskit"):
        compare(_lenskit_split(spark), ALSParams(rank=2, iterations=1), "unused", ["surprise"])


@pytest.mark.parametrize("setting", [{"reg_scale": "none"}, {"nonnegative": True},
                                     {"biases": False}])
def test_lenskit_refuses_a_model_it_does_not_fit(spark, setting):
    from mfspark.config import ALSParams
    from mfspark.evaluation.benchmark import compare

    with pytest.raises(ValueError, match="covers the default model with count-scaled "
                                         "regularization only"):
        compare(_lenskit_split(spark), ALSParams(rank=2, iterations=1, **setting), "unused",
                ["lenskit"])


def test_lenskit_fits_beside_mfspark_on_the_same_split(spark, tmp_path):
    """With the benchmark extra installed: LensKit's BiasedMFScorer scores the same test
    rows as mfspark, to a comparable RMSE, and every row gets its ratio to LensKit."""
    pytest.importorskip("lenskit", reason="LensKit is the benchmark extra's, not a test "
                                          "dependency: pip install 'mfspark[benchmark]'")
    from mfspark.config import ALSParams
    from mfspark.evaluation.benchmark import compare

    rows = {r["system"]: r for r in compare(_lenskit_split(spark),
                                            ALSParams(rank=3, iterations=10),
                                            str(tmp_path), ["mfspark", "lenskit"])}
    assert rows["lenskit"]["time_vs_lenskit"] == 1.0
    assert rows["mfspark"]["time_vs_lenskit"] > 0 and rows["lenskit"]["collect_seconds"] > 0
    assert 0 < rows["lenskit"]["test_rmse"] < 1.5 * rows["mfspark"]["test_rmse"]
