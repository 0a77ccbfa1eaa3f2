"""Start, stop and watch the search process (for the page and the command line).

The search always runs in its own process (``python -m automodel run ...``) in its own
process group; its pid and host live in the store, not in a browser session, so any page or
terminal can find it again. A run recorded as active whose process is gone is *interrupted*.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel.errors import no_run_message
from automodel.store import ACTIVE_STATUSES, RunActiveError, Store, StoreError
from automodel.store.records import RunRecord


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def run_dir_for(store: Store, run_id: str) -> Path:
    """A run's folder (best model, extracted uploads) sits beside its database."""
    return store.path.parent / "runs" / run_id


RESERVATION_GRACE_S = 60.0  # a run claimed by the page but whose process has not yet started
HEARTBEAT_S = 5.0  # how often a search process records that it is alive
HEARTBEAT_LIMIT_S = 45.0  # a run whose heartbeat is older than this is interrupted, on any host


def pid_is_search(pid: int) -> bool:
    """True if ``pid`` is a live AutoModel process (guards against a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            text = cmdline.read_bytes()
            return b"automodel" in text and not _is_zombie(pid)
        except OSError:
            return False
    return True


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def is_alive(run: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether the run's search process is still there.

    A search process records a heartbeat every ``HEARTBEAT_S``: a run whose heartbeat is older than
    ``HEARTBEAT_LIMIT_S`` is not alive, whichever host it ran on (a new container on the same
    volume can resume it). On the process's own host a missing process is noticed at once. A run
    claimed by Start or Resume whose process has not started yet counts as alive for a grace
    period after the claim.
    """
    now = time.time() if now is None else now
    host, pid = run.get("host"), run.get("pid")
    if pid is None:
        claimed = run.get("claimed_at") or run.get("created_at") or 0
        return now - float(claimed) < RESERVATION_GRACE_S
    # Runs recorded before heartbeats existed: their last sign of life is when they (re)started.
    beat = run.get("heartbeat_at") or run.get("resumed_at") or run.get("started_at")
    if beat is not None and now - float(beat) > HEARTBEAT_LIMIT_S:
        return False
    if host and host != socket.gethostname():
        return True
    return pid_is_search(int(pid))


class Heartbeat:
    """Records ``heartbeat_at`` in the run every ``HEARTBEAT_S`` from a thread of the search process."""

    def __init__(self, store: Store, run_id: str, every_s: float = HEARTBEAT_S):
        self.store, self.run_id, self.every_s = store, run_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="automodel-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self.store.update_run(self.run_id, heartbeat_at=time.time())
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.store.update_run(self.run_id, heartbeat_at=time.time())
            except StoreError:
                pass  # a full disk: the search reports it on its own next write


def reconcile(store: Store) -> list[RunRecord]:
    """Mark active runs whose process has died as interrupted; returns all runs, fresh."""
    runs = store.list_runs()
    changed = False
    for run in runs:
        if run.get("status") in ACTIVE_STATUSES and not is_alive(run):
            with store.locked():
                # Look again under the lock: the search may have just finished and written its status.
                fresh = store.get_run(run["run_id"]) or {}
                if (
                    fresh.get("status") in ACTIVE_STATUSES
                    and fresh.get("pid") == run.get("pid")
                    and not is_alive(fresh)
                ):
                    store.update_run(
                        run["run_id"],
                        status="interrupted",
                        pid=None,
                        reason="the search process ended without recording a result",
                    )
                    changed = True
    return store.list_runs() if changed else runs


def claim_resume(store: Store, run_id: str) -> RunRecord:
    """Atomically mark a stopped, interrupted or failed run as resuming (no process yet).

    Raises :class:`StoreError` with one sentence when the run cannot resume: unknown, already
    completed, still active, or another run is active in this database.
    """
    with store.locked():
        runs = {r["run_id"]: r for r in reconcile(store)}
        run = runs.get(run_id)
        if run is None:
            raise StoreError(no_run_message(run_id, store.path))
        if run.get("status") == "completed":
            raise StoreError(f"run {run_id} has already completed; nothing to resume.")
        if run.get("status") in ACTIVE_STATUSES:
            raise StoreError(f"run {run_id} is still {run['status']}; stop it first.")
        other = next((r for r in runs.values() if r.get("status") in ACTIVE_STATUSES), None)
        if other is not None:
            raise RunActiveError(
                f"run {other['run_id']} is active in {store.path}; stop it before resuming another.", other["run_id"]
            )
        return store.update_run(
            run_id, status="running", pid=None, host=None, stop_requested=False, claimed_at=time.time(), reason=""
        )


def is_claimed_only(run: Mapping[str, Any]) -> bool:
    """Claimed by Start or Resume (or ``automodel.search``), not yet taken over by a search process:
    the one rule the two below refine."""
    return run.get("status") in ACTIVE_STATUSES and run.get("pid") is None


def is_claim(run: Mapping[str, Any]) -> bool:
    """A claimed run whose search process may still come: within the grace period after the claim."""
    return is_claimed_only(run) and is_alive(run)


def is_new_claim(store: Store, run: Mapping[str, Any]) -> bool:
    """A claim for a new run, however old: nothing started or recorded yet, so a process starting the
    run may take it over (a stop may already be asked)."""
    return is_claimed_only(run) and not run.get("started_at") and not store.individuals(run["run_id"])


def search_command(
    db: Path, run_id: str, *, resume: bool, config_path: Path | None = None, data_dir: Path | None = None
) -> list[str]:
    """Argument list for the search process (never a shell string)."""
    cmd = [sys.executable, "-m", "automodel"]
    cmd += ["resume", run_id] if resume else ["run", "--run-id", run_id]
    cmd += ["--db", str(db), "--quiet"]
    if config_path is not None and not resume:
        cmd += ["--config", str(config_path)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return cmd


def finalize_command(db: Path, run_id: str, key: str) -> list[str]:
    """Argument list for finalizing one candidate of a run in its own process."""
    return [sys.executable, "-m", "automodel", "finalize", run_id, "--candidate", key, "--db", str(db)]


def finalizing(run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The candidates of the run being finalized now, by key, with their process ids."""
    return {key: claim for key, claim in (run.get("finalizing") or {}).items() if pid_is_search(claim["pid"])}


def start_finalize(
    store: Store, run_id: str, key: str, *, cwd: Path, wait_s: float = 20.0, poll_s: float = 0.2
) -> bool:
    """Finalize candidate ``key`` in its own process (as the page does); returns once the process has
    claimed it or finished it, or after ``wait_s`` (False)."""
    log = run_dir_for(store, run_id) / f"finalize-{key}.log"
    launch(finalize_command(store.path, run_id, key), log, cwd=cwd)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        run = store.get_run(run_id) or {}
        if key in finalizing(run) or key in (run.get("finalized") or {}):
            return True
        time.sleep(poll_s)
    return False


def stop_finalize(claim: dict) -> None:
    """Ask a finalization process to stop (it ends between two batches)."""
    try:
        os.killpg(claim["pid"], signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass  # it has ended already


# Processes this process launched, by pid, so that they are reaped when they end (no zombies
# left behind by a long-lived page) and so the page can tell a search that died at start-up.
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_GUARD = threading.Lock()


def launch(cmd: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start the search detached in its own session, so a page rerun or exit does not kill it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True
        )
    with _CHILDREN_GUARD:
        _CHILDREN[proc.pid] = proc
    return proc


def child_exit_code(pid: int) -> int | None:
    """The exit code of a process :func:`launch` started here, or None while it runs (or if unknown)."""
    with _CHILDREN_GUARD:
        proc = _CHILDREN.get(pid)
    return None if proc is None else proc.poll()


def reap_children() -> None:
    """Collect the exit status of launched processes that have ended (cheap; call on redraws)."""
    with _CHILDREN_GUARD:
        procs = list(_CHILDREN.values())
    for proc in procs:
        proc.poll()


def log_tail(path: Path, max_lines: int = 30, max_bytes: int = 16_384) -> str:
    """The last lines of a search log ("" when it is missing), for showing why a run failed."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    # Progress bars write carriage returns; keep what a terminal would finally show.
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join([line for line in lines if line.strip()][-max_lines:])


def request_stop(store: Store, run_id: str, timeout_s: float = 10.0, poll_s: float = 0.1) -> RunRecord:
    """Ask a run to stop (store flag + SIGTERM to its process group) and wait for it to end."""
    store.request_stop(run_id)
    run = store.get_run(run_id) or {}
    pid = run.get("pid")
    if pid and (not run.get("host") or run.get("host") == socket.gethostname()) and pid_is_search(int(pid)):
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = store.get_run(run_id) or {}
        if run.get("status") not in ACTIVE_STATUSES:
            return run
        if not is_alive(run):
            break
        time.sleep(poll_s)
    with store.locked():
        run = store.get_run(run_id) or {}
        if run.get("status") in ACTIVE_STATUSES and not is_alive(run):
            run = store.update_run(run_id, status="stopped", pid=None, ended_at=time.time())
    return run


# --------------------------------------------------------------------------- the page's launches


@dataclass
class Launch:
    """A search process started by a page session, until the process takes the run over."""

    run_id: str
    pid: int
    since: float


def start_search(
    store: Store, run_id: str, config: dict, *, data_dir: Path, cwd: Path, prepare: Callable[[Path], None] | None = None
) -> Launch:
    """Claim the run slot for ``config`` (atomic: one run at a time per database), write the config
    into the run's folder, let ``prepare(run_dir)`` put files there (an upload), and launch the
    search process. A failure after the claim marks the run failed (its one-sentence reason kept)
    and is raised again; a refused claim raises RunActiveError before anything is written."""
    from automodel.config import Config

    parsed = Config.from_dict(config)
    store.claim_run_slot(run_id, parsed.to_dict(), is_alive, total_generations=parsed.generations)
    run_dir = run_dir_for(store, run_id)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if prepare is not None:
            prepare(run_dir)
        config_path = run_dir / "config.json"
        config_path.write_text(parsed.to_json(), encoding="utf-8")
        since = time.time()
        proc = launch(
            search_command(store.path, run_id, resume=False, config_path=config_path, data_dir=data_dir),
            log_path=run_dir / "search.log",
            cwd=cwd,
        )
    except Exception as exc:
        from automodel.errors import UserFacingError

        reason = str(exc) if isinstance(exc, UserFacingError) else f"could not start the search ({exc})"
        store.update_run(run_id, status="failed", reason=reason, ended_at=time.time())
        raise
    return Launch(run_id, proc.pid, since)


def resume_search(store: Store, run_id: str, *, data_dir: Path, cwd: Path) -> Launch:
    """Claim a stopped, interrupted or failed run for resuming (StoreError saying why not) and launch it."""
    claim_resume(store, run_id)
    since = time.time()
    proc = launch(
        search_command(store.path, run_id, resume=True, data_dir=data_dir),
        log_path=run_dir_for(store, run_id) / "search.log",
        cwd=cwd,
    )
    return Launch(run_id, proc.pid, since)


def settle_launch(store: Store, run: Mapping[str, Any], pending: Launch, grace_s: float) -> tuple[bool, str | None]:
    """(still on its way, a message for the person): whether a launched search has yet to take its
    run over. One that exited or never showed up within ``grace_s`` leaves the run failed with the
    last line of its log as the reason."""
    # The search process stamps resumed_at when it takes the run over (also when it then ends quickly).
    adopted = float(run.get("resumed_at") or 0.0) >= pending.since or (
        run.get("status") in ACTIVE_STATUSES and run.get("pid") is not None
    )
    code = child_exit_code(pending.pid)
    if adopted:
        return False, None
    if code is None and time.time() - pending.since < grace_s:
        return True, None
    fresh = store.get_run(run["run_id"]) or run
    tail = log_tail(run_dir_for(store, run["run_id"]) / "search.log", max_lines=1)
    if fresh.get("status") in ACTIVE_STATUSES and fresh.get("pid") is None:
        reason = tail or ("the search process did not start" if code is None else f"the search process exited ({code})")
        store.update_run(run["run_id"], status="failed", reason=reason, ended_at=time.time())
    elif (
        code not in (None, 0)
        and fresh.get("status") not in ACTIVE_STATUSES
        and tail
        and fresh.get("status") != "failed"
    ):
        return False, f"The search process could not continue: {tail}"
    return False, None


def stop_search(store: Store, run_id: str, pending: Launch | None, timeout_s: float = 5.0) -> RunRecord:
    """Ask the run to stop and wait a little; a run whose launched process already exited before it
    took the run over is marked stopped at once. Returns the run as it is then."""
    run = request_stop(store, run_id, timeout_s=timeout_s)
    if (
        run.get("status") in ACTIVE_STATUSES
        and run.get("pid") is None
        and pending is not None
        and child_exit_code(pending.pid) is not None
    ):
        run = store.update_run(run_id, status="stopped", ended_at=time.time())
    return run
