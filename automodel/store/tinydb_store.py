"""Persistent records of searches: runs, generations, individuals and live progress.

One search process writes, while the Streamlit page, the command line and other search
processes read (and occasionally write a stop request) at the same time. TinyDB alone is not
safe for that (tinydb#72, #461), so this module adds three things around it:

* ``AtomicJSONStorage`` writes a whole new file and renames it over the old one, so a reader
  always parses either the old or the new database, never half of one. Every read reopens
  the path, so readers in other processes see the newest file.
* An exclusive OS lock (the ``filelock`` package) on ``<db>.lock`` around every
  read-modify-write, so two writer processes never lose each other's updates. Plain reads take
  no lock.
* Data is split over files by size and write rate, so that frequent small reads and writes
  never parse or re-serialise a big file: runs and generations (small, read by every stop check
  and page refresh) in the main file; individuals (up to hundreds of thousands of records, with
  genomes) in one file per run and generation, ``<stem>.individuals/<run>/<generation>.json``,
  so recording a candidate costs the same however long the run; live training progress
  (written several times a second) in ``<stem>.live.json``. The main and live files each have
  their own ``<file>.lock``; the individuals' files share ``<stem>.individuals.lock``.
  A database of an earlier version, with all individuals in ``<stem>.individuals.json``, is
  split into these files once, and the old file is kept as ``….individuals.json.migrated``.

Every write is one read and one write of the raw table data under the lock. Reads go through
TinyDB queries with the query cache turned off; they look at the file's signature every time and
re-read and re-parse only when it changed. The store never imports torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from tinydb import TinyDB, where
from tinydb.queries import QueryLike
from tinydb.storages import Storage
from tinydb.table import Table

from automodel.errors import RunActiveError, StoreError, no_run_message  # noqa: F401  (defined with the other errors, re-exported)
from automodel.store.files import process_lock, write_atomically
from automodel.store.records import ACTIVE_RUN_STATUSES, CandidateRecord, GenerationRecord, RunRecord, RunStatus

__all__ = [
    "RUN_STATUSES",
    "ACTIVE_STATUSES",
    "AtomicJSONStorage",
    "RunActiveError",
    "Store",
    "StoreError",
    "default_db_path",
]

RUN_STATUSES = tuple(RunStatus)
ACTIVE_STATUSES = ACTIVE_RUN_STATUSES

RawTables = dict[str, dict[str, dict[str, Any]]]
T = TypeVar("T")


_GENERATION_FILE = re.compile(r"-?\d+\.json")


def default_db_path() -> Path:
    """The database path used when the user names none."""
    return Path("data/automodel.json")


# --------------------------------------------------------------------------- storage


def _json_default(value: Any) -> Any:
    """Turn numpy/torch scalars and arrays into plain numbers and lists (duck-typed)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    """Identity of one version of a file: a rename always brings a new inode."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class AtomicJSONStorage(Storage):
    """TinyDB storage that reopens the file on every read and replaces it atomically on write.

    A file that exists but does not hold a JSON object of tables is never overwritten: both
    ``read`` and ``write`` raise ``StoreError`` so the person can look at it or pick another path.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # Signature of the file version this instance last read or wrote and knows is valid,
        # so that `write` need not re-parse it to prove it is safe to replace.
        self._known_good: tuple[int, int, int, int] | None = None

    def read(self) -> RawTables | None:
        """Parse the file afresh; None when it is missing or empty."""
        raw, signature = self._read_raw()
        data = self._decode(raw)
        self._known_good = signature
        return data

    def _read_raw(self) -> tuple[bytes, tuple[int, int, int, int] | None]:
        """The file's bytes as they are now (b"" when missing), with that version's signature."""
        try:
            with open(self.path, "rb") as handle:
                signature = _signature(os.fstat(handle.fileno()))
                return handle.read(), signature
        except FileNotFoundError:
            return b"", None
        except OSError as exc:
            raise StoreError(
                f"Cannot read the AutoModel database {self.path} ({exc.strerror}); choose another --db path."
            ) from exc

    def _decode(self, raw: bytes) -> RawTables | None:
        """Bytes to tables; StoreError, naming the file, if they aren't a database."""
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not _looks_like_tables(data):
            raise StoreError(
                f"{self.path} is not a valid AutoModel database (it is not a JSON object of "
                "tables), so it was left untouched; choose another --db path or move it away."
            )
        return data

    def write(self, data: Mapping[str, Any]) -> None:
        """Write ``data`` to a temp file in the same folder, fsync, and rename it over the path."""
        self._refuse_if_corrupt()
        text = json.dumps(data, separators=(",", ":"), default=_json_default)
        try:
            write_atomically(self.path, text.encode("utf-8"))
        except OSError as exc:
            raise self._write_error(exc) from exc
        self._known_good = _signature(os.stat(self.path))

    def close(self) -> None:
        """Nothing to close: no handle is kept between calls."""

    def _refuse_if_corrupt(self) -> None:
        """Raise StoreError, touching nothing, if the file on disk is not a database."""
        try:
            current = _signature(os.stat(self.path))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._write_error(exc) from exc
        if current != self._known_good:
            self.read()  # raises StoreError for a corrupt file

    def _write_error(self, exc: OSError) -> StoreError:
        return StoreError(
            f"Cannot write the AutoModel database {self.path} ({exc.strerror}); choose another --db path."
        )


class _SnapshotReader(Storage):
    """Read-only storage for queries: reads the bytes every time, parses only when they changed.

    Parsing dominates a read, while a ``stat`` costs microseconds, so a page polling a quiet run
    stays cheap. Every write replaces the file by a rename, so a changed file always has a new
    inode: the (device, inode, size, mtime) signature cannot be fooled by coarse timestamps. The
    parsed tables are shared by later reads, hence read-only here; writes go through ``mutate``.
    """

    def __init__(self, storage: AtomicJSONStorage):
        self._storage = storage
        # One tuple, replaced whole, so threads sharing a Store never pair a new signature with old data.
        self._snapshot: tuple[tuple[int, int, int, int] | None, RawTables | None] = (None, None)

    def read(self) -> RawTables | None:
        try:
            signature = _signature(os.stat(self._storage.path))
        except FileNotFoundError:
            signature = None
        except OSError:
            signature = None  # _read_raw names the problem
        cached_signature, cached = self._snapshot
        if signature is not None and signature == cached_signature:
            return cached
        raw, signature = self._storage._read_raw()
        data = self._storage._decode(raw)
        self._snapshot = (signature, data)
        return data

    def write(self, data: Mapping[str, Any]) -> None:
        raise TypeError("query tables are read-only; the Store writes through _Database.mutate")


def _looks_like_tables(data: Any) -> bool:
    """TinyDB layout: {table name: {doc id: document}}."""
    return isinstance(data, dict) and all(isinstance(table, dict) for table in data.values())


# --------------------------------------------------------------------------- locking


class _InterProcessLock:
    """An exclusive lock on a lock file, shared by every process and re-entrant within a thread
    (``filelock``); a lock file that cannot be created is a StoreError naming it."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = process_lock(path)

    def __enter__(self) -> _InterProcessLock:
        try:
            self._lock.acquire()
        except OSError as exc:
            raise StoreError(
                f"Cannot create the lock file {self.path} ({exc.strerror or exc}); choose another --db path."
            ) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


_LOCKS: dict[tuple[int, str], _InterProcessLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> _InterProcessLock:
    """One lock object per file and process, so several Store instances on one db can nest.

    The pid is part of the key so that a forked child never reuses its parent's lock state.
    """
    key = (os.getpid(), str(path.resolve()))
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = _InterProcessLock(path)
        return lock


# --------------------------------------------------------------------------- one database file


class _Database:
    """One JSON file: TinyDB for queries, its storage for locked read-modify-writes."""

    def __init__(self, path: Path, lock: _InterProcessLock | None = None):
        self.path = path
        self.storage = AtomicJSONStorage(path)
        self.lock = lock or _lock_for(path.with_name(path.name + ".lock"))
        self._tinydb = TinyDB(storage=lambda: _SnapshotReader(self.storage))
        self._tables: dict[str, Table] = {}

    def table(self, name: str) -> Table:
        """A table whose query cache is off, so other processes' writes show at once."""
        if name not in self._tables:
            self._tables[name] = self._tinydb.table(name, cache_size=0)
        return self._tables[name]

    def search(self, table: str, cond: QueryLike) -> list[dict[str, Any]]:
        """Matching documents as plain dicts (fresh dicts; nested values shared with the cache)."""
        return [dict(doc) for doc in self.table(table).search(cond)]

    def get(self, table: str, cond: QueryLike) -> dict[str, Any] | None:
        """The first matching document as a plain dict, or None.

        Not ``Table.get``: with a condition it parses the file twice.
        """
        found = self.table(table).search(cond)
        return dict(found[0]) if found else None

    def mutate(self, change: Callable[[RawTables], T]) -> T:
        """Apply ``change`` to the raw tables and write them back, all under the file lock.

        One read and one write, however many tables ``change`` touches (TinyDB's own insert
        reads the file twice and its upsert writes twice).
        """
        with self.lock:
            tables = self.storage.read() or {}
            result = change(tables)
            self.storage.write(tables)
            return result

    def close(self) -> None:
        self._tinydb.close()


def _new_ids(table: Mapping[str, Any]) -> Iterator[str]:
    """Fresh document ids for ``table``, in TinyDB's style (max existing id + 1, ...)."""
    next_id = max((int(doc_id) for doc_id in table), default=0) + 1
    while True:
        yield str(next_id)
        next_id += 1


def _find_id(table: Mapping[str, dict[str, Any]], cond: QueryLike) -> str | None:
    for doc_id, doc in table.items():
        if cond(doc):
            return doc_id
    return None


def _put_all(table: dict[str, dict[str, Any]], records: Iterable[Mapping[str, Any]], key: Callable) -> None:
    """Insert records, replacing any document with the same key; O(len(table) + len(records))."""
    index = {key(doc): doc_id for doc_id, doc in table.items()}
    new_ids = _new_ids(table)
    for record in records:
        doc_id = index.get(key(record))
        if doc_id is None:
            doc_id = index[key(record)] = next(new_ids)
        table[doc_id] = dict(record)


def _remove_where(table: dict[str, dict[str, Any]], cond: QueryLike) -> None:
    for doc_id in [doc_id for doc_id, doc in table.items() if cond(doc)]:
        del table[doc_id]


def _put_individuals(group: list[Mapping[str, Any]], tables: RawTables) -> None:
    _put_all(tables.setdefault("individuals", {}), group, _individual_key)


def _individual_key(record: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return (record["run_id"], record["generation"], record["index"])


def _generation_key(record: Mapping[str, Any]) -> tuple[Any, Any]:
    return (record["run_id"], record["generation"])


def _progress_key(record: Mapping[str, Any]) -> tuple[Any, Any]:
    return (record["run_id"], record["worker"])


def _check_status(fields: Mapping[str, Any]) -> None:
    status = fields.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")


def _require(record: Mapping[str, Any], names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if name not in record]
    if missing:
        raise ValueError(f"{what} record lacks {', '.join(missing)}")


# --------------------------------------------------------------------------- the store


class Store:
    """Runs, generations, individuals and live progress of AutoModel searches.

    Safe for one writer process and many reader processes at once; several writers (a search
    writing results, a page writing a stop request) are serialised by a file lock. Records are
    plain JSON-able dicts. Each returned record is a fresh dict, but nested values (config,
    genome) may be shared with this instance's parse cache: copy before changing them in place.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        # Candidates live in one small file per run and generation, so that recording one costs the
        # same at the 100th candidate as at the 100,000th; earlier versions kept them all in
        # ``individuals_path``, which is moved into these files the first time it is seen.
        self.individuals_dir = self.path.with_name(f"{self.path.stem}.individuals")
        self.individuals_path = self.path.with_name(f"{self.path.stem}.individuals.json")
        self.live_path = self.path.with_name(f"{self.path.stem}.live.json")
        _make_folder(self.path.parent)
        self._main = _Database(self.path)
        self._live = _Database(self.live_path)
        self._individuals_lock = _lock_for(self.path.with_name(f"{self.path.stem}.individuals.lock"))
        self._generation_files: dict[Path, _Database] = {}
        self._legacy_checked = False

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release TinyDB resources (the storage keeps no open handles)."""
        for database in (self._main, self._live, *self._generation_files.values()):
            database.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the runs/generations file's write lock across several calls (re-entrant).

        For a caller's own read-then-write on runs, e.g. "update unless stop was requested".
        """
        with self._main.lock:
            yield

    # ----------------------------------------------------------------------- runs

    def create_run(self, run_id: str, config: dict, **fields: Any) -> RunRecord:
        """Add a run with status "running" and ``created_at`` now; StoreError if it exists."""
        run = {"run_id": run_id, "config": config, "status": "running", "created_at": time.time(), **fields}
        _check_status(run)

        def insert(tables: RawTables) -> None:
            runs = tables.setdefault("runs", {})
            if _find_id(runs, where("run_id") == run_id) is not None:
                raise StoreError(f"A run named {run_id!r} already exists in {self.path}; choose another run id.")
            runs[next(_new_ids(runs))] = run

        self._main.mutate(insert)
        return cast(RunRecord, dict(run))

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Merge ``fields`` into the run and return the new record; StoreError if missing."""
        _check_status(fields)

        def merge(tables: RawTables) -> RunRecord:
            run = self._run_in(tables, run_id)
            run.update(fields)
            return cast(RunRecord, dict(run))

        return self._main.mutate(merge)

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None."""
        return cast("RunRecord | None", self._main.get("runs", where("run_id") == run_id))

    def list_runs(self) -> list[RunRecord]:
        """All runs, oldest first."""
        runs = [cast(RunRecord, dict(doc)) for doc in self._main.table("runs").all()]
        return sorted(runs, key=lambda run: (run.get("created_at", 0.0), run["run_id"]))

    def delete_run(self, run_id: str) -> None:
        """Remove the run with its generations, individuals and progress (no-op if absent)."""
        mine = where("run_id") == run_id

        def remove(tables: RawTables) -> None:
            for table in tables.values():
                _remove_where(table, mine)

        # Always main -> individuals -> live, the one order in which these locks nest.
        with self._main.lock:
            self._main.mutate(remove)
            self._migrate_legacy_individuals()
            with self._individuals_lock:
                folder = self._run_folder(run_id)
                for path in list(self._generation_files):
                    if path.parent == folder:
                        self._generation_files.pop(path).close()
                shutil.rmtree(folder, ignore_errors=True)
            self._live.mutate(remove)

    def claim_run_slot(
        self, run_id: str, config: dict, is_alive: Callable[[RunRecord], bool], **fields: Any
    ) -> RunRecord:
        """Create the run unless another active run is alive: check and create under one lock.

        ``is_alive(run)`` tells whether an active-looking run still has a live process (a run
        left "running" by a killed process must not block the next one). Raises
        RunActiveError naming the live run.
        """
        with self._main.lock:
            for run in self.list_runs():
                if run.get("status") in ACTIVE_STATUSES and is_alive(run):
                    raise RunActiveError(
                        f"Run {run['run_id']!r} is still {run['status']}; stop it or wait for "
                        "it to finish before starting another.",
                        run["run_id"],
                    )
            return self.create_run(run_id, config, **fields)

    def _run_in(self, tables: RawTables, run_id: str) -> dict[str, Any]:
        runs = tables.get("runs", {})
        doc_id = _find_id(runs, where("run_id") == run_id)
        if doc_id is None:
            raise StoreError(no_run_message(run_id, self.path))
        return runs[doc_id]

    # ----------------------------------------------------------------------- individuals

    def add_individual(self, record: Mapping[str, Any]) -> None:
        """Save one individual, replacing any with the same (run_id, generation, index)."""
        self.add_individuals([record])

    def add_individuals(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Save many individuals (e.g. a whole generation); same replace rule. Each record goes to
        its run and generation's own file, so the cost does not grow with the run."""
        records = list(records)
        for record in records:
            _require(record, ("run_id", "generation", "index"), "individual")
        self._migrate_legacy_individuals()
        self._write_individuals(records)

    def _write_individuals(self, records: list[Mapping[str, Any]]) -> None:
        groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
        for record in records:
            groups.setdefault((record["run_id"], int(record["generation"])), []).append(record)
        for (run_id, generation), group in groups.items():
            database = self._generation_file(run_id, generation)
            _make_folder(database.path.parent)
            database.mutate(partial(_put_individuals, group))

    def individuals(self, run_id: str, generation: int | None = None) -> list[CandidateRecord]:
        """The run's individuals (optionally one generation's), sorted by (generation, index)."""
        self._migrate_legacy_individuals()
        folder = self._run_folder(run_id)
        if generation is not None:
            paths = [self._generation_path(run_id, int(generation))]
        else:
            try:
                paths = [p for p in folder.iterdir() if p.suffix == ".json" and _GENERATION_FILE.fullmatch(p.name)]
            except FileNotFoundError:
                paths = []
        found = []
        mine = where("run_id") == run_id
        for path in paths:
            if path.exists():
                found += self._generation_file(run_id, int(path.stem)).search("individuals", mine)
        return cast(list[CandidateRecord], sorted(found, key=lambda doc: (doc["generation"], doc["index"])))

    def _run_folder(self, run_id: str) -> Path:
        name = "".join(ch if ch.isalnum() or ch in "-_." else f"%{ord(ch):02x}" for ch in str(run_id))
        return self.individuals_dir / ("_" + name if name.startswith(".") or not name else name)

    def _generation_path(self, run_id: str, generation: int) -> Path:
        return self._run_folder(run_id) / f"{generation:06d}.json"

    def _generation_file(self, run_id: str, generation: int) -> _Database:
        path = self._generation_path(run_id, generation)
        database = self._generation_files.get(path)
        if database is None:
            database = self._generation_files[path] = _Database(path, lock=self._individuals_lock)
        return database

    def _migrate_legacy_individuals(self) -> None:
        """Move the single candidates file of earlier versions into per-generation files, once.

        The old file is kept beside them as ``….individuals.json.migrated``; a damaged one is
        reported (StoreError naming it) and left as it is.
        """
        if self._legacy_checked:
            return
        if self.individuals_path.exists():
            with self._main.lock, self._individuals_lock:
                if self.individuals_path.exists():
                    tables = AtomicJSONStorage(self.individuals_path).read() or {}
                    self._write_individuals(list(tables.get("individuals", {}).values()))
                    os.replace(
                        self.individuals_path, self.individuals_path.with_name(self.individuals_path.name + ".migrated")
                    )
        self._legacy_checked = True

    # ----------------------------------------------------------------------- generations

    def add_generation(self, record: Mapping[str, Any]) -> None:
        """Save one generation's summary, replacing any with the same (run_id, generation)."""
        _require(record, ("run_id", "generation"), "generation")
        self._main.mutate(lambda tables: _put_all(tables.setdefault("generations", {}), [record], _generation_key))

    def generations(self, run_id: str) -> list[GenerationRecord]:
        """The run's generation summaries, sorted by generation."""
        found = self._main.search("generations", where("run_id") == run_id)
        return cast(list[GenerationRecord], sorted(found, key=lambda doc: doc["generation"]))

    # ----------------------------------------------------------------------- live progress

    def set_progress(self, run_id: str, progress: dict, worker: str = "main") -> None:
        """Replace the progress of ``worker`` in the run; written to the small sidecar file."""
        doc = {**progress, "run_id": run_id, "worker": worker, "updated_at": time.time()}
        self._live.mutate(lambda tables: _put_all(tables.setdefault("progress", {}), [doc], _progress_key))

    def progress(self, run_id: str) -> list[dict]:
        """All workers' progress records for the run, sorted by worker."""
        found = self._live.search("progress", where("run_id") == run_id)
        return sorted(found, key=lambda doc: str(doc["worker"]))

    def clear_progress(self, run_id: str, worker: str | None = None) -> None:
        """Forget the progress of one worker, or of every worker when ``worker`` is None."""
        cond = where("run_id") == run_id
        if worker is not None:
            cond &= where("worker") == worker
        self._live.mutate(lambda tables: _remove_where(tables.get("progress", {}), cond))

    # ----------------------------------------------------------------------- stop requests

    def request_stop(self, run_id: str) -> None:
        """Flag the run to stop and mark it "stopping" if running; StoreError if missing."""

        def flag(tables: RawTables) -> None:
            run = self._run_in(tables, run_id)
            run["stop_requested"] = True
            if run.get("status") == "running":
                run["status"] = "stopping"

        self._main.mutate(flag)

    def stop_requested(self, run_id: str) -> bool:
        """Whether someone asked the run to stop (False for an unknown run)."""
        run = self.get_run(run_id)
        return bool(run and run.get("stop_requested"))


def _make_folder(folder: Path) -> None:
    """Create the database's folder, or explain in one sentence why it can't be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Cannot create the database folder {folder} ({exc.strerror or exc}); choose another --db path."
        ) from exc
