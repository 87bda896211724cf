"""jobs/train.py on a real Spark standalone cluster (a master and two workers on 127.0.0.1),
submitted as a user would: ``spark-submit --master spark://...`` with the library on
``--py-files`` and executors whose Python has no mfspark installed: once with the ``.zip`` and
once with the wheel (Spark puts only the ``.zip``, ``.egg`` and ``.jar`` files of ``--py-files``
on the executors' ``sys.path``; the job ships a pure-Python wheel again as a ``.zip``)."""

from __future__ import annotations

import json

import pytest

from cluster import StandaloneCluster, spark_env, spark_submit
from sparkapp import (JOB, TEST_SIZING, event_log_conf, max_model_difference, read_event_log,
                      submit_args)

#: Wait for both executors before the first job, so that the work is spread over both workers.
CLUSTER_CONF = {"spark.cores.max": "2", "spark.scheduler.minRegisteredResourcesRatio": "1.0",
                "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s"}


@pytest.fixture
def cluster(tmp_path):
    with StandaloneCluster(tmp_path / "cluster", workers=2, cores=1, memory="1g") as running:
        yield running


def submit(cluster, tmp_path, archive, executor_python, ml100k_path, when=None):
    conf = {**TEST_SIZING, **CLUSTER_CONF, **event_log_conf(tmp_path / "events")}
    args = submit_args(cluster.url, archive, executor_python, str(tmp_path / "out"),
                       ml100k_path, conf=conf, job=JOB)
    run = spark_submit(args, cwd=tmp_path, env=spark_env(), when=when)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    events = read_event_log(tmp_path / "events")
    assert events.app_id.startswith("app-"), f"not run on the cluster: {events.app_id}"
    return run, events


def report(capsys, title, run, events, diff) -> None:
    with capsys.disabled():
        print(f"\n[{title}] {events.app_id} {run.seconds:.0f}s; executors (id: worker UI port): "
              f"{events.executor_ui_port}; successful tasks per executor: {dict(events.tasks)}; "
              f"failed task attempts: {dict(events.failures)}; stage re-attempts: "
              f"{events.stage_attempts}; max |model - local model| = {diff:.2e}")


def test_train_on_standalone_cluster(cluster, tmp_path, dist_zip, executor_python, ml100k_path,
                                     local_submit, capsys):
    run, events = submit(cluster, tmp_path, dist_zip, executor_python, ml100k_path)
    local_run, local_model = local_submit
    assert local_run.returncode == 0
    diff = max_model_difference(tmp_path / "out" / "model", local_model)
    report(capsys, "standalone cluster", run, events, diff)
    workers = {w.webui_port for w in cluster.workers}
    by_worker = events.tasks_by_worker()
    assert set(by_worker) == workers and min(by_worker.values()) > 0, by_worker
    assert diff <= 1e-5
    meta = json.loads((tmp_path / "out" / "model" / "metadata.json").read_text())
    local_meta = json.loads((local_model / "metadata.json").read_text())
    assert meta["mu"] == pytest.approx(local_meta["mu"], abs=1e-12)
    for count in ("num_train", "num_test"):
        assert meta[count] == local_meta[count]


def test_executor_loss_is_survived(cluster, tmp_path, dist_zip, executor_python, ml100k_path,
                                   local_submit, capsys):
    """Kill one worker (with its executor) once the first iteration is done: the job finishes
    on the other, recomputing the lost cached blocks, and the model is the undisturbed one.
    The library goes as the wheel ``make dist`` writes (the executors import it from there)."""
    wheel, = dist_zip.parent.glob("mfspark-*-py3-none-any.whl")
    killed = []

    def lose_worker() -> None:
        cluster.kill_worker(1)
        killed.append(cluster.workers[1].webui_port)

    run, events = submit(cluster, tmp_path, wheel, executor_python, ml100k_path,
                         when=("INFO iteration   1 ", lose_worker))
    assert "shipped to the executors as " + wheel.name + ".zip" in run.stdout + run.stderr
    assert killed, "the job ended before a worker could be killed"
    assert "INFO iteration   4 " in run.stdout
    diff = max_model_difference(tmp_path / "out" / "model", local_submit[1])
    report(capsys, "standalone cluster, worker killed after iteration 1", run, events, diff)
    lost = {ex for ex, port in events.executor_ui_port.items() if port == killed[0]}
    assert lost and lost <= set(events.removed), (lost, events.removed)
    gone_at = min(events.removed[ex] for ex in lost)
    held = {block for seq, ex, block in events.cached if ex in lost and seq < gone_at}
    again = {block for seq, ex, block in events.cached if ex not in lost and seq > gone_at}
    with capsys.disabled():
        print(f"  cached blocks on the lost executor: {len(held)}, of them re-cached on the "
              f"survivor after the loss: {len(held & again)}")
    assert held, "the killed executor held no cached blocks: nothing was lost"
    assert held & again, "no lost cached block was recomputed on the surviving executor"
    survivors = set(events.executor_ui_port) - lost
    assert sum(events.tasks[ex] for ex in survivors) > 0
    assert diff <= 1e-5
