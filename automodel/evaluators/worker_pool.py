"""Train several candidates at once on one machine, in worker processes (no Ray needed).

:class:`WorkerPoolEvaluator` implements the :class:`~automodel.evaluators.base.Evaluator` interface
with a :class:`concurrent.futures.ProcessPoolExecutor` (spawned processes, as CUDA requires).

The data
    On the CPU the dataset's tensors are moved to shared memory once and handed to every worker
    when it starts: no worker copies them. On a GPU each worker moves its view of them to the
    GPU once, when it starts, and keeps it for every candidate it trains.
Threads
    Each worker trains with ``threads`` torch threads (workers × threads ≈ cores): for small
    networks, two trainings side by side use two cores far better than one training with two
    threads. A candidate's result depends on the thread count only in the last bits (CPU sums), so
    runs with the same threads per candidate give the same fitness whatever the number of workers.
Progress and stop
    Workers put their candidates' progress on a queue that :meth:`evaluate` drains while it waits;
    a stop request sets an event that every worker checks between batches, so a stop takes
    effect within a batch.
Failures
    A candidate's own failures (out of memory, NaN, time limit) are results, as in one process.
    A worker process that dies (the kernel's OOM killer, a crash in native code) breaks the pool:
    it is replaced, and the candidates that were in flight are trained again one at a time; the
    one that kills its worker alone is recorded as failed with the reason, the others complete.
    A candidate that hangs inside a kernel never reaches its between-batch time check: a watchdog
    here kills the workers once a candidate has run ``watchdog_margin_s`` past its time limit, and
    records it as ``timeout``; the candidates that were beside it are trained again.
    Workers die with the search process (Linux: ``PR_SET_PDEATHSIG``), so a SIGKILLed search
    leaves none behind.
The final training runs in a worker too, with this process's torch threads (all CPUs by default):
no training runs in the search process, so no candidate can take the search down with it.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

import torch

from automodel.evaluators.base import ProgressCallback, ResultCallback, Task, run_task
from automodel.training.model import count_macs
from automodel.training.trainer import ERROR, STOPPED, TIMEOUT, DeviceData, TrainResult, TrainSettings

POLL_S = 0.2  # longest wait between looks at progress and stop requests
PROGRESS_EVERY_S = 0.5  # per candidate, what workers send (the page reads about once a second)
WATCHDOG_MARGIN_S = 60.0  # past a candidate's time limit (worker start, data to the GPU, the last batch)
STOP_GRACE_S = 30.0  # after a stop, how long workers get to return before they are killed

# ---------------------------------------------------------------------------------- worker side

_WORKER: dict = {}  # in each worker process: its data, settings, queue and stop event


def _die_with_parent() -> None:
    """Linux: end this worker when the search process ends, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the search died before the line above
        os._exit(0)


def _start_worker(tensors: dict, meta: dict, settings: TrainSettings, progress, stop_event) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the search's to handle (it sets the stop event)
    torch.set_num_threads(max(1, settings.threads or 1))
    device = torch.device(settings.device)
    _WORKER.update(data=_device_data(tensors, meta, device), settings=settings, progress=progress, stop=stop_event)


def _device_data(tensors: dict, meta: dict, device: torch.device) -> DeviceData:
    data = DeviceData.__new__(DeviceData)
    data.device = device
    data.input_shape, data.classes = tuple(meta["input_shape"]), list(meta["classes"])
    data.mean, data.std = tuple(meta["mean"]), tuple(meta["std"])
    for name, tensor in tensors.items():
        setattr(data, name, tensor.to(device))
    return data


def train_in_worker(task: Task) -> TrainResult:
    """Train one task in a worker process, with the data and settings the worker started with."""
    label, progress, stop = task.worker_label, _WORKER["progress"], _WORKER["stop"]
    return run_task(
        task,
        _WORKER["data"],
        _WORKER["settings"],
        on_progress=lambda info: progress.put((label, info)),
        should_stop=stop.is_set,
    )


# ---------------------------------------------------------------------------------- driver side


class WorkerPoolEvaluator:
    """Trains candidates in ``workers`` processes of ``settings.threads`` threads each; see the module's notes."""

    def __init__(
        self,
        data: DeviceData,
        settings: TrainSettings,
        workers: int,
        task_function: Callable[[Task], TrainResult] | None = None,
    ):
        """``task_function``: what a worker runs for a task (a module-level function, so that the
        spawned workers can import it); the default trains it."""
        self.data = data
        self._task_function = task_function or train_in_worker
        self.workers = int(workers)
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._progress = self._context.Queue()
        self._stop = self._context.Event()
        cpu = data.device.type == "cpu"
        tensors = {name: getattr(data, name) for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        # On the CPU the search's own tensors go to shared memory (no copy per worker); for a GPU the
        # workers get CPU copies to move to their device.
        self._tensors = {k: (v.share_memory_() if cpu else v.cpu().share_memory_()) for k, v in tensors.items()}
        self._meta = {
            "input_shape": list(data.input_shape),
            "classes": list(data.classes),
            "mean": list(data.mean),
            "std": list(data.std),
        }
        self._pool: ProcessPoolExecutor | None = None
        self._suspected: set[str] = set()  # candidates that were in flight when a worker died
        self.watchdog_margin_s = WATCHDOG_MARGIN_S

    # -------------------------------------------------------------- the Evaluator interface
    def evaluate(
        self,
        tasks: list[Task],
        on_result: ResultCallback,
        on_progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> None:
        if not tasks or should_stop():
            return
        self._stop.clear()
        # The final training trains alone, with as many threads as this process has (all CPUs,
        # unless OMP_NUM_THREADS says otherwise).
        tasks = [replace(t, threads=torch.get_num_threads()) if t.final and t.threads is None else t for t in tasks]
        # Costliest first, so that a long candidate does not start last and leave the other workers idle.
        waiting = sorted(tasks, key=self._cost, reverse=True)
        suspects: list[Task] = []  # in flight when a worker died: tried again alone, one at a time
        alone: Task | None = None  # the suspect now running by itself
        running: dict[Future, Task] = {}
        deadlines: dict[Future, float] = {}
        by_label = {t.worker_label: t for t in tasks}

        def submit(task: Task) -> None:
            try:
                future = self._ensure_pool().submit(self._task_function, task)
            except BrokenProcessPool as exc:  # a worker died since the last look: handled below like the others
                future = Future()
                future.set_exception(exc)
            running[future] = task
            deadlines[future] = time.monotonic() + task.time_limit(self.settings) + self.watchdog_margin_s

        while waiting or suspects or running:
            if should_stop():
                self._stop.set()
                self._drain(running, on_progress, by_label)
                return
            if not running and suspects:
                alone = suspects.pop(0)
                submit(alone)
            elif alone is None and not suspects:
                while waiting and len(running) < self.workers:
                    submit(waiting.pop(0))
            done, _ = wait(list(running), timeout=POLL_S, return_when=FIRST_COMPLETED)
            self._forward_progress(on_progress, by_label, set(running.values()))
            broken: list[Task] = []
            for future in done:
                task = running.pop(future)
                deadlines.pop(future, None)
                if task is alone:
                    alone = None
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken.append(task)
                    continue
                except Exception as exc:  # noqa: BLE001 — a bug in the worker's code, not the candidate's
                    result = TrainResult(ERROR, 0.0, reason=f"{type(exc).__name__} in a worker: {exc}"[:300])
                if result.status != STOPPED:
                    on_result(task, result)
            hung = [f for f in running if time.monotonic() > deadlines[f]] if not broken else []
            if hung:
                # Stuck inside a kernel (it never reached its own time check): end its worker. The
                # pool goes with it, so the candidates beside it are trained again, not blamed.
                self._kill_workers()
                for future in hung:
                    task = running.pop(future)
                    limit = task.time_limit(self.settings)
                    on_result(
                        task,
                        TrainResult(
                            TIMEOUT,
                            0.0,
                            seconds=limit,
                            reason=(
                                f"no result {self.watchdog_margin_s:g} s past its time limit of {limit:g} s "
                                f"(stuck inside a computation); its worker was killed"
                            ),
                        ),
                    )
                waiting[:0] = [t for t in running.values() if t is not alone]
                if alone is not None and alone in running.values():
                    suspects.insert(0, alone)
                running.clear()
                deadlines.clear()
                alone = None
                self._restart()
            if broken:
                broken += list(running.values())  # the pool is gone: so are the candidates still on it
                running.clear()
                deadlines.clear()
                self._restart()
                if len(broken) == 1 and broken[0].worker_label in self._suspected:
                    on_result(
                        broken[0],
                        TrainResult(
                            ERROR,
                            0.0,
                            reason=(
                                "its worker process died (killed by the system, e.g. out of memory, or crashed in "
                                "native code)"
                            ),
                        ),
                    )
                else:
                    suspects.extend(broken)
                    self._suspected.update(t.worker_label for t in broken)
                alone = None

    def close(self) -> None:
        if self._pool is not None:
            self._stop.set()
            processes = list((self._pool._processes or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + STOP_GRACE_S
            for process in processes:  # a worker stuck in a kernel never returns: it is killed
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join(5.0)
            self._pool = None

    # -------------------------------------------------------------- helpers
    def _cost(self, task: Task) -> int:
        """Multiply-accumulates per image × epochs still to train: how long the task will take, roughly."""
        epochs = (task.pause_after or task.epochs or self.settings.epochs) - (task.resume.epoch if task.resume else 0)
        return count_macs(task.genome, self.data.input_shape, len(self.data.classes)) * max(1, epochs)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            worker_settings = replace(
                self.settings,
                threads=self.settings.threads or 1,
                progress_every_s=max(self.settings.progress_every_s, PROGRESS_EVERY_S),
            )
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=self._context,
                initializer=_start_worker,
                initargs=(self._tensors, self._meta, worker_settings, self._progress, self._stop),
            )
        return self._pool

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _kill_workers(self) -> None:
        if self._pool is not None:
            for process in list((self._pool._processes or {}).values()):
                process.kill()
                process.join(5.0)

    def _forward_progress(self, on_progress: ProgressCallback, by_label: dict, running: set) -> None:
        while True:
            try:
                label, info = self._progress.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            task = by_label.get(label)
            if task is not None and task in running:  # a finished candidate's late report is dropped
                on_progress(task, {**info, "worker": label})

    def _drain(self, running: dict, on_progress: ProgressCallback, by_label: dict) -> None:
        """After a stop: let the workers see the event and return (they stop within a batch)."""
        if running:
            wait(list(running), timeout=STOP_GRACE_S)
        self._forward_progress(on_progress, by_label, set())
