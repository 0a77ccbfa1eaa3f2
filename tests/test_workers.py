"""Several candidates at once in worker processes: same search, same results, stop, kill and resume,
per-worker progress, and a worker that dies failing only its candidate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from processes import live_processes, process_state, spawn_cli

from automodel.config import Config, resolve_workers
from automodel.evaluators.worker_pool import WorkerPoolEvaluator, train_in_worker
from automodel.evolution.loop import Reporter, Search
from automodel.store import Store
from automodel.training.trainer import DeviceData

ROOT = Path(__file__).resolve().parent.parent
SMALL = {
    "dataset": "digits",
    "population": 4,
    "generations": 2,
    "epochs": 1,
    "final_epochs": 1,
    "seed": 5,
    "device": "cpu",
}


def run_in_process(tmp_path: Path, workers, reporter: Reporter | None = None, **changes) -> Store:
    config = Config.from_dict({**SMALL, "workers": workers, **changes})
    store = Store(tmp_path / "db.json")
    store.create_run("w", config.to_dict())
    assert Search(config, store, "w", reporter=reporter).run() == "completed"
    return store


def outcomes(store: Store) -> list[tuple]:
    return [(r["generation"], r["index"], r["key"], r["fitness"], r["status"]) for r in store.individuals("w")]


def test_auto_workers_fill_the_cpus_with_one_thread_each():
    assert resolve_workers("auto", "cpu", population=8, cpus=2) == (2, 1)
    assert resolve_workers("auto", "cpu", population=8, cpus=16) == (8, 2)  # never more than a generation
    assert resolve_workers("auto", "cuda", population=8, cpus=16) == (4, 4)
    assert resolve_workers(1, "cpu", population=8, cpus=2) == (1, 2)
    assert resolve_workers(3, "cpu", population=8, cpus=12) == (3, 4)


def test_two_workers_give_the_same_search_as_one_with_equal_threads(tmp_path):
    """Same genomes, same fitness values: a candidate trains with one thread either way."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run_in_process(tmp_path / "one", 1)
    finally:
        torch.set_num_threads(before)
    two = run_in_process(tmp_path / "two", 2)
    assert outcomes(two) == outcomes(one)
    assert two.get_run("w")["workers"] == 2 and two.get_run("w")["threads_per_worker"] >= 1
    assert two.get_run("w")["best_fitness"] == one.get_run("w")["best_fitness"]


class Timeline(Reporter):
    def __init__(self):
        self.seen: dict[str, list[float]] = {}

    def candidate_progress(self, task, info):
        self.seen.setdefault(task.worker_label, []).append(time.monotonic())


def test_workers_train_side_by_side_and_report_each_candidate(tmp_path):
    timeline = Timeline()
    store = run_in_process(tmp_path, 2, reporter=timeline, epochs=3, generations=1)
    # Each record names the worker process that trained it: two workers, neither of them this process.
    workers = {r["worker"] for r in store.individuals("w") if not r["cached"]}
    assert len(workers) == 2 and f"pid {os.getpid()}" not in workers, workers
    assert all(w.startswith("pid ") and w[4:].isdigit() for w in workers), workers
    spans = {label: (min(t), max(t)) for label, t in timeline.seen.items() if label.startswith("g0")}
    assert len(spans) == 4
    overlapping = sum(1 for a in spans.values() for b in spans.values() if a < b and a[1] > b[0])
    assert overlapping >= 1, f"no two candidates trained at the same time: {spans}"


def train_or_die(task):
    """Runs in a worker process: the worker of candidate g0-i1 dies (as if the system killed it)."""
    if task.worker_label == "g0-i1":
        os.kill(os.getpid(), signal.SIGKILL)
    return train_in_worker(task)


def test_a_worker_that_dies_fails_only_its_candidate(tmp_path):
    config = Config.from_dict({**SMALL, "workers": 2, "generations": 1})
    store = Store(tmp_path / "db.json")
    store.create_run("w", config.to_dict())

    def pool(data, settings):
        return WorkerPoolEvaluator(
            DeviceData(data, torch.device("cpu")), replace(settings, threads=1), 2, task_function=train_or_die
        )

    assert Search(config, store, "w", evaluator_factory=pool).run() == "completed"
    rows = store.individuals("w", 0)
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "ok"]
    assert "worker process died" in rows[1]["reason"]
    assert store.get_run("w")["test_accuracy"] is not None


def hang_or_train(task):
    """Runs in a worker process: candidate g0-i2 is stuck (as inside a kernel: no stop check, no return)."""
    if task.worker_label == "g0-i2":
        time.sleep(3600)
    return train_in_worker(task)


def crash_or_train(task):
    """Runs in a worker process: candidate g0-i1 and the final training die of a segmentation fault."""
    if task.worker_label in ("g0-i1", "final"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return train_in_worker(task)


def test_a_candidate_stuck_in_its_worker_is_killed_after_its_time_limit_and_recorded_as_timeout(tmp_path):
    config = Config.from_dict({**SMALL, "workers": 2, "generations": 1, "time_limit_s": 20})
    store = Store(tmp_path / "db.json")
    store.create_run("w", config.to_dict())

    def pool(data, settings):
        evaluator = WorkerPoolEvaluator(
            DeviceData(data, torch.device("cpu")), replace(settings, threads=1), 2, task_function=hang_or_train
        )
        evaluator.watchdog_margin_s = 2.0
        return evaluator

    started = time.monotonic()
    assert Search(config, store, "w", evaluator_factory=pool).run() == "completed"
    assert time.monotonic() - started < 150
    rows = store.individuals("w", 0)
    assert [r["status"] for r in rows] == ["ok", "ok", "timeout", "ok"]
    assert "time limit of 20 s" in rows[2]["reason"] and "worker was killed" in rows[2]["reason"]
    assert store.get_run("w")["test_accuracy"] is not None


def test_one_worker_trains_in_a_process_of_its_own_so_a_crash_fails_only_the_candidate(tmp_path):
    config = Config.from_dict({**SMALL, "workers": 1, "generations": 1})
    store = Store(tmp_path / "db.json")
    store.create_run("w", config.to_dict())
    made = []

    def pool(data, settings):
        made.append(Search(config, store, "w")._local_evaluator(data, settings))  # what a search builds
        made[-1].close()
        return WorkerPoolEvaluator(DeviceData(data, torch.device("cpu")), settings, 1, task_function=crash_or_train)

    assert Search(config, store, "w", evaluator_factory=pool).run() == "failed"  # the final training crashed too
    assert isinstance(made[0], WorkerPoolEvaluator) and made[0].workers == 1
    rows = store.individuals("w", 0)
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "ok"]
    assert "worker process died" in rows[1]["reason"]
    run = store.get_run("w")
    assert run["status"] == "failed" and "final training failed" in run["reason"]
    assert "worker process died" in run["reason"]


# ------------------------------------------------------------------------ real processes


def cli(*args: str, **kw) -> subprocess.Popen:
    return spawn_cli(*args, env=dict(os.environ), **kw)  # every thread: the workers divide them


def children_of(pid: int) -> set[int]:
    return {child for child in live_processes(lambda _: True) if (process_state(child) or ("", 0))[1] == pid}


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[0] != "Z"


ARGS = [
    "--dataset",
    "digits",
    "--population",
    "4",
    "--generations",
    "3",
    "--epochs",
    "3",
    "--final-epochs",
    "1",
    "--seed",
    "2",
    "--workers",
    "2",
    "--device",
    "cpu",
    "--quiet",
]


@pytest.mark.slow
def test_stop_sigkill_and_resume_with_two_workers(tmp_path, wait_for):
    """Stop takes effect within seconds; a SIGKILLed search leaves no worker behind; resume ends
    where an uninterrupted run ends."""
    reference = cli("run", *ARGS, "--run-id", "r", "--db", str(tmp_path / "ref.json"))
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-2000:]

    db = tmp_path / "db.json"
    search = cli("run", *ARGS, "--run-id", "r", "--db", str(db))
    wait_for(lambda: db.exists() and Store(db).individuals("r"), 120, "the first candidate")
    workers = wait_for(lambda: children_of(search.pid), 30, "the worker processes")
    stop_asked = time.monotonic()
    assert cli("stop", "r", "--db", str(db)).wait(timeout=60) == 0
    search.wait(timeout=60)
    assert time.monotonic() - stop_asked < 15
    assert Store(db).get_run("r")["status"] == "stopped"
    wait_for(lambda: not any(alive(p) for p in workers), 30, "the workers to end after a stop")

    resumed = cli("resume", "r", "--db", str(db), "--quiet")
    wait_for(lambda: len(Store(db).individuals("r")) >= 6, 120, "more candidates after resuming")
    workers = wait_for(lambda: children_of(resumed.pid), 30, "the worker processes")
    os.kill(resumed.pid, signal.SIGKILL)
    resumed.wait(timeout=30)
    wait_for(lambda: not any(alive(p) for p in workers), 30, "the workers to die with the search")

    final = cli("resume", "r", "--db", str(db), "--quiet")
    assert final.wait(timeout=300) == 0, final.stderr.read()[-2000:]
    got, want = Store(db), Store(tmp_path / "ref.json")
    assert [(r["key"], r["fitness"]) for r in got.individuals("r")] == [
        (r["key"], r["fitness"]) for r in want.individuals("r")
    ]
    assert got.get_run("r")["best_fitness"] == want.get_run("r")["best_fitness"]
    show = json.loads(
        subprocess.run(
            [sys.executable, "-m", "automodel", "show", "r", "--json", "--db", str(db)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert show["status"] == "completed"


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_bad_workers_value_is_one_sentence(tmp_path, value):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "automodel",
            "run",
            "--dataset",
            "digits",
            "--workers",
            value,
            "--db",
            str(tmp_path / "db.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "workers" in result.stderr and ("auto" in result.stderr)
