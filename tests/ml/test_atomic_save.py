"""``write().overwrite().save(path)`` of ``ALSModel`` and of the ``ALS`` estimator replaces
the directory only once the new one is complete: an overwrite that fails at any step (a
factor write, the metadata, the rename into place, the commit marker) leaves the previous
one loadable and unchanged, with no staging directory left beside it.  Run on whichever
session the suite has; the last test runs this module again on Spark Connect."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from pyspark.ml.util import DefaultParamsWriter

from mfspark import ALS, ALSModel
from mfspark.io import fs
from mfspark.io.model import MARKER, ModelExistsError

from conftest import CONNECT_ENV, ROOT, id_frame


class Boom(RuntimeError):
    """The failure injected into a save."""


def make_model(spark, mu: float, seed: int) -> ALSModel:
    rng = np.random.default_rng(seed)

    def frame(ids):
        return id_frame(spark, ids, rng.standard_normal((len(ids), 2)),
                        rng.standard_normal(len(ids)))
    return ALSModel(frame([1, 2, 3]), frame([7, 8]), mu, {"rank": 2}).setPredictionCol(
        f"p{seed}")


def contents(model: ALSModel) -> tuple:
    """What a saved model holds: mu, its parameters and every factor row."""
    rows = {side: sorted((r["id"], r["bias"], tuple(r["features"])) for r in frame.collect())
            for side, frame in (("u", model.userFactors), ("i", model.itemFactors))}
    return model.mu, model.getPredictionCol(), rows["u"], rows["i"]


def siblings(path) -> list[str]:
    """Hidden staging or replaced directories left beside ``path``."""
    return sorted(n for n in os.listdir(path.parent) if n.startswith(f".{path.name}."))


@pytest.fixture
def saved(spark, tmp_path):
    """A committed model at ``tmp_path/model``, the model saved and what it holds."""
    old = make_model(spark, 3.5, seed=1)
    path = tmp_path / "model"
    old.save(str(path))
    return path, contents(ALSModel.load(str(path)))


def _fail_item_factors(monkeypatch, frame):
    writer = type(frame.write)
    parquet = writer.parquet

    def failing(self, path, *args, **kwargs):
        if "item_factors" in path:  # the user factors are already written: midway
            raise Boom("disk full")
        return parquet(self, path, *args, **kwargs)
    monkeypatch.setattr(writer, "parquet", failing)


def _fail_params(monkeypatch):
    save = DefaultParamsWriter.saveMetadata

    def failing(*args, **kwargs):
        save(*args, **kwargs)
        raise Boom("lost the connection")
    monkeypatch.setattr(DefaultParamsWriter, "saveMetadata", staticmethod(failing))


def _fail_rename_into_place(monkeypatch):
    rename = fs.rename

    def failing(spark, src, dst):
        if ".incomplete-" in src:
            raise Boom("rename refused")
        rename(spark, src, dst)
    monkeypatch.setattr(fs, "rename", failing)


def _fail_commit(monkeypatch):
    write_text = fs.write_text

    def failing(spark, path, text):
        if path.endswith(f"/{MARKER}"):
            raise Boom("quota exceeded")
        write_text(spark, path, text)
    monkeypatch.setattr(fs, "write_text", failing)


@pytest.mark.parametrize("step", ["factors", "params", "rename", "commit"])
def test_failed_model_overwrite_keeps_the_previous_model(spark, saved, monkeypatch, step):
    path, before = saved
    new = make_model(spark, -1.0, seed=2)
    {"factors": lambda: _fail_item_factors(monkeypatch, new.userFactors),
     "params": lambda: _fail_params(monkeypatch),
     "rename": lambda: _fail_rename_into_place(monkeypatch),
     "commit": lambda: _fail_commit(monkeypatch)}[step]()
    with pytest.raises(Boom):
        new.write().overwrite().save(str(path))
    monkeypatch.undo()
    assert contents(ALSModel.load(str(path))) == before
    assert (path / MARKER).exists() and siblings(path) == []


def test_successful_overwrite_replaces_the_model(spark, saved):
    path, before = saved
    new = make_model(spark, -1.0, seed=2)
    with pytest.raises(ModelExistsError, match=re.escape("write().overwrite()")):
        new.save(str(path))
    assert contents(ALSModel.load(str(path))) == before
    new.write().overwrite().save(str(path))
    after = contents(ALSModel.load(str(path)))
    assert after == contents(new) and after != before
    assert siblings(path) == []


def test_an_uncommitted_model_is_never_left_in_place(spark, tmp_path, monkeypatch):
    """A first save whose commit fails leaves nothing at the path (not a directory that
    would look like a model without being one)."""
    path = tmp_path / "fresh"
    _fail_commit(monkeypatch)
    with pytest.raises(Boom):
        make_model(spark, 1.0, seed=3).save(str(path))
    assert not path.exists() and siblings(path) == []


@pytest.mark.parametrize("step", ["params", "rename", "commit"])
def test_estimator_overwrite_is_atomic_too(spark, tmp_path, monkeypatch, step):
    path = str(tmp_path / "als")
    ALS(rank=3, regParam=0.5).save(path)
    {"params": lambda: _fail_params(monkeypatch),
     "rename": lambda: _fail_rename_into_place(monkeypatch),
     "commit": lambda: _fail_commit(monkeypatch)}[step]()
    with pytest.raises(Boom):
        ALS(rank=7, regParam=0.01).write().overwrite().save(path)
    monkeypatch.undo()
    kept = ALS.load(path)
    assert (kept.getRank(), kept.getRegParam()) == (3, 0.5)
    assert siblings(tmp_path / "als") == []
    with pytest.raises(ModelExistsError, match=re.escape("write().overwrite()")):
        ALS(rank=7).save(path)
    ALS(rank=7, regParam=0.01).write().overwrite().save(path)
    replaced = ALS.load(path)
    assert (replaced.getRank(), replaced.getRegParam()) == (7, 0.01)


@pytest.mark.skipif(os.environ.get(CONNECT_ENV) == "1", reason="already on Spark Connect")
def test_atomic_overwrite_on_spark_connect(tmp_path):
    """This module in a fresh process whose session is a Spark Connect client: the same
    writers, with the file operations of the client (PyArrow) instead of the JVM's."""
    env = {**os.environ, CONNECT_ENV: "1", "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "base"), __file__],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert re.search(r"\b9 passed, 1 skipped\b", summary), summary
