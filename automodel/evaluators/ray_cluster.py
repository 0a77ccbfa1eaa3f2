"""Train a generation's candidates as Ray tasks, on one machine or on every GPU of a cluster.

The only module of AutoModel that imports Ray (``pip install -r requirements-ray.txt``).
:class:`RayEvaluator` implements the :class:`~automodel.evaluators.base.Evaluator` interface: the
search hands it a batch of tasks and gets each result back as it completes.

How it is placed
    Each candidate is one Ray task reserving ``cpus_per_candidate`` CPUs and
    ``gpus_per_candidate`` GPUs (fractions let several small CNNs share a GPU; Ray does not
    enforce GPU memory). Ray schedules them; failed workers are retried by Ray itself
    (``max_retries = retries``), never application errors, which are deterministic.

How the data travels
    The driver (the search process) loads the dataset as usual and puts its uint8 tensors into
    Ray's object store once per run. Each node pulls that object once; each worker process
    reads it once, on its first candidate, into a module-level cache holding a
    :class:`~automodel.training.trainer.DeviceData` (on the GPU when it has one), and keeps it for every
    later candidate: workers are kept alive between tasks (``max_calls=0``, GPU tasks too). So
    the dataset only needs to exist where the search runs; worker nodes need no copy of it.
    The object store holds datasets up to its size (by default 30% of a node's memory), which
    covers every built-in dataset and image folders of a few GB.

Same results as the local back end
    A task trains with exactly the code, data, seed and settings the local back end uses, so
    genomes and, on CPU, fitness values are the same. CPU results depend in the last bits on
    the number of threads, so tasks train with ``threads = max(1, int(cpus_per_candidate))``
    (one by default): a local run matches when its process uses as many threads (e.g.
    ``OMP_NUM_THREADS=1``). Results arrive in completion order; the search ranks ties by
    (generation, index), so the best genome does not depend on that order.

Live progress
    Workers push each candidate's progress (every ``progress_every_s``) to a small actor; the
    driver drains it between ``ray.wait`` calls (at least every ``POLL_S``) and hands it to the
    search with ``info["worker"] = task.worker_label``, so every running candidate has its own
    progress record; the search removes it when the candidate's result arrives.

Stop
    Stop requests are checked at least every ``POLL_S``; queued and running tasks are then
    cancelled (``ray.cancel(force=True)`` kills the worker) and ``evaluate`` returns.

Crashes and hangs
    A worker that dies (a crash in native code, the OOM killer) is retried by Ray ``retries``
    times, then its candidate is recorded as failed. A task still running ``watchdog_margin_s``
    past the time limit (counted from when its worker began it) is stuck inside a computation,
    where the trainer's own between-batch check never comes: it is cancelled, its worker killed,
    and it is recorded as ``timeout``.

The local Ray instance
    Without ``ray_address``, a private Ray instance is started for the run by a small helper
    process in its own session (``python -m automodel.evaluators.ray_head``), which the search then
    joins. Ray's own processes are therefore outside the search's process group: a stop sent to
    that group (as the page does, SIGTERM) reaches only the search, which stops the candidates
    and then closes the instance, instead of Ray's daemons dying under it. The helper shares
    the search's fate: it shuts Ray down when its standard input closes or its parent dies
    (Linux), so even a SIGKILLed search leaves no Ray processes behind. With ``ray_address``
    the search joins that cluster and only disconnects at the end.

Signals
    ``ray.init`` replaces the caller's SIGTERM handler; the search's handlers (installed before
    the evaluator is made) are put back right after it, so a stop request is the search's.

What a worker runs
    ``train_task`` (read the dataset once per worker, train, push progress). ``RayEvaluator``
    takes another function of the same signature as ``task_function``, e.g. one that makes a worker
    die at a chosen moment (fault injection), with nothing for that in the product.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import ray.exceptions
import torch

from automodel.config import Config, ConfigError
from automodel.data import ImageData
from automodel.errors import first_line
from automodel.evaluators import ray_head
from automodel.evaluators.base import ProgressCallback, ResultCallback, Task, run_task
from automodel.evolution.throttle import Throttle
from automodel.training.trainer import ERROR, OOM, TIMEOUT, DeviceData, TrainResult, TrainSettings

POLL_S = 0.25  # longest wait between checks for progress and stop requests
HEAD_START_TIMEOUT_S = 180.0  # a slow machine needs a while to start Ray's processes
HEAD_STOP_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 5.0  # for a cluster address given by host:port
WATCHDOG_MARGIN_S = 60.0  # past a candidate's time limit before its task is cancelled as stuck
SPLITS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


def ray_evaluator_factory(
    config: Config,
    task_function: Callable | None = None,
) -> Callable[[ImageData, TrainSettings], RayEvaluator]:
    """What the search calls (in its main thread) to get its evaluator for ``config``."""

    def make(data: ImageData, settings: TrainSettings) -> RayEvaluator:
        return RayEvaluator(
            data,
            settings,
            address=config.ray_address,
            device=config.device,
            cpus_per_candidate=config.cpus_per_candidate,
            gpus_per_candidate=config.gpus_per_candidate,
            retries=config.retries,
            task_function=task_function,
        )

    return make


# ---------------------------------------------------------------------------------- worker side

_DATA_CACHE: dict[str, DeviceData] = {}  # in each worker process: the run's dataset, read once


@ray.remote(num_cpus=0)
class _ProgressBoard:
    """The latest progress of each running candidate, pushed by workers, drained by the driver."""

    def __init__(self):
        self._latest: dict[str, dict] = {}
        self._loads: list[int] = []
        self._started: list[str] = []

    def push(self, label: str, info: dict) -> None:
        self._latest[label] = info

    def started(self, label: str) -> None:
        self._started.append(label)

    def drain_started(self) -> list[str]:
        started, self._started = self._started, []
        return started

    def loaded(self, pid: int) -> None:
        self._loads.append(pid)

    def drain(self) -> dict[str, dict]:
        latest, self._latest = self._latest, {}
        return latest

    def loads(self) -> list[int]:
        return list(self._loads)


def _worker_data(box: list, device: str, board) -> DeviceData:
    """The run's dataset in this worker, fetched from the object store on first use only."""
    ref = box[0]  # boxed, so Ray hands over the reference instead of the data on every call
    key = f"{ref.hex()}@{device}"
    data = _DATA_CACHE.get(key)
    if data is None:
        _DATA_CACHE.clear()  # a worker serves one run; drop any older dataset
        images = _images(ray.get(ref))
        data = DeviceData(images, torch.device(device))
        _DATA_CACHE[key] = data
        board.loaded.remote(os.getpid())
    return data


def train_task(box: list, task: Task, settings: TrainSettings, board) -> TrainResult:
    """What a Ray worker runs for one candidate: the run's dataset (read once per worker), then
    the same training as the local back end, its progress pushed to the board."""
    label = task.worker_label
    board.started.remote(label)
    data = _worker_data(box, settings.device, board)
    result = run_task(task, data, settings, on_progress=lambda info: board.push.remote(label, info))
    return replace(result, node=node_name())


def node_name() -> str:
    """The Ray node this worker runs on: its address and the start of its node id (several nodes
    may share a machine, and so an address)."""
    context = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"


def _remote(function: Callable) -> Any:  # a Ray remote function
    # max_calls=0: keep the worker (and its cached dataset) for later candidates, GPU tasks too.
    return ray.remote(max_calls=0)(function)


_train_task = _remote(train_task)


# ---------------------------------------------------------------------------------- driver side


class RayEvaluator:
    """Trains each task as a Ray task; see the module's notes."""

    def __init__(
        self,
        data: ImageData,
        settings: TrainSettings,
        *,
        address: str | None = None,
        device: str = "auto",
        cpus_per_candidate: float = 1.0,
        gpus_per_candidate: float | None = None,
        retries: int = 1,
        num_cpus: int | None = None,
        task_function: Callable | None = None,
    ):
        """``num_cpus`` (a local instance only): CPUs Ray may use; None: all of this machine's.
        ``task_function``: what a worker runs for a task, ``train_task``'s signature (default: it)."""
        gpus = gpus_per_candidate if gpus_per_candidate is not None else (1.0 if settings.device == "cuda" else 0.0)
        if gpus == 0 and device == "cuda":
            raise ConfigError(
                "device cuda with the ray backend needs gpus_per_candidate above 0 "
                "(e.g. 1, or 0.25 to share a GPU between four candidates)."
            )
        self.address = address
        self.cpus, self.gpus, self.retries = float(cpus_per_candidate), float(gpus), int(retries)
        # Workers train on their own GPU when they reserve one, else on CPU, with a fixed thread
        # count so that CPU results do not depend on the node (see the module's notes).
        self.settings = replace(settings, device="cuda" if gpus > 0 else "cpu", threads=max(1, int(cpus_per_candidate)))
        self._head: _LocalHead | None = None
        self._connected = False
        self._running: dict[ray.ObjectRef, Task] = {}
        self._started: dict[str, float] = {}  # worker label → when its task began to run
        self.watchdog_margin_s = WATCHDOG_MARGIN_S
        self._task = _remote(task_function) if task_function is not None else _train_task
        try:
            self._connect(num_cpus)
            if self._connected:  # else a stop request came while Ray started; evaluate does nothing
                self._check_resources()
                self._data_ref = ray.put(_payload(data))
                self._board = _progress_board()
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------- setup
    def _connect(self, num_cpus: int | None) -> None:
        if ray.is_initialized():
            raise ConfigError(
                "Ray is already initialised in this process; the ray backend starts or joins "
                "Ray itself, so call ray.shutdown() first."
            )
        options: dict = {"logging_level": "WARNING"}
        if self.address is None:
            self._head = _LocalHead(num_cpus)
            options["address"] = self._head.address
            if self._head.auth_mode == "token":
                _use_local_token()
        else:
            _check_reachable(self.address)
            options["address"] = self.address
            # The cluster's workers import AutoModel from the copy shipped with the job, so its
            # nodes need only the requirements installed, not this source tree.
            options["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parent)]}
        handlers = _current_handlers()
        interrupted = False
        try:
            ray.init(**options)
            self._connected = True
        except SystemExit as exc:  # Ray's own SIGTERM handler, active while ray.init runs
            if exc.code != signal.SIGTERM:
                raise
            interrupted = True
        except ConnectionError as exc:
            if self.address is None:
                raise ConfigError(
                    f"the search could not join the local Ray instance it started "
                    f"({first_line(exc)}); check the Ray installation or use --backend local."
                ) from None
            raise ConfigError(
                f"ray_address {self.address!r}: no Ray cluster answers there "
                f"({first_line(exc)}); start one with `ray start --head`, or leave out "
                f"--ray-address to start a local Ray."
            ) from None
        except Exception as exc:  # e.g. a cluster that wants an authentication token
            where = "the local Ray instance" if self.address is None else f"the Ray cluster at {self.address!r}"
            raise ConfigError(
                f"the search could not join {where} ({type(exc).__name__}: {first_line(exc)}); "
                f"see Ray's messages above."
            ) from None
        finally:
            _restore_handlers(handlers)
        if interrupted:
            # A stop request arrived while Ray was starting: hand it to the search's handler.
            ray.shutdown()
            self._connected = False
            handler = handlers.get(signal.SIGTERM)
            if callable(handler):
                handler(signal.SIGTERM, None)

    def _check_resources(self) -> None:
        """A candidate no node can take would wait for ever as a pending task: refuse it before the
        search starts, in one sentence naming the most any node offers."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        most_cpus = max((r.get("CPU", 0.0) for r in nodes), default=0.0)
        most_gpus = max((r.get("GPU", 0.0) for r in nodes), default=0.0)
        where = "this machine's Ray" if self.address is None else f"any node of the Ray cluster at {self.address}"
        if self.cpus > most_cpus:
            raise ConfigError(
                f"cpus_per_candidate = {self.cpus:g} is more than {where} has (at most {most_cpus:g}); "
                f"use {most_cpus:g} or less, or add a node with more CPUs first."
            )
        if self.gpus > most_gpus:
            raise ConfigError(
                f"gpus_per_candidate = {self.gpus:g} is more than {where} has (at most {most_gpus:g}); "
                f"use {most_gpus:g} or less (0 trains on CPUs), or add a node with GPUs first."
            )

    # -------------------------------------------------------------- the Evaluator interface
    def evaluate(
        self,
        tasks: list[Task],
        on_result: ResultCallback,
        on_progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> None:
        if not tasks or should_stop() or not self._connected:
            return
        for task in tasks:
            self._running[self._submit(task)] = task
        forwards = Throttle(POLL_S)
        try:
            while self._running:
                if should_stop():
                    return
                ready, _ = ray.wait(list(self._running), num_returns=1, timeout=POLL_S)
                finished = [(ref, self._running.pop(ref)) for ref in ready]
                self._forward_progress(on_progress, forwards)
                for ref, task in finished:
                    self._started.pop(task.worker_label, None)  # the next rung starts its own clock
                    on_result(task, self._collect(ref))
                for _ref, task in self._hung():
                    limit = task.time_limit(self.settings)
                    on_result(
                        task,
                        TrainResult(
                            TIMEOUT,
                            0.0,
                            seconds=limit,
                            reason=(
                                f"no result {self.watchdog_margin_s:g} s past its time limit of {limit:g} s "
                                f"(stuck inside a computation); its Ray worker was killed"
                            ),
                        ),
                    )
        finally:
            self._cancel_running()

    def close(self) -> None:
        """Cancel what still runs, leave Ray, and end the local instance if this run started it."""
        self._cancel_running()
        if self._connected:
            self._connected = False
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 — closing must go on to end the local instance
                pass
        if self._head is not None:
            self._head.stop()
            self._head = None

    # -------------------------------------------------------------- diagnostics
    def data_loads(self) -> list[int]:
        """The pid of each worker process that read the dataset, once per read (tests, benchmarks)."""
        return ray.get(self._board.loads.remote())

    # -------------------------------------------------------------- helpers
    def _submit(self, task: Task) -> ray.ObjectRef:
        options = {
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
            "max_retries": self.retries,
            "retry_exceptions": False,
            "name": f"automodel-{task.worker_label}",
        }
        return self._task.options(**options).remote([self._data_ref], task, self.settings, self._board)

    def _collect(self, ref: ray.ObjectRef) -> TrainResult:
        """The task's result, or a failed result saying why there is none."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # our code raised in the worker (a bug, not a crash)
            cause = exc.cause if exc.cause is not None else exc
            return TrainResult(ERROR, 0.0, reason=f"{type(cause).__name__} in the Ray task: {first_line(cause)}")
        except ray.exceptions.OutOfMemoryError as exc:
            return TrainResult(OOM, 0.0, reason=f"Ray killed the worker to save the node's memory: {first_line(exc)}")
        except ray.exceptions.RayError as exc:  # the worker or its node died, or its objects were lost
            attempts = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
            return TrainResult(
                ERROR,
                0.0,
                reason=f"the Ray worker training it died ({type(exc).__name__}) in {attempts}: {first_line(exc)}",
            )

    def _hung(self) -> list[tuple[ray.ObjectRef, Task]]:
        """Tasks running past their time limit plus the margin (a hang inside a kernel never reaches the
        trainer's own time check): cancelled, their workers killed, and handed back to be recorded."""
        now = time.monotonic()
        hung = [
            (ref, task)
            for ref, task in self._running.items()
            if now - self._started.get(task.worker_label, now) > task.time_limit(self.settings) + self.watchdog_margin_s
        ]
        for ref, task in hung:
            del self._running[ref]
            self._started.pop(task.worker_label, None)
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 — it may have finished meanwhile; its result is dropped
                pass
        return hung

    def _forward_progress(self, on_progress: ProgressCallback, forwards: Throttle) -> None:
        if not self._running:
            return
        try:  # when each task began to run (queued ones wait for resources: their clock has not started)
            running = {task.worker_label for task in self._running.values()}
            for label in ray.get(self._board.drain_started.remote(), timeout=5):
                if label in running:
                    self._started.setdefault(label, time.monotonic())
        except (ray.exceptions.RayError, TimeoutError):
            pass
        try:
            latest = ray.get(self._board.drain.remote(), timeout=5)
        except (ray.exceptions.RayError, TimeoutError):
            return  # progress is a nicety; training goes on without it
        by_label = {task.worker_label: task for task in self._running.values()}
        # Many workers write many progress records: keep the store's writes near 16 a second.
        forwards.every_s = POLL_S * max(1.0, len(by_label) / 4)
        for label, info in latest.items():
            task = by_label.get(label)  # a finished or cancelled candidate's late report is dropped
            if task is not None and forwards.ready(label, force=info.get("batch") == info.get("batches")):
                on_progress(task, {**info, "worker": label})

    def _cancel_running(self) -> None:
        refs, self._running = list(self._running), {}
        self._started.clear()
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 — already finished, or Ray is going away
                pass


def _progress_board():
    """The progress actor, on this process's node when it can be (a worker node may go away)."""
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
        return _ProgressBoard.options(scheduling_strategy=here).remote()
    except (ImportError, AttributeError, ValueError):
        return _ProgressBoard.remote()


def _payload(data: ImageData) -> dict:
    """The dataset as plain arrays (Ray reads numpy arrays from the object store without a copy)."""
    payload = {"name": data.name, "classes": list(data.classes), "mean": list(data.mean), "std": list(data.std)}
    for name in SPLITS:
        payload[name] = getattr(data, name).contiguous().numpy()
    return payload


def _images(payload: dict) -> ImageData:
    """:func:`_payload` read back in a worker."""
    with warnings.catch_warnings():
        # The arrays are read-only views of the object store (no copy); training never
        # writes to them (every batch is a new tensor).
        warnings.simplefilter("ignore", UserWarning)
        train_x, train_y, val_x, val_y, test_x, test_y = (torch.from_numpy(payload[name]) for name in SPLITS)
    return ImageData(
        name=payload["name"],
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        classes=payload["classes"],
        mean=tuple(payload["mean"]),
        std=tuple(payload["std"]),
    )


def _check_reachable(address: str) -> None:
    """Refuse a host:port nobody listens on at once (``ray.init`` would retry it for minutes)."""
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray itself answers quickly
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(
            f"ray_address {address!r}: nothing answers at {hostport} ({exc.strerror or exc}); "
            f"check the head node's address and port (`ray status` on it), or leave out "
            f"--ray-address to start a local Ray."
        ) from None


def _use_local_token() -> None:
    """Join the private instance with the token Ray made for it, as ``ray.init()`` does for a local
    cluster it finds by itself (Ray >= 2.5x turns token authentication on for new local clusters;
    an explicit address never turns it on in the joining process)."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return  # the person chose a mode; the helper inherited the same
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:  # a Ray without token authentication
        return
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the helper has already said it
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def _current_handlers() -> dict:
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_handlers(handlers: dict) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in handlers.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------- local instance


_HEAD_MARKER = ray_head.MARKER


RAY_LOGS = ("gcs_server.out", "gcs_server.err", "raylet.out", "raylet.err")


def ray_log_tails(since: float, lines: int = 15, root: Path | None = None) -> str:
    """The last lines of the Ray logs of a session started at or after ``since`` (Ray's processes
    write why they failed there, not to the terminal), for a message when a local instance fails."""
    if root is None:
        root = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"
    sessions = [p for p in root.glob("session_2*") if p.is_dir() and p.stat().st_mtime >= since - 1]
    if not sessions:
        return ""
    logs = max(sessions, key=lambda p: p.stat().st_mtime) / "logs"
    parts = []
    for name in RAY_LOGS:
        try:
            tail = (logs / name).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if tail:
            parts.append(f"--- {logs / name} (last {len(tail)} lines)\n" + "\n".join(tail) + "\n")
    return "".join(parts)


class _LocalHead:
    """A private Ray instance for one run, started by a helper process in its own session."""

    def __init__(self, num_cpus: int | None):
        options = {"num_cpus": num_cpus, "include_dashboard": False, "logging_level": "WARNING"}
        env = dict(os.environ)
        # Workers import AutoModel from where this process found it.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "automodel.evaluators.ray_head", str(os.getpid()), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        found: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_address, args=(found,), daemon=True).start()
        started = time.time()
        try:
            answer = json.loads(found.get(timeout=HEAD_START_TIMEOUT_S))
            self.address, self.auth_mode = answer["address"], answer.get("auth_mode")
        except (queue.Empty, ValueError, KeyError):
            code = self.process.poll()
            self.stop()
            sys.stderr.write(ray_log_tails(started))
            why = (
                f"it exited with code {code}" if code is not None else f"it was not ready in {HEAD_START_TIMEOUT_S:g} s"
            )
            raise ConfigError(
                f"a local Ray instance could not be started ({why}; Ray's messages are above); "
                f"check the Ray installation or use --backend local."
            ) from None

    def _read_address(self, found: queue.Queue) -> None:
        """Pass on the helper's address line; echo anything else it prints (Ray's messages)."""
        assert self.process.stdout is not None  # opened as a pipe
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            if line.startswith(_HEAD_MARKER):
                found.put(line[len(_HEAD_MARKER) :])
            else:
                sys.stderr.write(line)
        found.put("")  # the helper ended without an address

    def stop(self) -> None:
        """Ask the helper to shut Ray down (close its stdin); kill its whole session if it lingers."""
        try:
            assert self.process.stdin is not None  # opened as a pipe
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=HEAD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        try:  # Ray's processes, in the helper's session (workers die with their raylet)
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
