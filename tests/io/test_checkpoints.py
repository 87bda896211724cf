"""The run's state on disk: the run record, history entries, the last complete iteration."""

from __future__ import annotations

import pytest

from mfspark.io import checkpoints as ck


@pytest.fixture
def work(tmp_path):
    return tmp_path


def commit(path, *parts):
    for part in parts:
        (path / part).mkdir(parents=True, exist_ok=True)
        (path / part / "_SUCCESS").write_text("")


def test_run_record_round_trip(spark, work):
    assert ck.read_run(spark, str(work)) is None
    ck.write_run(spark, str(work), {"als": {"seed": 3}, "mu": 3.5})
    assert ck.read_run(spark, str(work)) == {"als": {"seed": 3}, "mu": 3.5}


def test_last_complete_needs_both_half_steps_and_the_history(spark, work):
    w = str(work)
    assert ck.last_complete(spark, w, 5) is None
    commit(work, "iter-0000/item")
    assert ck.last_complete(spark, w, 5) == 0
    commit(work, "iter-0001/user", "iter-0001/item")
    assert ck.last_complete(spark, w, 5) == 0  # no history entry yet: not committed
    ck.write_entry(spark, w, 1, {"iteration": 1, "objective": 2.0})
    commit(work, "iter-0002/user")  # killed during iteration 2's item step
    (work / "iter-0002" / "item").mkdir()
    assert ck.last_complete(spark, w, 5) == 1
    assert ck.last_complete(spark, w, 0) == 0  # never beyond the requested iterations
    assert ck.read_history(spark, w, 1) == [{"iteration": 1, "objective": 2.0}]
