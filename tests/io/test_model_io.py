"""The saved model: atomic commit, no overwrite unless asked, Parquet + JSON only on load."""

from __future__ import annotations

import pickle

import pytest

from mfspark.io.model import (MARKER, IncompleteModelError, ModelExistsError, read_model,
                              write_model)

META = {"format": "mfspark-model", "rank": 1}


class Tripwire:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def frames(spark, value):
    users = spark.createDataFrame([(1, value, [value])],
                                  "id long, bias double, features array<double>")
    return users, users


def test_write_then_read(spark, tmp_path):
    model_dir = str(tmp_path / "model")
    write_model(spark, model_dir, *frames(spark, 0.5), META, overwrite=False)
    model = read_model(spark, model_dir)
    assert model.metadata == META
    assert [tuple(r) for r in model.user_factors.collect()] == [(1, 0.5, [0.5])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging left


def test_existing_model_is_kept_unless_overwrite(spark, tmp_path):
    model_dir = str(tmp_path / "model")
    write_model(spark, model_dir, *frames(spark, 0.5), META, overwrite=False)
    with pytest.raises(ModelExistsError, match="--overwrite"):
        write_model(spark, model_dir, *frames(spark, 9.0), META, overwrite=False)
    assert read_model(spark, model_dir).user_factors.first().bias == 0.5
    write_model(spark, model_dir, *frames(spark, 9.0), META, overwrite=True)
    assert read_model(spark, model_dir).user_factors.first().bias == 9.0


def test_crash_leftovers_never_load_and_are_cleared(spark, tmp_path):
    # what a run killed before its commit leaves: a staging dir and/or a model without marker
    for name in (".model.incomplete-0123456789ab", "model"):
        part = tmp_path / name
        users, _ = frames(spark, 1.0)
        users.write.parquet(str(part / "user_factors"))
        users.write.parquet(str(part / "item_factors"))
        (part / "metadata.json").write_text("{}")
        with pytest.raises(IncompleteModelError, match=f"no {MARKER} marker"):
            read_model(spark, str(part))
    import shutil

    shutil.rmtree(tmp_path / "model")
    write_model(spark, str(tmp_path / "model"), *frames(spark, 2.0), META, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the stale staging is gone


def test_loading_never_unpickles(spark, tmp_path):
    model_dir = tmp_path / "model"
    write_model(spark, str(model_dir), *frames(spark, 0.5), META, overwrite=False)
    tripped = tmp_path / "tripped"
    for name in ("model.pkl", "user_factors/extra.pickle", "metadata.pkl"):
        (model_dir / name).write_bytes(pickle.dumps(Tripwire(str(tripped))))
    model = read_model(spark, str(model_dir))
    assert model.user_factors.count() == 1 and model.metadata == META
    assert not tripped.exists()
    # what the loader reads: Parquet and JSON only
    kept = {p.suffix for p in model_dir.rglob("*")
            if p.is_file() and not p.name.startswith((".", "_"))}
    assert kept - {".parquet", ".json"} == {".pkl", ".pickle"}  # ... and the strays it ignored
