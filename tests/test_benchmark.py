"""Smoke test of jobs/benchmark.py, so it cannot rot (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from mfspark.synthetic import PlantedModel, generate

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
        "--iterations", "2", "--systems", "mfspark", "mllib", "numpy"])
    by_system = {r["system"]: r for r in rows}
    assert set(by_system) == {"mfspark", "mllib", "numpy", "arithmetic-bound"}
    # the distributed job and the in-process floor fit the same model on the same split
    assert by_system["mfspark"]["test_rmse"] == pytest.approx(by_system["numpy"]["test_rmse"],
                                                              rel=1e-9)
    assert by_system["mllib"]["time_vs_mllib"] == 1.0
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert len(saved["rows"]) == 4 and "mllib_blas" in saved["environment"]
    assert (tmp_path / "bench" / "results.csv").read_text().count("\n") == 5


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
        assert all(r[m] > 0 for m in ("sparse", "rows", "bucket"))
        assert r["auto"] == ("sparse" if r["rank"] == 3 else "rows")
    dual = module.main(["--dual", "--ranks", "4", "60", "--counts", "3", "50"])
    assert [(r["rank"], r["n"]) for r in dual] == [(4, 3), (60, 3), (60, 50)]
    assert all(r["dual"] > 0 and r["primal"] > 0 for r in dual)
    assert [r["dual_limit"] for r in dual] == [5, 30, 30]


def test_halfstep_profile_runs(spark, tmp_path):
    data = tmp_path / "ratings"
    generate(spark, PlantedModel(num_users=100, num_items=80, num_ratings=1500, rank=2)
             ).write.parquet(str(data))
    spec = importlib.util.spec_from_file_location("profile_halfstep",
                                                  ROOT / "benchmarks" / "profile_halfstep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timings = module.main(["--ratings", str(data), "--rank", "2", "--blocks", "2",
                           "--out", str(tmp_path / "out")])
    assert len(timings) == 12 and all(t > 0 for t in timings.values())


def test_benchmark_nonnegative_and_implicit_against_mllib(spark, tmp_path):
    data = tmp_path / "ratings"
    generate(spark, PlantedModel(num_users=100, num_items=80, num_ratings=1500, rank=2)
             ).write.parquet(str(data))
    job = load_job("benchmark")
    rows = job.main(["--ratings", str(data), "--out", str(tmp_path / "nn"), "--ranks", "2",
                     "--iterations", "2", "--nonnegative"])
    by_system = {r["system"]: r for r in rows}
    assert {"mfspark", "mllib"} <= set(by_system) and "numpy" not in by_system
    assert by_system["mfspark"]["nonnegative"] and by_system["mllib"]["nonnegative"]
    assert 0 < by_system["mfspark"]["test_rmse"] < 5 and 0 < by_system["mllib"]["test_rmse"] < 5
    rows = job.main(["--ratings", str(data), "--out", str(tmp_path / "imp"), "--ranks", "2",
                     "--iterations", "2", "--implicit-prefs", "--alpha", "3"])
    mf = next(r for r in rows if r["system"] == "mfspark")
    assert mf["implicit_prefs"] and mf["alpha"] == 3.0 and mf["fit_seconds"] > 0
