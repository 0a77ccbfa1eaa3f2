"""Tests for automodel.store.tinydb_store: records round trip, corrupt files are refused untouched, and
several processes (one search, many readers, an occasional stop request) never corrupt or
lose each other's writes."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from automodel.store import RUN_STATUSES, RunActiveError, Store, StoreError, default_db_path
from automodel.store.tinydb_store import AtomicJSONStorage

SPAWN = mp.get_context("spawn")
PROCESS_TIMEOUT_S = 60


def _individual(run_id: str, generation: int, index: int, **extra) -> dict:
    return {
        "run_id": run_id,
        "generation": generation,
        "index": index,
        "key": f"k{generation}-{index}",
        "genome": {"layers": [{"type": "conv"}]},
        "fitness": 0.5,
        "status": "ok",
        **extra,
    }


@contextmanager
def _child_process(target, *args) -> Iterator[None]:
    """Run ``target(*args)`` in a spawned process while the body runs in this one.

    The test process is the other party: one spawn per test, because each spawned child
    pays the package import again (seconds while ``automodel/__init__`` imports torch).
    """
    proc = SPAWN.Process(target=target, args=args)
    proc.start()
    try:
        yield
        proc.join(PROCESS_TIMEOUT_S)
        assert proc.exitcode == 0, f"child process exit code {proc.exitcode}"
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)


# --------------------------------------------------------------------------- runs


def test_default_db_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_db_path() == Path("data/automodel.json")
    assert Store().path == Path("data/automodel.json")
    assert (tmp_path / "data").is_dir()


def test_run_round_trip(tmp_path):
    store = Store(tmp_path / "db.json")
    created = store.create_run("r1", {"population": 8}, pid=123)
    assert created["status"] == "running"
    assert created["config"] == {"population": 8}
    assert created["pid"] == 123
    assert abs(created["created_at"] - time.time()) < 60

    assert store.get_run("r1") == created
    updated = store.update_run("r1", status="completed", best_fitness=0.9)
    assert updated == {**created, "status": "completed", "best_fitness": 0.9}
    assert store.get_run("r1") == updated
    assert store.get_run("nope") is None


def test_create_run_twice_is_refused(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("r1", {})
    with pytest.raises(StoreError, match="r1"):
        store.create_run("r1", {})
    assert len(store.list_runs()) == 1


def test_update_missing_run_raises(tmp_path):
    with pytest.raises(StoreError, match="ghost"):
        Store(tmp_path / "db.json").update_run("ghost", status="failed")


def test_unknown_status_is_rejected(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("r1", {})
    with pytest.raises(ValueError, match="paused"):
        store.update_run("r1", status="paused")
    assert store.get_run("r1")["status"] == "running"
    assert set(RUN_STATUSES) >= {"running", "stopping", "completed"}


def test_list_runs_sorted_by_created_at(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("late", {}, created_at=300.0)
    store.create_run("early", {}, created_at=100.0)
    store.create_run("middle", {}, created_at=200.0)
    assert [run["run_id"] for run in store.list_runs()] == ["early", "middle", "late"]


def test_delete_run_removes_everything_of_that_run_only(tmp_path):
    store = Store(tmp_path / "db.json")
    for run_id in ("gone", "kept"):
        store.create_run(run_id, {})
        store.add_generation({"run_id": run_id, "generation": 0, "best": 0.5})
        store.add_individual(_individual(run_id, 0, 0))
        store.set_progress(run_id, {"epoch": 1})

    store.delete_run("gone")
    store.delete_run("never-existed")

    assert store.get_run("gone") is None
    assert store.generations("gone") == []
    assert store.individuals("gone") == []
    assert store.progress("gone") == []
    assert store.get_run("kept") is not None
    assert len(store.generations("kept")) == 1
    assert len(store.individuals("kept")) == 1
    assert len(store.progress("kept")) == 1


# ------------------------------------------------------------------- individuals, generations


def test_add_individual_is_idempotent_and_sorted(tmp_path):
    store = Store(tmp_path / "db.json")
    store.add_individual(_individual("r", 1, 0))
    store.add_individual(_individual("r", 0, 1))
    store.add_individual(_individual("r", 0, 0, fitness=0.1))
    store.add_individual(_individual("r", 0, 0, fitness=0.7))  # replaces, not appends
    store.add_individual(_individual("other", 0, 0))

    found = store.individuals("r")
    assert [(rec["generation"], rec["index"]) for rec in found] == [(0, 0), (0, 1), (1, 0)]
    assert found[0]["fitness"] == 0.7
    assert [rec["index"] for rec in store.individuals("r", generation=0)] == [0, 1]
    assert store.individuals("r", generation=5) == []


def test_replace_drops_fields_of_the_old_record(tmp_path):
    store = Store(tmp_path / "db.json")
    store.add_individual(_individual("r", 0, 0, reason="out of memory"))
    store.add_individual(_individual("r", 0, 0))
    assert "reason" not in store.individuals("r")[0]


def test_add_individuals_batch_matches_single_adds(tmp_path):
    store = Store(tmp_path / "db.json")
    store.add_individual(_individual("r", 0, 3, fitness=0.1))
    store.add_individuals([_individual("r", 0, i, fitness=0.2) for i in range(5)])
    found = store.individuals("r")
    assert [rec["index"] for rec in found] == [0, 1, 2, 3, 4]
    assert {rec["fitness"] for rec in found} == {0.2}


def test_individual_without_key_fields_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="index"):
        Store(tmp_path / "db.json").add_individual({"run_id": "r", "generation": 0})


def test_generations_are_idempotent_and_sorted(tmp_path):
    store = Store(tmp_path / "db.json")
    for generation in (2, 0, 1):
        store.add_generation({"run_id": "r", "generation": generation, "best": 0.1})
    store.add_generation({"run_id": "r", "generation": 1, "best": 0.9})
    found = store.generations("r")
    assert [rec["generation"] for rec in found] == [0, 1, 2]
    assert found[1]["best"] == 0.9


def test_returned_records_are_copies(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("r", {})
    store.add_individual(_individual("r", 0, 0))
    store.get_run("r")["status"] = "changed"
    store.individuals("r")[0]["fitness"] = -1
    assert store.get_run("r")["status"] == "running"
    assert store.individuals("r")[0]["fitness"] == 0.5


def test_numpy_like_scalars_are_stored_as_numbers(tmp_path):
    class FakeScalar:  # stands in for numpy.float32 / a 0-d tensor without importing them
        def item(self) -> float:
            return 0.25

    store = Store(tmp_path / "db.json")
    store.add_individual(_individual("r", 0, 0, fitness=FakeScalar()))
    assert store.individuals("r")[0]["fitness"] == 0.25


# --------------------------------------------------------------------------- progress sidecar


def test_progress_lives_in_sidecar_and_leaves_main_file_alone(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("r", {})
    before = store.path.stat()
    main_bytes = store.path.read_bytes()
    time.sleep(0.01)  # let a (wrong) rewrite show up as a different mtime

    store.set_progress("r", {"epoch": 1, "batch": 3})
    store.set_progress("r", {"epoch": 2, "batch": 0})
    store.set_progress("r", {"epoch": 1}, worker="w2")

    after = store.path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert store.path.read_bytes() == main_bytes
    assert store.live_path == tmp_path / "db.live.json"
    assert "progress" in json.loads(store.live_path.read_text())

    found = store.progress("r")
    assert [doc["worker"] for doc in found] == ["main", "w2"]
    assert found[0]["epoch"] == 2 and "batch" in found[0] and found[0]["batch"] == 0
    assert abs(found[0]["updated_at"] - time.time()) < 60

    store.clear_progress("r", worker="w2")
    assert [doc["worker"] for doc in store.progress("r")] == ["main"]
    store.clear_progress("r")
    assert store.progress("r") == []


# --------------------------------------------------------------------------- files and errors


def test_missing_folder_is_created(tmp_path):
    path = tmp_path / "a" / "b" / "db.json"
    store = Store(path)
    assert path.parent.is_dir()
    store.create_run("r", {})
    assert json.loads(path.read_text())["runs"]


def test_folder_that_is_a_file_gives_store_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="blocker"):
        Store(blocker / "db.json")


def test_writes_leave_no_temp_files(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("r", {})
    store.add_individual(_individual("r", 0, 0))
    store.set_progress("r", {"epoch": 1})
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


CORRUPT_CONTENTS = {
    "truncated": b'{"runs": {"1": {"run_id": "r", "config": {"popul',
    "garbage": bytes(range(256)) * 4,
    "not_tables": b"[1, 2, 3]",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_CONTENTS))
def test_corrupt_main_file_is_refused_and_untouched(tmp_path, kind):
    path = tmp_path / "db.json"
    content = CORRUPT_CONTENTS[kind]
    path.write_bytes(content)
    store = Store(path)

    with pytest.raises(StoreError, match="db.json.*not a valid AutoModel database.*--db"):
        store.get_run("r")
    with pytest.raises(StoreError, match="db.json"):
        store.list_runs()
    with pytest.raises(StoreError, match="db.json"):
        store.create_run("r", {})
    with pytest.raises(StoreError, match="db.json"):
        store.request_stop("r")
    assert path.read_bytes() == content


def test_corrupt_individuals_file_is_refused_and_untouched(tmp_path):
    store = Store(tmp_path / "db.json")
    content = CORRUPT_CONTENTS["truncated"]
    store.individuals_path.write_bytes(content)
    with pytest.raises(StoreError, match="individuals.json"):
        store.add_individual(_individual("r", 0, 0))
    with pytest.raises(StoreError, match="individuals.json"):
        store.individuals("r")
    assert store.individuals_path.read_bytes() == content


def test_storage_write_refuses_to_replace_a_corrupt_file(tmp_path):
    path = tmp_path / "db.json"
    path.write_bytes(CORRUPT_CONTENTS["garbage"])
    with pytest.raises(StoreError, match="db.json"):
        AtomicJSONStorage(path).write({"runs": {}})
    assert path.read_bytes() == CORRUPT_CONTENTS["garbage"]


def test_storage_reads_none_for_missing_or_empty_file(tmp_path):
    path = tmp_path / "db.json"
    storage = AtomicJSONStorage(path)
    assert storage.read() is None
    path.write_bytes(b"")
    assert storage.read() is None
    storage.write({"runs": {"1": {"run_id": "r"}}})
    assert storage.read() == {"runs": {"1": {"run_id": "r"}}}


# --------------------------------------------------------------------------- stop requests


def test_stop_request_seen_by_another_store_instance(tmp_path):
    search = Store(tmp_path / "db.json")
    page = Store(tmp_path / "db.json")
    search.create_run("r", {})
    # Both have read (and cached) the file before the other process writes.
    assert search.stop_requested("r") is False
    assert page.stop_requested("r") is False

    page.request_stop("r")

    assert search.stop_requested("r") is True
    assert search.get_run("r")["status"] == "stopping"
    assert page.stop_requested("unknown") is False


def test_stop_request_keeps_a_finished_status(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("r", {}, status="completed")
    store.request_stop("r")
    assert store.get_run("r")["status"] == "completed"
    assert store.stop_requested("r") is True


def test_request_stop_of_missing_run_raises(tmp_path):
    with pytest.raises(StoreError, match="ghost"):
        Store(tmp_path / "db.json").request_stop("ghost")


# --------------------------------------------------------------------------- claim_run_slot


def test_claim_blocked_by_a_live_active_run(tmp_path):
    store = Store(tmp_path / "db.json")
    store.claim_run_slot("first", {}, is_alive=lambda run: True)
    with pytest.raises(RunActiveError, match="first") as caught:
        store.claim_run_slot("second", {}, is_alive=lambda run: True)
    assert caught.value.run_id == "first"
    assert store.get_run("second") is None


def test_claim_ignores_dead_and_finished_runs(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("dead", {})  # left "running" by a killed process
    store.create_run("done", {}, status="completed")
    asked: list[str] = []

    def is_alive(run: dict) -> bool:
        asked.append(run["run_id"])
        return False

    claimed = store.claim_run_slot("next", {"population": 4}, is_alive=is_alive, pid=7)
    assert claimed["status"] == "running" and claimed["pid"] == 7
    assert asked == ["dead"]  # finished runs are not even asked about


def _claim(path: str, run_id: str, barrier) -> str:
    store = Store(path)
    barrier.wait(timeout=30)
    try:
        store.claim_run_slot(run_id, {}, is_alive=lambda run: True)
        return "claimed"
    except RunActiveError:
        return "blocked"


def _claim_in_child(path: str, barrier, results) -> None:
    results.put(_claim(path, "child-run", barrier))


def test_simultaneous_claims_start_exactly_one_run(tmp_path):
    path = str(tmp_path / "db.json")
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    with _child_process(_claim_in_child, path, barrier, results):
        mine = _claim(path, "parent-run", barrier)
        theirs = results.get(timeout=PROCESS_TIMEOUT_S)
    assert sorted([mine, theirs]) == ["blocked", "claimed"]
    assert len(Store(path).list_runs()) == 1


# --------------------------------------------------------------------------- concurrency


def _hammer(path: str, worker: int, rounds: int, barrier) -> None:
    """Each round writes keys no other writer uses, so any lost update shows as a missing key."""
    store = Store(path)
    barrier.wait(timeout=30)
    for i in range(rounds):
        store.update_run("shared", **{f"w{worker}_{i}": i})
        store.add_individual(_individual("shared", worker, i))


def test_two_writer_processes_lose_no_updates(tmp_path):
    path = str(tmp_path / "db.json")
    Store(path).create_run("shared", {})
    rounds = 100
    barrier = SPAWN.Barrier(2)
    with _child_process(_hammer, path, 1, rounds, barrier):
        _hammer(path, 0, rounds, barrier)

    store = Store(path)
    run = store.get_run("shared")
    expected = {f"w{w}_{i}" for w in (0, 1) for i in range(rounds)}
    assert expected <= run.keys()
    found = store.individuals("shared")
    assert len(found) == 2 * rounds
    assert {(rec["generation"], rec["index"]) for rec in found} == {(w, i) for w in (0, 1) for i in range(rounds)}


def test_threads_with_separate_store_instances_lose_no_updates(tmp_path):
    path = tmp_path / "db.json"
    Store(path).create_run("shared", {})
    rounds = 40

    def work(worker: int) -> None:
        store = Store(path)
        for i in range(rounds):
            store.update_run("shared", **{f"t{worker}_{i}": i})

    threads = [threading.Thread(target=work, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROCESS_TIMEOUT_S)
        assert not thread.is_alive()
    run = Store(path).get_run("shared")
    assert {f"t{w}_{i}" for w in range(2) for i in range(rounds)} <= run.keys()


def test_nested_store_calls_under_locked_do_not_deadlock(tmp_path):
    store = Store(tmp_path / "db.json")
    other = Store(tmp_path / "db.json")
    with store.locked():
        with other.locked():
            other.create_run("r", {})
            store.update_run("r", nested=True)
    assert store.get_run("r")["nested"] is True


def _growing_writer(path: str, rewrites: int, writer_ready, done) -> None:
    store = Store(path)
    padding = "x" * 500
    writer_ready.set()
    for i in range(rewrites):
        store.add_individual(_individual("r", 0, i, padding=padding))
    done.set()


def _read_raw_until(paths: list[str], done, max_reads: int) -> tuple[int, int]:
    """Parse the files as a foreign reader would, until ``done``; returns (reads, errors)."""
    reads = errors = 0
    deadline = time.monotonic() + PROCESS_TIMEOUT_S / 2
    while not done.is_set() and reads < max_reads and time.monotonic() < deadline:
        for path in paths:
            try:
                raw = Path(path).read_bytes()
            except FileNotFoundError:
                continue
            try:
                json.loads(raw)
            except ValueError:
                errors += 1
            reads += 1
    return reads, errors


def test_readers_never_see_a_half_written_file(tmp_path):
    store = Store(tmp_path / "db.json")
    store.create_run("r", {})
    store.add_individual(_individual("r", 0, 0))
    paths = [str(store.path), str(store.individuals_path)]
    writer_ready, done = SPAWN.Event(), SPAWN.Event()

    with _child_process(_growing_writer, str(store.path), 200, writer_ready, done):
        assert writer_ready.wait(PROCESS_TIMEOUT_S)
        reads, errors = _read_raw_until(paths, done, max_reads=200_000)

    assert reads > 0
    assert errors == 0
    assert len(Store(store.path).individuals("r")) == 200


# --------------------------------------------------------------------------- one file per generation


def test_recording_a_candidate_touches_only_its_generations_file(tmp_path):
    store = Store(tmp_path / "db.json")
    store.add_individuals(_individual("r", g, i) for g in range(3) for i in range(4))
    files = sorted((tmp_path / "db.individuals" / "r").glob("*.json"))
    assert [f.name for f in files] == ["000000.json", "000001.json", "000002.json"]
    before = {f.name: f.stat().st_ino for f in files}
    store.add_individual(_individual("r", 2, 9))
    after = {f.name: f.stat().st_ino for f in files}
    assert after["000000.json"] == before["000000.json"] and after["000001.json"] == before["000001.json"]
    assert after["000002.json"] != before["000002.json"]
    assert [(d["generation"], d["index"]) for d in Store(store.path).individuals("r", 2)] == [
        (2, 0),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 9),
    ]
    store.delete_run("r")
    assert store.individuals("r") == [] and not (tmp_path / "db.individuals" / "r").exists()


def test_a_database_of_the_previous_version_is_split_once_and_its_file_kept(tmp_path):
    legacy = tmp_path / "db.individuals.json"
    records = {
        str(n + 1): _individual(run, g, i)
        for n, (run, g, i) in enumerate([("a", 0, 0), ("a", 0, 1), ("a", 1, 0), ("b", 0, 0)])
    }
    legacy.write_text(json.dumps({"individuals": records}))
    store = Store(tmp_path / "db.json")
    assert [(d["generation"], d["index"]) for d in store.individuals("a")] == [(0, 0), (0, 1), (1, 0)]
    assert [d["run_id"] for d in Store(store.path).individuals("b")] == ["b"]
    kept = tmp_path / "db.individuals.json.migrated"
    assert not legacy.exists() and json.loads(kept.read_text())["individuals"] == records
    Store(store.path).add_individual(_individual("a", 1, 1))  # a second store finds nothing to migrate
    assert len(store.individuals("a")) == 4


def test_an_unusual_run_id_gets_a_safe_folder(tmp_path):
    store = Store(tmp_path / "db.json")
    store.add_individual(_individual("../../escape me", 0, 0))
    assert store.individuals("../../escape me")[0]["index"] == 0
    assert all(tmp_path / "db.individuals" in p.parents for p in tmp_path.rglob("*.json") if "individuals" in str(p))
    assert not (tmp_path.parent / "escape me").exists()
