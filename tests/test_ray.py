"""The Ray back end with a local Ray (2 CPUs): same results as the local back end, stop, a dying
worker, resume, one dataset read per worker, live progress per candidate, no processes left.

Skipped as a whole when Ray is not installed (`pip install -r requirements-ray.txt`), unless
AUTOMODEL_REQUIRE_RAY=1, which makes a missing Ray a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
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

import torch  # noqa: E402
from processes import live_processes, run_cli, spawn_cli

from automodel import load_model  # noqa: E402
from automodel.config import SearchSpace  # noqa: E402
from automodel.data import load_dataset  # noqa: E402
from automodel.evaluators.base import LocalEvaluator, Task  # noqa: E402
from automodel.evolution.genome import sample_genome  # noqa: E402
from automodel.evolution.loop import Search  # noqa: E402
from automodel.store import Store  # noqa: E402
from automodel.training.trainer import DeviceData, TrainResult, TrainSettings, train_candidate  # noqa: E402

pytestmark = pytest.mark.slow  # real processes, servers or a browser

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--dataset", "digits", "--population", "4", "--epochs", "1", "--final-epochs", "1", "--seed", "0"]
# Command lines of Ray's processes (workers rename themselves "ray::...") and of our helper.
RAY_MARKERS = (b"ray::", b"/ray/core/src/ray/", b"/ray/_private/", b"/ray/dashboard/", b"AUTOMODEL-RAY-HEAD")


def _env(**extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def automodel(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout, env=env or _env())


def spawn(*args: str, **kw) -> subprocess.Popen:
    return spawn_cli(*args, env=_env(), **kw)


def ray_processes() -> set[int]:
    """Live (not zombie) processes of Ray or of AutoModel's Ray helper on this machine."""
    return live_processes(lambda cmdline: any(marker in cmdline for marker in RAY_MARKERS))


def training_workers(db: Path, run_id: str) -> set[str]:
    if not db.exists():
        return set()
    return {doc["worker"] for doc in Store(db).progress(run_id) if doc["worker"].startswith("g")}


def outcomes(db: Path, run_id: str) -> list[tuple]:
    return [
        (r["generation"], r["index"], r["key"], r["status"], r["fitness"], r["train_loss"])
        for r in Store(db).individuals(run_id)
    ]


def stop_quietly(process: subprocess.Popen, group: bool = False) -> None:
    if process.poll() is None:
        (os.killpg(process.pid, signal.SIGKILL) if group else process.kill())
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The small search with the local back end (one thread, as the Ray tasks train with)."""
    db = tmp_path_factory.mktemp("local") / "db.json"
    result = automodel("run", *SMALL, "--generations", "2", "--run-id", "local", "--db", str(db), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    return db


def test_ray_search_gives_the_local_search_genomes_and_fitness(reference, tmp_path, wait_for):
    db = tmp_path / "db.json"
    before = ray_processes()
    result = automodel(
        "run", *SMALL, "--generations", "2", "--backend", "ray", "--run-id", "ray", "--db", str(db), "--quiet"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    local, ray_ = Store(reference).get_run("local"), Store(db).get_run("ray")
    assert ray_["status"] == local["status"] == "completed"
    # candidate by candidate: same genome, status, fitness and even the last bits of the loss
    assert outcomes(db, "ray") == outcomes(reference, "local")
    assert len(outcomes(db, "ray")) == 8
    assert (ray_["best_key"], ray_["best_fitness"]) == (local["best_key"], local["best_fitness"])
    assert ray_["test_accuracy"] == local["test_accuracy"]  # the final training ran on Ray too
    assert load_model(ray_["best_model_path"]).classes == [str(i) for i in range(10)]
    assert Store(db).progress("ray") == []
    wait_for(lambda: not (ray_processes() - before), 10, "the run's Ray processes to end")


# A search on Ray whose workers run train_task wrapped to die (os._exit) for chosen candidates: the
# script is run as __main__, so Ray ships the wrapper to its workers by value.
DYING_WORKER_SEARCH = """
import os, sys
from pathlib import Path
from automodel.config import Config
from automodel.evaluators.ray_cluster import ray_evaluator_factory, train_task
from automodel.evolution.loop import Search
from automodel.store import Store

ALWAYS, ONCE, MARKERS = {"g0-i1"}, {"g0-i2"}, Path(sys.argv[2])

def dying_task(box, task, settings, board):
    label = task.worker_label
    if label in ALWAYS or (label in ONCE and not (MARKERS / label).exists()):
        (MARKERS / label).touch()
        os._exit(1)
    return train_task(box, task, settings, board)

config = Config.from_dict({"dataset": "digits", "population": 4, "generations": 1, "epochs": 1,
                           "final_epochs": 1, "seed": 0, "backend": "ray", "retries": 1})
store = Store(sys.argv[1])
store.create_run("c", config.to_dict())
status = Search(config, store, "c", data_dir="data",
                evaluator_factory=ray_evaluator_factory(config, task_function=dying_task)).run()
print(status)
"""


def test_a_worker_that_dies_fails_its_candidate_or_is_retried_and_the_run_completes(reference, tmp_path):
    db, markers, script = tmp_path / "db.json", tmp_path / "markers", tmp_path / "dying_workers.py"
    markers.mkdir()
    script.write_text(DYING_WORKER_SEARCH)
    # g0-i1's worker dies on every attempt (1 retry, so twice); g0-i2's only on the first.
    result = subprocess.run(
        [sys.executable, str(script), str(db), str(markers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("completed")
    assert {m.name for m in markers.iterdir()} == {"g0-i1", "g0-i2"}
    assert Store(db).get_run("c")["status"] == "completed"
    records = {r["index"]: r for r in Store(db).individuals("c")}
    assert records[1]["status"] == "error" and records[1]["fitness"] == 0.0
    assert "worker" in records[1]["reason"] and "died" in records[1]["reason"] and "2 attempts" in records[1]["reason"]
    expected = {r[1]: r for r in outcomes(reference, "local") if r[0] == 0}
    got = {r[1]: r for r in outcomes(db, "c")}
    for index in (0, 2, 3):  # the retried candidate trained as if nothing had happened
        assert got[index] == expected[index]
    generation = Store(db).generations("c")[0]
    assert generation["failed"] == 1 and generation["trained"] == 4


# A search on Ray whose worker for g0-i2 is stuck (as inside a kernel: it never returns nor checks a stop).
STUCK_WORKER_SEARCH = """
import sys, time
from automodel.config import Config
from automodel.evaluators.ray_cluster import ray_evaluator_factory, train_task
from automodel.evolution.loop import Search
from automodel.store import Store

def stuck_task(box, task, settings, board):
    if task.worker_label == "g0-i2":
        board.started.remote(task.worker_label)
        time.sleep(3600)
    return train_task(box, task, settings, board)

config = Config.from_dict({"dataset": "digits", "population": 4, "generations": 1, "epochs": 1,
                           "final_epochs": 1, "seed": 0, "backend": "ray", "time_limit_s": 8})
make = ray_evaluator_factory(config, task_function=stuck_task)

def factory(data, settings):
    evaluator = make(data, settings)
    evaluator.watchdog_margin_s = 2.0
    return evaluator

store = Store(sys.argv[1])
store.create_run("h", config.to_dict())
print(Search(config, store, "h", data_dir="data", evaluator_factory=factory).run())
"""


def test_a_worker_stuck_past_its_time_limit_is_killed_and_its_candidate_recorded_as_timeout(tmp_path):
    db, script = tmp_path / "db.json", tmp_path / "stuck_worker.py"
    script.write_text(STUCK_WORKER_SEARCH)
    result = subprocess.run(
        [sys.executable, str(script), str(db)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("completed")
    records = {r["index"]: r for r in Store(db).individuals("h")}
    assert [records[i]["status"] for i in range(4)] == ["ok", "ok", "timeout", "ok"]
    assert "time limit of 8 s" in records[2]["reason"] and "Ray worker was killed" in records[2]["reason"]


def test_stop_mid_generation_ends_the_run_within_seconds_and_resume_finishes_it(tmp_path, wait_for):
    db = tmp_path / "db.json"
    before = ray_processes()
    # Its own session, as the page starts it: a stop signals the whole process group.
    process = spawn(
        "run",
        *SMALL,
        "--generations",
        "1",
        "--epochs",
        "4",
        "--backend",
        "ray",
        "--run-id",
        "s",
        "--db",
        str(db),
        "--quiet",
        start_new_session=True,
    )
    try:
        workers = wait_for(
            lambda: len(training_workers(db, "s")) >= 2 and training_workers(db, "s"),
            180,
            "two candidates to report progress at once",
        )
        docs = {d["worker"]: d for d in Store(db).progress("s")}
        assert len({docs[w]["index"] for w in workers}) == len(workers), "one progress record per candidate"
        ours = ray_processes() - before
        assert ours, "the run has Ray processes"
        started = time.monotonic()
        result = automodel("stop", "s", "--db", str(db), timeout=60)
        elapsed = time.monotonic() - started
        process.wait(timeout=30)
    finally:
        stop_quietly(process, group=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 10, f"stop took {elapsed:.1f} s"
    assert Store(db).get_run("s")["status"] == "stopped" and process.returncode == 0
    assert len(Store(db).individuals("s")) < 4
    assert Store(db).progress("s") == []
    wait_for(
        lambda: not (ray_processes() & ours) and not (ray_processes() - before), 10, "no Ray processes left behind"
    )

    resumed = automodel("resume", "s", "--db", str(db), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = Store(db).get_run("s")
    assert run["status"] == "completed" and len(Store(db).individuals("s")) == 4
    assert all(r["status"] == "ok" for r in Store(db).individuals("s"))
    wait_for(lambda: not (ray_processes() - before), 10, "the resumed run's Ray processes to end")


def test_a_sigkilled_search_takes_its_local_ray_with_it(tmp_path, wait_for):
    db = tmp_path / "db.json"
    before = ray_processes()
    process = spawn(
        "run",
        *SMALL,
        "--generations",
        "1",
        "--epochs",
        "20",
        "--backend",
        "ray",
        "--run-id",
        "k",
        "--db",
        str(db),
        "--quiet",
    )
    try:
        wait_for(lambda: training_workers(db, "k"), 180, "training to start")
        ours = ray_processes() - before
        process.kill()
        process.wait(timeout=30)
    finally:
        stop_quietly(process)
    assert ours
    wait_for(lambda: not (ray_processes() & ours), 15, "the dead search's Ray processes to end")


def _tasks(generation: int, count: int, rng: random.Random) -> list[Task]:
    space = SearchSpace(
        conv_blocks=[1, 2],
        filters=[8, 16],
        dense_layers=[0, 1],
        dense_units=[32],
        learning_rates={"sgd": [3e-3, 1e-2], "adam": [3e-3, 1e-2], "adamw": [3e-3, 1e-2]},
    )
    return [Task(generation, i, sample_genome(space, rng), 1000 * generation + i) for i in range(count)]


def test_evaluator_reads_the_data_once_per_worker_and_matches_local_training_with_equal_threads():
    from automodel.evaluators.ray_cluster import RayEvaluator

    data = load_dataset("digits")
    settings = TrainSettings(epochs=2, augment="crop", progress_every_s=0.05)
    rng = random.Random(7)
    batches = [_tasks(0, 4, rng), _tasks(1, 2, rng)]
    handler = lambda *_: None  # noqa: E731
    previous = signal.signal(signal.SIGTERM, handler)
    results: dict[str, TrainResult] = {}
    progress: dict[str, list[dict]] = {}
    try:
        evaluator = RayEvaluator(data, settings, num_cpus=2)
        try:
            assert signal.getsignal(signal.SIGTERM) is handler, "the caller's SIGTERM handler is kept"
            for tasks in batches:
                evaluator.evaluate(
                    tasks,
                    lambda t, r: results.__setitem__(t.worker_label, r),
                    lambda t, info: progress.setdefault(t.worker_label, []).append(info),
                    lambda: False,
                )
            loads = evaluator.data_loads()
        finally:
            evaluator.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(results) == 6 and all(r.status == "ok" and r.state_dict for r in results.values())
    assert loads and len(loads) == len(set(loads)) < 6, f"dataset reads by worker pid: {loads}"
    assert len(progress) >= 2 and all(info["worker"] == label for label, infos in progress.items() for info in infos)
    # This process trains with its default thread count; threads=1 gives Ray's numbers exactly.
    local = LocalEvaluator(DeviceData(data, torch.device("cpu")), replace(settings, threads=1))
    for task in batches[0]:
        mine = train_candidate(task.genome, local.data, local.settings, task.seed)
        theirs = results[task.worker_label]
        assert (mine.fitness, mine.train_loss) == (theirs.fitness, theirs.train_loss)


def test_threads_setting_fixes_the_cpu_thread_count_and_restores_it():
    data = DeviceData(load_dataset("digits"), torch.device("cpu"))
    genome = sample_genome(SearchSpace(), random.Random(0))  # 4 conv blocks: sums split across threads
    settings = TrainSettings(epochs=1, augment="crop")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train_candidate(genome, data, settings, 123)
        torch.set_num_threads(2)
        two = train_candidate(genome, data, settings, 123)
        pinned = train_candidate(genome, data, replace(settings, threads=1), 123)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert (pinned.fitness, pinned.train_loss) == (one.fitness, one.train_loss)
    # Not asserted (it depends on the CPU): on the 2-core test machine the 2-thread loss differs
    # from the 1-thread one in its last bits, which is why both back ends pin the thread count.
    print(f"1 thread: {one.train_loss!r}, 2 threads: {two.train_loss!r}")


class _TwoWorkers:
    """Reports two candidates' progress at once, as the Ray back end does, then their equal
    results in reverse order (the second candidate finishes first)."""

    seen: list[list[str]] = []

    def __init__(self, store: Store, run_id: str):
        self.store, self.run_id = store, run_id

    def evaluate(self, tasks, on_result, on_progress, should_stop):
        for task in tasks:
            on_progress(
                task,
                {
                    "epoch": 1,
                    "epochs": 1,
                    "batch": 1,
                    "batches": 9,
                    "loss": 1.0,
                    "elapsed_s": 0.1,
                    "eta_s": 1.0,
                    "worker": task.worker_label,
                },
            )
        for task in reversed(tasks):
            self.seen.append(sorted(d["worker"] for d in self.store.progress(self.run_id)))
            on_result(task, TrainResult("ok", 0.5, params=10, seconds=0.1, epochs_done=1))
        self.seen.append(sorted(d["worker"] for d in self.store.progress(self.run_id)))

    def close(self):
        pass


def test_search_keeps_one_progress_record_per_running_candidate_and_drops_finished_ones(tmp_path):
    from automodel.config import Config

    store = Store(tmp_path / "db.json")
    config = Config(population=2, generations=1, epochs=1, final_epochs=1)
    store.create_run("p", config.to_dict())
    _TwoWorkers.seen = []
    search = Search(config, store, "p", data_dir=ROOT / "data", evaluator_factory=lambda d, s: _TwoWorkers(store, "p"))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        search.run()  # installs its own SIGTERM and SIGINT handlers in this process
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert _TwoWorkers.seen[:3] == [["g0-i0", "g0-i1"], ["g0-i0"], []]
    # A tie goes to the earlier (generation, index), as when the local back end records in order.
    assert store.get_run("p")["best_index"] == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--backend", "ray", "--ray-address", "127.0.0.1:1"], "127.0.0.1:1"),
        (["--ray-address", "auto"], "backend"),
        (["--backend", "ray", "--gpus-per-candidate", "2"], "gpus_per_candidate"),
        (["--backend", "ray", "--cpus-per-candidate", "0"], "cpus_per_candidate"),
        (["--backend", "ray", "--retries", "-1"], "retries"),
    ],
)
def test_bad_ray_settings_are_one_sentence_and_exit_code_2(tmp_path, args, fragment):
    result = automodel("run", "--population", "2", "--db", str(tmp_path / "db.json"), "--quiet", *args, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr


def test_asking_for_gpus_a_local_ray_lacks_is_refused_and_leaves_nothing_running(tmp_path, wait_for):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    before = ray_processes()
    result = automodel(
        "run",
        "--population",
        "2",
        "--backend",
        "ray",
        "--gpus-per-candidate",
        "0.5",
        "--db",
        str(tmp_path / "db.json"),
        "--quiet",
        timeout=180,
    )
    assert result.returncode == 2, result.stderr
    assert "gpus_per_candidate" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    wait_for(lambda: not (ray_processes() - before), 10, "the local Ray instance to end")


def test_automodel_works_without_ray_and_says_how_to_get_it(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now fails as if it were not installed
        "import automodel, automodel.cli.commands, automodel.evolution.loop, automodel.evaluators.base\n"
        "from automodel.cli.commands import main\n"
        f"sys.exit(main(['run', '--population', '2', '--backend', 'ray', '--run-id', 'n', "
        f"'--db', {str(tmp_path / 'db.json')!r}, '--quiet']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env()
    )
    assert result.returncode == 2, result.stderr
    assert "requirements-ray.txt" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    show = json.loads(automodel("show", "n", "--json", "--db", str(tmp_path / "db.json")).stdout)
    assert show["status"] == "failed", "the claimed run does not stay 'running'"


def test_a_local_instance_that_fails_to_start_shows_the_end_of_rays_own_logs(tmp_path):
    from automodel.evaluators.ray_cluster import ray_log_tails

    old = tmp_path / "session_2026-01-01_00-00-00_000000_1" / "logs"
    new = tmp_path / "session_2026-01-02_00-00-00_000000_2" / "logs"
    for logs, text in ((old, "an earlier instance"), (new, "\n".join(f"line {i}" for i in range(40)))):
        logs.mkdir(parents=True)
        (logs / "raylet.out").write_text(text)
    os.utime(old.parent, (0, 0))  # started long before
    since = time.time() - 5
    tail = ray_log_tails(since, lines=3, root=tmp_path)
    assert "raylet.out (last 3 lines)" in tail and tail.endswith("line 37\nline 38\nline 39\n")
    assert "earlier instance" not in tail and "gcs_server" not in tail  # only the files that exist
    assert ray_log_tails(time.time() + 60, root=tmp_path) == ""  # no session since
