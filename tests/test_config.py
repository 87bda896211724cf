"""Settings: TOML loading, validation messages, flag overrides, the shipped files."""

from __future__ import annotations

import pytest

from mfspark import config as cfg
from mfspark.config import ALSParams, ConfigError
from mfspark.io import settings

from conftest import ROOT


def test_defaults_file_equals_builtin_defaults():
    assert settings.load(ROOT / "conf" / "default.toml") == cfg.JobConfig()


def test_every_shipped_config_loads():
    files = sorted((ROOT / "conf").glob("*.toml"))
    assert files
    for path in files:
        assert isinstance(settings.load(path), cfg.JobConfig)


@pytest.mark.parametrize("table,key,value,message", [
    ("als", "rank", -1, "als.rank must be an integer >= 0, got -1"),
    ("als", "reg", 0.0, "als.reg must be a finite number > 0, got 0.0"),
    ("als", "reg_scale", "ridge", "als.reg_scale must be one of"),
    ("als", "iterations", 0, "als.iterations must be an integer >= 1, got 0"),
    ("als", "biases", "yes", "als.biases must be true or false, got 'yes'"),
    ("input", "format", "xls", "input.format must be one of"),
    ("input", "on_bad_rows", "drop", "input.on_bad_rows must be one of ('fail', 'quarantine')"),
    ("input", "duplicates", "first", "input.duplicates must be one of ('fail', 'last', 'mean')"),
    ("input", "rating_range", [5, 1], "input.rating_range must be [min, max] with finite min"),
    ("input", "rating_range", [1], "input.rating_range must be [min, max]"),
    ("input", "rating_range", True, "input.rating_range must be [min, max]"),
    ("als", "block_memory_mb", 0, "als.block_memory_mb must be an integer >= 1, got 0"),
    ("output", "test_fraction", 1.5, "output.test_fraction must be a number in [0, 1), got 1.5"),
])
def test_bad_values_name_field_and_value(table, key, value, message):
    with pytest.raises(cfg.ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        cfg.from_dict({table: {key: value}})


def test_unknown_keys_are_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[als]\nrank = 5\nlambda = 0.1\n")
    with pytest.raises(cfg.ConfigError, match=r"unknown key\(s\) \['lambda'\] in \[als\]"):
        settings.load(path)
    with pytest.raises(cfg.ConfigError, match="unknown table"):
        cfg.from_dict({"model": {}})


def test_flags_override_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[als]\nrank = 5\nreg = 2.0\n[input]\npath = "x.csv"\n')
    c = cfg.override(settings.load(path), rank=7, out="o", path=None)
    assert (c.als.rank, c.als.reg, c.out, c.input.path) == (7, 2.0, "o", "x.csv")


def test_round_trip_through_dict():
    c = cfg.override(cfg.JobConfig(), rank=3, delimiter=";", test_fraction=0.2)
    assert cfg.from_dict(cfg.to_dict(c)) == c


def test_rating_range_in_toml(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("[input]\nrating_range = [1, 10]\n")
    assert settings.load(path).input.rating_range == (1, 10)
    path.write_text("[input]\nrating_range = false\n")
    off = settings.load(path)
    assert off.input.rating_range is None
    assert cfg.to_dict(off)["input"]["rating_range"] is False  # TOML has no null
    assert cfg.from_dict(cfg.to_dict(off)) == off
    assert cfg.JobConfig().input.rating_range == (0.5, 5.0)
    assert cfg.override(cfg.JobConfig(), rating_range=False).input.rating_range is None


def test_rank_zero_needs_biases():
    with pytest.raises(cfg.ConfigError, match="als.rank must be >= 1 when no biases are fitted"):
        cfg.ALSParams(rank=0, biases=False)


def test_dumps_round_trips_through_load(tmp_path):
    config = cfg.override(cfg.JobConfig(), path='dir/"quoted" r.csv', delimiter="\t",
                          header=True, rank=3, reg=1e-05, reg_scale="none",
                          num_user_blocks=4, rating_range=(1.0, 10.0), test_fraction=0.25)
    path = tmp_path / "c.toml"
    path.write_text(settings.dumps(config, "first line\nsecond line"))
    assert path.read_text().startswith("# first line\n# second line\n")
    assert settings.load(path) == config
    no_range = cfg.override(cfg.JobConfig(), rating_range=False)
    path.write_text(settings.dumps(no_range))
    assert settings.load(path).input.rating_range is None
    # an unset optional output setting is left out (TOML has no null), a set one kept
    assert "init_model" not in settings.dumps(cfg.JobConfig())
    warm = cfg.override(cfg.JobConfig(), init_model="models/yesterday")
    path.write_text(settings.dumps(warm))
    assert settings.load(path) == warm


@pytest.mark.parametrize("values,message", [
    ({"alpha": -1.0}, "als.alpha must be a finite number >= 0, got -1.0"),
    ({"alpha": float("nan")}, "als.alpha must be a finite number >= 0"),
    ({"implicit_prefs": "yes"}, "als.implicit_prefs must be true or false, got 'yes'"),
    ({"nonnegative": 1}, "als.nonnegative must be true or false, got 1"),
    ({"implicit_prefs": True, "rank": 0}, "als.rank must be >= 1"),
    ({"cg_steps": 3}, "als.cg_steps must be 0 unless implicit feedback is on"),
    ({"implicit_prefs": True, "nonnegative": True, "cg_steps": 3},
     "als.cg_steps must be 0 unless implicit feedback is on and nonnegative factors are off"),
    ({"implicit_prefs": True, "cg_steps": -1}, "als.cg_steps must be an integer >= 0"),
])
def test_bad_settings_are_named(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ALSParams(**values)


def test_biases_default_by_mode():
    assert ALSParams().fit_biases and not ALSParams(implicit_prefs=True).fit_biases
    assert not ALSParams(biases=False).fit_biases
    assert ALSParams(implicit_prefs=True, biases=True).fit_biases  # asked for: fitted
