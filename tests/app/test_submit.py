"""spark-submit of jobs/train.py as a user runs it: packaged library, any directory."""

from __future__ import annotations

import json
import re
import zipfile

from conftest import ROOT


def test_dist_zip_holds_the_package(dist_zip):
    names = zipfile.ZipFile(dist_zip).namelist()
    assert {"mfspark/__init__.py", "mfspark/core/block.py", "mfspark/core/kernel/compile.py",
            "mfspark/io/model.py"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "jobs/"))]


def test_submit_local_with_zip_from_outside_the_checkout(local_submit, dist_zip, capsys):
    run, model = local_submit
    assert run.returncode == 0, run.stderr[-4000:]
    # the driver's Python prints to spark-submit's stdout
    loaded = re.search(r"mfspark \S+ loaded from (\S+)", run.stdout)
    assert loaded and loaded.group(1).endswith(f"{dist_zip.name}/mfspark"), run.stderr[-4000:]
    assert str(ROOT) not in loaded.group(1)  # not the checkout beside jobs/
    assert f"model written to file:{model}" in run.stdout
    assert (model / "_COMPLETE").exists()
    meta = json.loads((model / "metadata.json").read_text())
    assert len(meta["history"]) == 4 and meta["num_users"] == 943
    assert meta["history"][-1]["test_rmse"] < 1.0
    with capsys.disabled():
        print(f"\n[submit local[*]] {run.seconds:.0f}s, mfspark from {loaded.group(1)}, "
              f"test RMSE {meta['history'][-1]['test_rmse']:.4f}")
