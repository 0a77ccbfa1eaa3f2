"""The Ray back end on a real multi-node cluster: a head and two worker nodes, each its own raylet
with one CPU and a resource naming it, all on this machine (Ray's own multi-node test utility,
``ray.cluster_utils.Cluster``). The head offers no CPU, so every candidate trains on a worker node;
the search joins the cluster by its address, as a person's does with ``--ray-address``.

Each test asserts on the records: the genomes and fitness, the node each candidate trained on,
what is left after a node or the search is killed. The node-killing test runs last: it leaves one
worker node. Skipped as a whole when Ray is not installed, unless AUTOMODEL_REQUIRE_RAY=1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

if importlib.util.find_spec("ray") is None:
    if os.environ.get("AUTOMODEL_REQUIRE_RAY") == "1":
        pytest.fail(
            "AUTOMODEL_REQUIRE_RAY=1 but Ray is not installed; pip install -r requirements-ray.txt", pytrace=False
        )
    pytest.skip(
        "Ray is not installed (pip install -r requirements-ray.txt); "
        "set AUTOMODEL_REQUIRE_RAY=1 to make this a failure",
        allow_module_level=True,
    )

from processes import live_processes, run_cli, spawn_cli  # noqa: E402

from automodel.store import Store  # noqa: E402
from automodel.testing.local_cluster import NODES, LocalCluster  # noqa: E402

pytestmark = pytest.mark.slow  # real processes

SMALL = ["--dataset", "digits", "--population", "4", "--epochs", "1", "--final-epochs", "1", "--seed", "0"]
STOP_S = 10.0  # a stop ends every task on every node within this


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def automodel(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout, env=_env())


def spawn(*args: str, **kw) -> subprocess.Popen:
    return spawn_cli(*args, env=_env(), **kw)


def outcomes(db: Path, run_id: str) -> list[tuple]:
    return [
        (r["generation"], r["index"], r["key"], r["status"], r["fitness"], r["train_loss"])
        for r in Store(db).individuals(run_id)
    ]


def training(db: Path, run_id: str) -> set[str]:
    """The candidates reporting progress now."""
    if not db.exists():
        return set()
    return {doc["worker"] for doc in Store(db).progress(run_id) if doc["worker"].startswith("g")}


def candidate_processes() -> set[int]:
    """Ray worker processes training a candidate now (a task names its worker ``ray::automodel-g…``)."""
    return live_processes(lambda cmdline: cmdline.startswith(b"ray::automodel-g"))


def end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    made = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield made
    finally:
        made.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small search on the local back end with one thread, as each Ray task trains."""
    db = tmp_path_factory.mktemp("local") / "db.json"
    result = automodel("run", *SMALL, "--generations", "2", "--run-id", "local", "--db", str(db), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    return db


def on_cluster(cluster: LocalCluster, *args: str) -> list[str]:
    return [*args, "--backend", "ray", "--ray-address", cluster.address, "--quiet"]


def node_ids(db: Path, run_id: str) -> set[str]:
    """The node id prefixes the candidates recorded (``address/node id``)."""
    return {r["node"].split("/", 1)[1] for r in Store(db).individuals(run_id) if not r.get("cached")}


def test_a_candidate_larger_than_every_node_is_refused_in_one_sentence(cluster, tmp_path):
    db = tmp_path / "db.json"
    result = automodel(*on_cluster(cluster, "run", *SMALL, "--cpus-per-candidate", "2", "--db", str(db)), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "cpus_per_candidate = 2" in message and "at most 1" in message, message
    assert "Traceback" not in result.stderr


def test_a_search_over_two_worker_nodes_gives_the_local_genomes_and_fitness(cluster, reference, tmp_path):
    db = tmp_path / "db.json"
    result = automodel(*on_cluster(cluster, "run", *SMALL, "--generations", "2", "--run-id", "c", "--db", str(db)))
    assert result.returncode == 0, result.stderr[-3000:]
    run, local = Store(db).get_run("c"), Store(reference).get_run("local")
    assert run["status"] == "completed"
    assert outcomes(db, "c") == outcomes(reference, "local")
    assert (run["best_key"], run["test_accuracy"]) == (local["best_key"], local["test_accuracy"])
    # Candidates trained on both worker nodes, none on the head (it offers no CPU).
    assert node_ids(db, "c") == {cluster.node_id(n)[:8] for n in NODES}
    shown = automodel("show", "c", "--db", str(db), "--json")
    nodes = json.loads(shown.stdout)["nodes"]
    assert sum(nodes.values()) == sum(not r.get("cached") for r in Store(db).individuals("c")) and len(nodes) == 2
    text = automodel("show", "c", "--db", str(db)).stdout
    assert all(f"{node} ({count})" in text for node, count in nodes.items()), text


def _digit_folder(root: Path) -> Path:
    """The bundled digits written as a folder of PNG files, one folder per class."""
    from PIL import Image

    from automodel.data import load_dataset

    data = load_dataset("digits", seed=0)
    for n, (image, label) in enumerate(zip(data.train_x[:400], data.train_y[:400])):
        folder = root / data.classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{n}.png")
    return root


def test_worker_nodes_need_no_copy_of_the_dataset(cluster, tmp_path, wait_for):
    """The image folder is taken away as soon as the search has loaded it: every candidate still
    trains on the worker nodes, from the copy in Ray's object store."""
    folder = _digit_folder(tmp_path / "images")
    db = tmp_path / "db.json"
    process = spawn(
        *on_cluster(
            cluster,
            "run",
            "--dataset",
            str(folder),
            "--population",
            "4",
            "--generations",
            "1",
            "--epochs",
            "3",
            "--final-epochs",
            "1",
            "--seed",
            "0",
            "--run-id",
            "f",
            "--db",
            str(db),
        )
    )
    try:
        wait_for(lambda: training(db, "f"), 180, "the first candidate to train")
        assert not Store(db).individuals("f"), "the folder must go before any candidate is recorded"
        shutil.move(folder, tmp_path / "gone")
        process.wait(timeout=300)
    finally:
        end(process)
    assert process.returncode == 0, process.stderr.read()[-3000:] if process.stderr else ""
    records = Store(db).individuals("f")
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert node_ids(db, "f") == {cluster.node_id(n)[:8] for n in NODES}
    assert Store(db).get_run("f")["test_accuracy"] is not None


def test_stop_cancels_the_tasks_on_every_node_within_seconds(cluster, tmp_path, wait_for):
    db = tmp_path / "db.json"
    process = spawn(
        *on_cluster(cluster, "run", *SMALL, "--generations", "1", "--epochs", "20", "--run-id", "s", "--db", str(db)),
        start_new_session=True,
    )
    try:
        wait_for(lambda: len(training(db, "s")) >= 2, 180, "a candidate training on each node")
        assert len(candidate_processes()) >= 2
        started = time.monotonic()
        result = automodel("stop", "s", "--db", str(db), timeout=60)
        wait_for(lambda: not candidate_processes(), STOP_S, "every node's candidate to be cancelled")
        elapsed = time.monotonic() - started
        process.wait(timeout=30)
    finally:
        end(process)
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < STOP_S and Store(db).get_run("s")["status"] == "stopped"


def test_a_search_killed_mid_generation_resumes_on_the_cluster_to_the_same_result(
    cluster, reference, tmp_path, wait_for
):
    db = tmp_path / "db.json"
    process = spawn(*on_cluster(cluster, "run", *SMALL, "--generations", "2", "--run-id", "k", "--db", str(db)))
    try:
        wait_for(lambda: len(Store(db).individuals("k")) >= 2 if db.exists() else False, 240, "two candidates")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        end(process)
    recorded = outcomes(db, "k")
    assert 2 <= len(recorded) < 8, "killed mid-run"
    wait_for(lambda: not candidate_processes(), 60, "the dead search's tasks to end")
    resumed = automodel("resume", "k", "--db", str(db), "--quiet")  # the run's settings name the cluster
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert outcomes(db, "k") == outcomes(reference, "local")
    assert outcomes(db, "k")[: len(recorded)] == recorded, "what was recorded before is kept"
    assert Store(db).get_run("k")["test_accuracy"] == Store(reference).get_run("local")["test_accuracy"]


def test_a_worker_node_lost_mid_generation_moves_its_candidates_to_the_other(cluster, reference, tmp_path, wait_for):
    """Runs last: node b does not come back."""
    db = tmp_path / "db.json"
    process = spawn(*on_cluster(cluster, "run", *SMALL, "--generations", "2", "--run-id", "n", "--db", str(db)))
    try:
        wait_for(lambda: len(training(db, "n")) >= 2, 180, "a candidate training on each node")
        before = len(Store(db).individuals("n"))
        cluster.kill_raylet("b")
        killed_at = time.time()
        process.wait(timeout=300)
    finally:
        end(process)
    assert process.returncode == 0, process.stderr.read()[-3000:] if process.stderr else ""
    assert Store(db).get_run("n")["status"] == "completed"
    # The undisturbed run's result: the candidates node b was training were trained again on node a
    # (each recorded once, none failed), and nothing recorded before the loss changed.
    assert outcomes(db, "n") == outcomes(reference, "local")
    records = Store(db).individuals("n")
    later = [r for r in records if r["recorded_at"] > killed_at]
    assert len(records) - before == len(later) > 0
    assert all(r["node"].endswith(cluster.node_id("a")[:8]) for r in later)
    recovered_s = min(r["recorded_at"] for r in later) - killed_at
    print(f"first candidate recorded {recovered_s:.1f} s after node b was lost")
