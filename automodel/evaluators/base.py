"""Run many trainings: the search hands over a batch of tasks and gets results back.

Back ends share one interface, :class:`Evaluator`; the search never knows which one it has.
:class:`LocalEvaluator` trains in this process, one candidate after another (tests, benchmarks);
searches use :class:`~automodel.evaluators.worker_pool.WorkerPoolEvaluator`, which trains in worker processes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from automodel.evolution.genome import Genome
from automodel.training.trainer import Checkpoint, DeviceData, TrainResult, TrainSettings, train_candidate


@dataclass(frozen=True)
class Task:
    """One candidate to train: where it sits in the search and the seed its training uses."""

    generation: int
    index: int
    genome: Genome
    seed: int
    final: bool = False  # train on train + validation, score on the test split
    epochs: int | None = None  # overrides the settings' epochs (the final training's budget)
    prune_below: float | None = None  # first-epoch accuracy under which training stops (pruning)
    pause_after: int | None = None  # a successive-halving rung: stop after this many epochs
    resume: Checkpoint | None = field(default=None, compare=False, repr=False)  # go on from a paused rung
    threads: int | None = None  # overrides the settings' torch threads (the final training: all CPUs)
    batch_size: int | None = None  # overrides the settings' batch size (one a budget's plan chose by time)
    time_limit_s: float | None = None  # overrides the settings' time limit (the final training)
    probe_steps: int | None = None  # only time this many training steps (planning a time budget)
    parent: str | None = None  # the key of the candidate whose trained weights ``inherit`` holds
    inherit: dict | None = field(default=None, compare=False, repr=False)  # weights to start from

    def time_limit(self, settings: TrainSettings) -> float:
        """Seconds this task may train: its own limit, else the settings'."""
        return self.time_limit_s if self.time_limit_s is not None else settings.time_limit_s

    @property
    def worker_label(self) -> str:
        if self.probe_steps is not None:
            return f"probe-{self.index}"
        return "final" if self.final else f"g{self.generation}-i{self.index}"


def run_task(
    task: Task,
    data: DeviceData,
    settings: TrainSettings,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train one task: what every back end runs for a candidate, wherever it runs."""
    if task.epochs is not None:
        settings = replace(settings, epochs=task.epochs)
    if task.threads is not None:
        settings = replace(settings, threads=task.threads)
    if task.batch_size is not None:
        settings = replace(settings, batch_size=task.batch_size)
    settings = replace(settings, time_limit_s=task.time_limit(settings))
    result = train_candidate(
        task.genome,
        data,
        settings,
        task.seed,
        final=task.final,
        keep_weights=True,
        prune_below=task.prune_below,
        pause_after=task.pause_after,
        resume=task.resume,
        on_progress=on_progress,
        should_stop=should_stop,
        probe_steps=task.probe_steps,
        inherit=task.inherit,
    )
    return replace(result, worker=f"pid {os.getpid()}")


ResultCallback = Callable[[Task, TrainResult], None]
ProgressCallback = Callable[[Task, dict], None]


class Evaluator(Protocol):
    def evaluate(
        self,
        tasks: list[Task],
        on_result: ResultCallback,
        on_progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> None:
        """Train every task, calling ``on_result`` as each finishes (in completion order).

        Returns early, without calling ``on_result`` for unfinished tasks, once ``should_stop()``
        is true.
        """

    def close(self) -> None: ...


class LocalEvaluator:
    """Trains in this process, in task order. Nothing guards this process from a candidate that
    crashes or hangs in native code, so searches train in worker processes
    (:class:`~automodel.evaluators.worker_pool.WorkerPoolEvaluator`, one worker or more); this one is for
    tests and benchmarks that compare trainings in one process."""

    def __init__(self, data: DeviceData, settings: TrainSettings):
        self.data = data
        self.settings = settings

    def evaluate(
        self,
        tasks: list[Task],
        on_result: ResultCallback,
        on_progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> None:
        for task in tasks:
            if should_stop():
                return
            result = run_task(
                task,
                self.data,
                self.settings,
                should_stop=should_stop,
                on_progress=functools.partial(on_progress, task),
            )
            if result.status == "stopped":
                return
            on_result(task, result)

    def close(self) -> None:
        pass
