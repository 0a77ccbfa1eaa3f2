"""The generational loop: population, cache, elitism, records, stop and resume.

The store is the search's only memory. Generation 0 is sampled from the run seed; generation
g + 1 is bred from generation g's recorded genomes and fitness values with a generator seeded
by (run seed, g + 1). Every finished candidate is recorded at once, so a run killed at any
moment resumes by rebuilding the population from the records and training only what is
missing — a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import socket
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch

from automodel.config import (
    PLANNED,
    Config,
    available_cpus,
    resolve_batch_size,
    resolve_image_size,
    resolve_max_macs,
    resolve_workers,
)
from automodel.data import ImageData, load_dataset
from automodel.evaluators.base import Evaluator, Task
from automodel.evolution.breeding import NOVELTY_TRIES, breed
from automodel.evolution.budget import START_UP_S, Plan, describe_duration, final_epochs_for, make_plan
from automodel.evolution.final import (
    derive_seed,
    final_task,
    save_model,
    test_report,
    train_settings,
)
from automodel.evolution.genome import Genome, diversity, reference_genome, sample_genome
from automodel.evolution.halving import CONTINUABLE, score_at, survivors
from automodel.evolution.operators import equal_fidelity_fitness
from automodel.evolution.pareto import nsga2_ranks, objective_point
from automodel.evolution.repair import fit_to_budget, fit_to_image
from automodel.evolution.throttle import Throttle
from automodel.evolution.warm_start import warm_start_genomes
from automodel.process.jobs import Heartbeat, run_dir_for
from automodel.process.stop import StopSignal
from automodel.store import Store
from automodel.store.records import CandidateRecord, CandidateStatus, RunRecord
from automodel.tracking import BackgroundTracker
from automodel.training.inheritance import WeightStore, choose_parent
from automodel.training.model import measure_cost
from automodel.training.trainer import (
    OK,
    PRUNED,
    TOO_LARGE,
    Checkpoint,
    DeviceData,
    TrainResult,
    TrainSettings,
    resolve_device,
)

PROBE_GENERATION = -2  # the timing a budget is planned from
PROBE_STEPS = 20  # steps each probe times (after its warm-up steps)
PROBE_GENOMES_PER_WORKER = 2  # generation 0's first genomes a budget's timing trains, per worker
TIME_BATCH = 64  # the batch ``batch_by_time`` tries against the automatic size
TRACKING_CLOSE_S = 120.0  # the longest a finished search waits for its tracker to log what is queued
TRACKING_ABORT_S = 10.0  # the same for a search ended by an error
MAX_GENERATIONS_FACTOR = 3  # a budget's search trains at most this many times its planned generations
FALLBACK_STEP_S = 0.05  # seconds per step when no probe could be timed (every one failed)
PARTIAL = CandidateStatus.PARTIAL  # trained to a lower rung; waits for the rest of its rung to be ranked


def _rank(record: Mapping[str, Any]) -> tuple:
    """Best first: higher fitness, then the earlier (generation, index) — the order the local back
    end records in — so the best genome does not depend on the order results arrive in (Ray)."""
    return record["fitness"], -record["generation"], -record["index"]


def _epoch_seconds(record: Mapping[str, Any]) -> float | None:
    """A trained candidate's mean seconds per epoch (validation included); None without a history."""
    seconds = [h["seconds"] for h in record.get("history") or [] if h.get("seconds")]
    return statistics.fmean(seconds) if seconds else None


class Reporter:
    """What the search tells a person while it runs; the CLI draws progress bars from it."""

    def generation_started(self, generation: int, generations: int, todo: int, population: int) -> None: ...
    def candidate_progress(self, task: Task, info: dict) -> None: ...
    def candidate_done(self, task: Task, record: Mapping[str, Any]) -> None: ...
    def generation_done(self, record: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def data_progress(self, done: int, total: int) -> None: ...
    def close(self) -> None: ...


class Search:
    """One run of the genetic algorithm, recorded in ``store`` under ``run_id``."""

    def __init__(
        self,
        config: Config,
        store: Store,
        run_id: str,
        *,
        data_dir: str | Path = "data",
        reporter: Reporter | None = None,
        evaluator_factory: Callable[[ImageData, TrainSettings], Evaluator] | None = None,
    ):
        self.config = config
        self.store = store
        self.run_id = run_id
        self.data_dir = Path(data_dir)
        self.run_dir = run_dir_for(store, run_id)
        self.reporter = reporter or Reporter()
        self.evaluator_factory = evaluator_factory
        self.stop = StopSignal(store, run_id)
        self.space = config.space
        self._cache: dict[str, CandidateRecord] = {}  # genome key → its record at the highest rung reached
        self._checkpoints: dict[str, Checkpoint] = {}  # genome key → its training paused at a lower rung
        self._costs: dict[str, tuple[int, int]] = {}  # genome key → (parameters, MACs)
        self._finished: set[tuple[int, int]] = set()  # (generation, index) of tasks whose result came in
        self._best: CandidateRecord | None = None
        self.data: ImageData | None = None
        self.plan: Plan | None = None  # with a time budget: what it became
        self._progress_writes = Throttle(0.25)  # store writes of live progress, per worker label
        self.weights = WeightStore(self.run_dir / "weights")  # trained weights of candidates that may be parents
        self._parents: dict[int, tuple[Genome, ...]] = {}  # index → the parents a child was bred from
        self.tracker: BackgroundTracker | None = None  # MLflow, when the run is tracked

    @property
    def dataset(self) -> ImageData:
        """The run's data, once loaded (the loop's steps after loading read it)."""
        if self.data is None:
            raise RuntimeError("the search's dataset is read before it was loaded")
        return self.data

    # ------------------------------------------------------------------ entry point
    def run(self) -> str:
        """Run (or continue) the search to its end; returns the run's final status."""
        started = time.monotonic()
        run = self.store.get_run(self.run_id) or {}
        self._started, self._elapsed_before = started, float(run.get("elapsed_s") or 0.0)
        self.store.update_run(
            self.run_id,
            status="running",
            pid=os.getpid(),
            host=socket.gethostname(),
            reason="",
            started_at=run.get("started_at") or time.time(),
            resumed_at=time.time(),
        )
        self._install_signal_handlers()
        evaluator: Evaluator | None = None
        heartbeat = Heartbeat(self.store, self.run_id).start()
        try:
            data = self._load_data(run)
            self.data = data
            settings = train_settings(self.config, data)
            self.store.update_run(
                self.run_id,
                device=settings.device,
                classes=data.classes,
                input_shape=list(data.input_shape),
                train_size=len(data.train_x),
                val_size=len(data.val_x),
                test_size=len(data.test_x),
                skipped_images=data.skipped,
                ignored_files=data.ignored,
                data=data.describe(),
                stage="search",
                loading=None,
            )
            status = "stopped"  # a stop during set-up (a download, starting Ray) is obeyed here
            if not self.stop():
                evaluator = (
                    self.evaluator_factory(data, settings)
                    if self.evaluator_factory
                    else self._local_evaluator(data, settings)
                )
            if evaluator is not None and not self.stop() and self.config.budget_s is not None:
                self._follow_plan(evaluator)
            if evaluator is not None and not self.stop():
                self._load_cache()
                self._start_tracking()
                status = self._one_network() if self.plan is not None and self.plan.direct else self._evolve(evaluator)
            if evaluator is not None and status == "searched":
                status = self._final_training(evaluator)
        except BaseException:
            if self.tracker is not None:  # log what is queued; the records hold everything anyway
                self.tracker.close(TRACKING_ABORT_S)
                self.tracker = None
            raise
        finally:
            heartbeat.stop()
            if evaluator is not None:
                evaluator.close()
            self.store.clear_progress(self.run_id)
            self.reporter.close()
        self.store.update_run(self.run_id, status=status, ended_at=time.time(), pid=None, elapsed_s=self._elapsed())
        self._finish_tracking()
        return status

    # ------------------------------------------------------------------ experiment tracking
    def _start_tracking(self) -> None:
        """Mirror the records to MLflow when the run asks for it (in a thread: never in the search's way)."""
        if self.config.mlflow is None:
            return
        from automodel.tracking.mlflow_tracker import MlflowTracker, tracking_uri, ui_command

        uri, experiment = tracking_uri(self.config.mlflow, self.store.path), self.config.mlflow_experiment
        self.tracker = BackgroundTracker(
            lambda: MlflowTracker(uri, experiment, self.run_id), self.reporter.message, name="MLflow"
        )
        self.store.update_run(
            self.run_id, tracking={"to": "mlflow", "uri": uri, "experiment": experiment, "ui": ui_command(uri)}
        )
        run = self.store.get_run(self.run_id) or {}
        self.tracker.start(run, self.store.individuals(self.run_id), self.store.generations(self.run_id))

    def _finish_tracking(self) -> None:
        if self.tracker is None:
            return
        self.tracker.finish(self.store.get_run(self.run_id) or {}, self.run_dir)
        self.tracker.close(TRACKING_CLOSE_S)
        tracking = dict((self.store.get_run(self.run_id) or {}).get("tracking") or {})
        tracking.update(
            run_id=self.tracker.where.get("run_id"),
            experiment_id=self.tracker.where.get("experiment_id"),
            errors=self.tracker.errors,
            error=self.tracker.first_error,
        )
        self.store.update_run(self.run_id, tracking=tracking)
        self.tracker = None

    def _load_data(self, run: RunRecord) -> ImageData:
        """The run's dataset, at the image size it was first decoded at (a resume on another machine
        keeps it), from the run's decoded cache when the files have not changed."""
        c = self.config
        if run.get("image_size") is None:
            image_size, max_side = resolve_image_size(c.image_size, self._training_device())
            self.store.update_run(self.run_id, image_size=[image_size, max_side])
        else:
            image_size, max_side = run["image_size"]
        self.store.update_run(self.run_id, stage="data")
        return load_dataset(
            c.dataset,
            self.data_dir,
            val_fraction=c.val_fraction,
            seed=c.seed,
            work_dir=self.run_dir / "dataset",
            image_size=image_size,
            max_side=max_side,
            cache_dir=self.run_dir,
            on_progress=self._on_data_progress,
        )

    def _training_device(self) -> str:
        """cuda when candidates will train on a GPU (here, or on a Ray cluster's nodes), else cpu."""
        c = self.config
        if c.backend == "ray" and c.device != "cpu" and (c.gpus_per_candidate or 0) > 0:
            return "cuda"
        return resolve_device(c.device).type

    def _on_data_progress(self, done: int, total: int) -> None:
        self.store.update_run(self.run_id, loading={"done": done, "total": total})
        self.reporter.data_progress(done, total)

    def _local_evaluator(self, data: ImageData, settings: TrainSettings) -> Evaluator:
        """Candidates trained in worker processes, one at a time or several at once."""
        workers, threads = resolve_workers(self.config.workers, settings.device, self.config.population)
        self.store.update_run(self.run_id, workers=workers, threads_per_worker=threads if workers > 1 else None)
        if workers == 1:  # as many threads as this process has (OMP_NUM_THREADS, torch.set_num_threads)
            threads = torch.get_num_threads()
        device_data = DeviceData(data, resolve_device(settings.device))
        # Even one worker is a process of its own: a candidate that crashes or hangs in native code
        # then takes only its worker down, never the search.
        from automodel.evaluators.worker_pool import WorkerPoolEvaluator

        return WorkerPoolEvaluator(device_data, replace(settings, threads=threads), workers)

    def _elapsed(self) -> float:
        """Seconds this run has been searching, over all its sessions (the time budget's clock)."""
        return self._elapsed_before + time.monotonic() - self._started

    # ------------------------------------------------------------------ a time budget
    def _follow_plan(self, evaluator: Evaluator) -> None:
        """Plan the run from its budget (once: a resumed run keeps its plan) and set the config from it."""
        run = self.store.get_run(self.run_id) or {}
        if recorded := run.get("plan"):
            self.plan = Plan.from_dict(recorded)
        else:
            plan = self._make_plan(evaluator)
            if plan is None:  # stopped while timing
                return
            self.plan = replace(plan, search_limit_s=self.config.time_budget_s)
            self.store.update_run(self.run_id, plan=self.plan.to_dict())
            self.reporter.message(f"budget {plan.summary()}")
        keep = set(self.config.overrides)
        planned: dict[str, Any] = {name: getattr(self.plan, name) for name in PLANNED if name not in keep}
        if self.plan.batch_size is not None:
            planned["batch_size"] = self.plan.batch_size
        search_s = (
            self.plan.search_s
            if self.config.time_budget_s is None
            else min(self.plan.search_s, self.config.time_budget_s)
        )
        self.config = replace(self.config, **planned, time_budget_s=search_s)
        self.store.update_run(self.run_id, config=self.config.to_dict(), total_generations=self.config.generations)
        if recorded and not recorded.get("final_threads"):  # resumed before its final training
            self._resize_search_share()

    def _make_plan(self, evaluator: Evaluator) -> Plan | None:
        """The plan from the budget and two short timings, each over ``PROBE_STEPS`` steps: generation
        0's first genomes (``PROBE_GENOMES_PER_WORKER`` a worker, trained side by side as the search
        will train them; their mean is what a candidate costs), and the reference CNN trained as a
        final training is (alone, on all threads, train + validation)."""
        c, data = self.config, self.dataset
        workers = getattr(evaluator, "workers", None) or max(1, int(available_cpus() // c.cpus_per_candidate))
        genomes = self.initial_genomes(workers * PROBE_GENOMES_PER_WORKER)
        tasks = [
            Task(PROBE_GENERATION, i, g, self.training_seed(g), probe_steps=PROBE_STEPS)
            for i, g in enumerate(genomes)
            if self._over_budget(g) is None
        ]
        self.reporter.message("timing a few training steps to plan the budget")
        step_s = self._time_steps(evaluator, tasks)
        if step_s is None:
            return None
        auto = resolve_batch_size(c.batch_size, len(data.train_x))
        batch, chosen, scale = auto, None, 1.0
        if (
            c.batch_by_time
            and c.batch_size is None
            and auto < TIME_BATCH
            and not {"epochs", "min_epochs"} & set(c.overrides)
        ):
            large_s = self._time_steps(evaluator, [replace(t, batch_size=TIME_BATCH) for t in tasks])
            if large_s is None:
                return None
            faster = (TIME_BATCH / large_s) / (auto / step_s)
            if faster > 1.0:
                batch, chosen, scale, step_s = TIME_BATCH, TIME_BATCH, faster, large_s
        steps_per_epoch = max(1, len(data.train_x) // batch)
        auto_steps_per_epoch = max(1, len(data.train_x) // auto)
        # An epoch ends with a validation pass (forward only, about a third of a training step per image).
        epoch_s = step_s * steps_per_epoch * (1 + len(data.val_x) / max(1, len(data.train_x)) / 3)
        final_steps = max(1, (len(data.train_x) + len(data.val_x)) // batch)
        # A final training trains alone on all threads: two to three times a candidate's speed on one
        # worker's share (bench/RESULTS.md §21), so it is timed as it will run.
        reference = genomes[0]
        final_timed = self._time_final(evaluator, reference, chosen) if self._over_budget(reference) is None else {}
        if self.stop():
            return None
        final_epoch_s = (min(final_timed.values()) if final_timed else step_s) * final_steps
        given = {name: getattr(c, name) for name in c.overrides}
        assert c.budget_s is not None  # only a run with a budget is planned
        return make_plan(
            c.budget_s,
            elapsed_s=self._elapsed(),
            epoch_s=epoch_s,
            final_epoch_s=final_epoch_s,
            workers=workers,
            reduction_factor=c.reduction_factor,
            given=given,
            fidelities_for=lambda epochs, low: replace(c, epochs=epochs, min_epochs=min(low, epochs)).fidelities(
                steps_per_epoch=auto_steps_per_epoch
            ),
            batch_size=chosen,
            epoch_scale=scale,
        )

    def _time_steps(self, evaluator: Evaluator, tasks: list[Task]) -> float | None:
        """The mean of the probe ``tasks``' seconds per training step, trained at once (a fallback when
        none could be timed); None when the run was stopped meanwhile."""
        results: list[TrainResult] = []
        evaluator.evaluate(tasks, lambda _t, r: results.append(r), lambda _t, _i: None, self.stop)
        if self.stop():
            return None
        steps = [r.step_seconds for r in results if r.step_seconds is not None]
        return statistics.fmean(steps) if steps else FALLBACK_STEP_S

    def _time_final(self, evaluator: Evaluator, genome: Genome, batch_size: int | None) -> dict[int, float]:
        """Seconds per step of ``genome`` trained as a final training (train + validation), timed with
        one worker's threads and with all of them (small networks often train faster on one thread),
        one timing after the other: side by side they would slow each other down. By thread count."""
        settings = getattr(evaluator, "settings", None)
        worker_threads = (settings.threads if settings is not None else None) or 1
        options = sorted({worker_threads, torch.get_num_threads()})
        timed: dict[int, float] = {}

        def timing(task: Task, result: TrainResult) -> None:
            if result.step_seconds is not None and task.threads is not None:
                timed[task.threads] = result.step_seconds

        for i, threads in enumerate(options):
            task = Task(
                PROBE_GENERATION,
                i,
                genome,
                0,
                final=True,
                probe_steps=PROBE_STEPS,
                threads=threads,
                batch_size=batch_size,
            )
            evaluator.evaluate([task], timing, lambda _t, _i: None, self.stop)
            if self.stop():
                break
        return timed

    def _resize_search_share(self) -> None:
        """With a budget: the search's share again, from what the generations trained so far cost.
        The final's reserve becomes its epochs at the best candidate's speed: the reference CNN's final
        timing (made at the start) times the best's seconds per epoch over the reference's, both as
        candidates of generation 0 on. A best that trains faster or slower than the timing said moves
        the search's end, not the final's length. Never past a search time a person set
        (``time_budget_s``); not for a direct plan. A resumed run re-sizes from the same finished
        generations, so it ends where the uninterrupted one does."""
        plan = self.plan
        if plan is None or plan.direct:
            return
        done = {g["generation"] for g in self.store.generations(self.run_id)}
        rows = [r for r in self.store.individuals(self.run_id) if r["generation"] in done]
        reference = self.fit(reference_genome(self.space)).key()
        ref = next((r for r in rows if r["generation"] == 0 and r["key"] == reference and not r.get("cached")), None)
        trained = [r for r in rows if r["status"] == OK and _epoch_seconds(r) is not None]
        ref_s = _epoch_seconds(ref) if ref is not None else None
        if ref_s is None or not trained:
            return
        best = max(trained, key=_rank)
        final_s = self.config.final_epochs * plan.final_epoch_s * (_epoch_seconds(best) or ref_s) / ref_s
        share = max(plan.budget_s - START_UP_S / 2 - final_s, 1.0)
        if plan.search_limit_s is not None:
            share = min(share, plan.search_limit_s)
        if abs(share - (self.config.time_budget_s or 0.0)) < 0.5:
            return
        self.config = replace(self.config, time_budget_s=share)
        self.store.update_run(self.run_id, config=self.config.to_dict())
        self.reporter.message(
            f"the best candidate's speed leaves the search {describe_duration(share)} of the budget "
            f"(the final's {self.config.final_epochs} epochs: about {describe_duration(final_s)})"
        )

    def candidate_time_limit(self) -> float:
        """A candidate's time limit; with a budget also long enough for a candidate of the plan's epochs
        at the timed speed, however short the budget."""
        limit = self.config.candidate_time_limit()
        if self.plan is None:
            return limit
        return min(self.config.time_limit_s, max(limit, 3 * self.config.epochs * self.plan.epoch_s))

    def _no_time_for(self, generation: int) -> bool:
        """With a budget: whether the generations so far say this one would end after the search's share."""
        if self.plan is None or generation == 0 or self.config.time_budget_s is None:
            return False
        times = [g["seconds"] for g in self.store.generations(self.run_id)]
        return bool(times) and self._elapsed() + statistics.fmean(times) > self.config.time_budget_s

    def _final_continues(self, best: Mapping[str, Any], epochs: int) -> bool:
        """Whether the final training starts from the winner's trained weights (when the run kept
        them): asked for (search), or auto. Continuing beat a fresh start in every measured pair
        (bench/RESULTS.md §13 and §14: at 3×, 5× and 20×T, finals of 4 to 30 epochs), most of all when
        a budget left the final fewer epochs than planned (a winner slower than the plan's timing)."""
        return self.config.final_from in ("search", "auto")

    def _final_plan(self, evaluator: Evaluator, genome: Genome) -> tuple[int, int | None]:
        """(epochs, threads) of the final training: as configured (and all of this process's threads),
        or with a budget as many epochs as the time left allows, at the speed of the faster of
        ``_time_final``'s two timings of this genome. The choice is recorded with the plan, so
        that a resumed run and ``finalize`` train the final model the same way."""
        if self.plan is None:
            return self.config.final_epochs, None
        recorded = (self.store.get_run(self.run_id) or {}).get("plan") or {}
        if recorded.get("final_threads") is not None:
            return self.config.final_epochs, recorded["final_threads"]
        timed = self._time_final(evaluator, genome, self.config.batch_size)
        threads = min(timed, key=lambda t: timed[t]) if timed else torch.get_num_threads()
        data = self.dataset
        batch = resolve_batch_size(self.config.batch_size, len(data.train_x))
        steps = max(1, (len(data.train_x) + len(data.val_x)) // batch)
        epoch_s = timed[threads] * steps if timed else self.plan.final_epoch_s
        epochs = self.config.final_epochs
        if "final_epochs" not in self.config.overrides:
            epochs = final_epochs_for(self.plan.budget_s - self._elapsed(), epoch_s)
        self.config = replace(self.config, final_epochs=epochs)
        self.store.update_run(
            self.run_id,
            config=self.config.to_dict(),
            plan={
                **self.plan.to_dict(),
                "final_epochs": epochs,
                "final_epoch_s": round(epoch_s, 3),
                "final_threads": threads,
            },
        )
        return epochs, threads

    def fidelities(self) -> list[int]:
        """The run's successive-halving rungs, in epochs, for its training set and batch size."""
        if self.data is None:
            return self.config.fidelities()
        # A batch the plan chose by time keeps the automatic size's shortest first rung: its own first
        # rung (min_epochs) was scaled to the same time.
        given = None if self.plan is not None and self.plan.batch_size is not None else self.config.batch_size
        batch = resolve_batch_size(given, len(self.data.train_x))
        return self.config.fidelities(steps_per_epoch=max(1, len(self.data.train_x) // batch))

    def max_macs(self) -> int:
        return resolve_max_macs(self.config.max_macs, self.dataset.input_shape)

    def fit(self, genome: Genome) -> Genome:
        """The genome fitted to the run's images and repaired to its MACs and parameter budgets (see
        ``repair.fit_to_image`` and ``repair.fit_to_budget``);
        as it is when it cannot be repaired (it is then refused before training) or before the data,
        and so the image size, is known."""
        if self.data is None:
            return genome
        genome = fit_to_image(genome, self.data.input_shape)
        fitted = fit_to_budget(
            genome,
            self.data.input_shape,
            len(self.data.classes),
            max_macs=self.max_macs(),
            max_params=self.config.max_params,
            min_filters=min(self.space.filters),
            min_blocks=self.space.conv_blocks[0],
        )
        return fitted if fitted is not None else genome

    def cost(self, genome: Genome) -> tuple[int, int]:
        """(parameters, MACs per image) of the genome on this run's images."""
        key = genome.key()
        if key not in self._costs:
            cost = measure_cost(genome, self.dataset.input_shape, len(self.dataset.classes))
            self._costs[key] = (cost.params, cost.macs)
        return self._costs[key]

    def _install_signal_handlers(self) -> None:
        self.stop.install()

    # ------------------------------------------------------------------ generations
    def _evolve(self, evaluator: Evaluator) -> str:
        c = self.config
        recorded = {g["generation"] for g in self.store.generations(self.run_id)}
        generation = -1
        while True:
            generation += 1
            if generation in recorded:
                continue
            if generation >= self.config.generations and not self._one_more_generation(generation):
                return "searched"
            if self._no_time_for(generation):
                self.reporter.message("no time left in the budget for another generation; ending the search")
                return "searched"
            population = self.population(generation)
            gen_started = time.monotonic()
            done = {r["index"] for r in self.store.individuals(self.run_id, generation)}
            self.reporter.generation_started(
                generation, self.config.generations, len(population) - len(done), len(population)
            )
            outcome = self._run_generation(generation, population, evaluator)
            self._checkpoints.clear()
            if outcome == "stopped":
                return "stopped"
            if outcome == "budget":  # cut short by the time budget
                self.reporter.message("time budget spent; ending the search with the best so far")
                return "searched"
            record = self._record_generation(generation, time.monotonic() - gen_started)
            self._resize_search_share()
            # Only this generation's candidates can be parents of the next (and the best, the final's start).
            self.weights.keep_only(
                [r["key"] for r in self.store.individuals(self.run_id, generation)]
                + ([self._best["key"]] if self._best is not None else [])
            )
            if self._budget_spent():
                self.reporter.message("time budget spent; ending the search with the best so far")
                return "searched"
            if c.target_fitness is not None and record["best"] >= c.target_fitness:
                self.reporter.message(f"target fitness {c.target_fitness:g} reached")
                return "searched"

    def _one_more_generation(self, generation: int) -> bool:
        """With a budget whose plan set the generations: whether ``generation``, one past them, is trained
        too, because the generations so far say it ends within the search's share (the plan's timing
        overestimated what candidates cost). At most ``MAX_GENERATIONS_FACTOR`` times the planned ones."""
        plan = self.plan
        if (
            plan is None
            or plan.direct
            or "generations" in self.config.overrides
            or generation >= MAX_GENERATIONS_FACTOR * plan.generations
            or self._no_time_for(generation)
        ):
            return False
        self.config = replace(self.config, generations=generation + 1)
        self.store.update_run(self.run_id, config=self.config.to_dict(), total_generations=generation + 1)
        self.reporter.message(
            f"the generations so far leave time for one more in the budget: generation {generation + 1}"
        )
        return True

    def _one_network(self) -> str:
        """A budget too short to search (a ``direct`` plan): one network gets all of the time left,
        the best of the runs it starts from (``warm_start``), else the plain reference CNN."""
        warm = self.warm_genomes()
        genome = warm[0] if warm else self.fit(reference_genome(self.space))
        self._best = cast(  # not a trained candidate: its fitness is unknown until the final training
            CandidateRecord,
            {
                "genome": genome.to_dict(),
                "key": genome.key(),
                "summary": genome.summary(),
                "fitness": None,
                "status": OK,
            },
        )
        self.store.update_run(
            self.run_id, best_key=genome.key(), best_summary=genome.summary(), best_genome=genome.to_dict()
        )
        self.reporter.message(
            "the budget is too short to search: all of it trains "
            + ("the best network of the runs it starts from" if warm else "one plain CNN")
        )
        return "searched"

    def _run_generation(self, generation: int, population: list[Genome], evaluator: Evaluator) -> str:
        """Successive halving inside the generation: every candidate trains for the first rung's
        epochs, the best 1/reduction_factor of them (compared at that same number of epochs) go on
        to the next rung, and so on up to ``epochs``. Returns done, stopped or budget."""
        fidelities = self.fidelities()
        contenders = list(range(len(population)))
        for rung, fidelity in enumerate(fidelities):
            tasks = self._plan(generation, population, contenders, fidelity)
            if tasks:
                evaluator.evaluate(tasks, self._on_result, self._on_progress, self._should_stop)
                if self.stop():
                    return "stopped"
                if not all((task.generation, task.index) in self._finished for task in tasks):
                    return "budget"
            self._copy_duplicates(generation, population, contenders, fidelity)
            if rung < len(fidelities) - 1:
                contenders = self._promote(generation, population, contenders, fidelity)
        return "done"

    def _should_stop(self) -> bool:
        """Training stops on a stop request, or when the time budget is spent."""
        return self.stop() or self._budget_spent()

    def _budget_spent(self) -> bool:
        budget = self.config.time_budget_s
        return budget is not None and self._elapsed() >= budget

    def population(self, generation: int) -> list[Genome]:
        """The genomes of a generation: for the first, the plain reference CNN (as near as the space
        allows: a network that trains on any image set, so the search never ends below it) and
        samples of the space; bred from the records after."""
        c = self.config
        if generation == 0:
            self._parents = {}
            return self.initial_genomes(c.population)
        earlier = [r for r in self.store.individuals(self.run_id) if r["generation"] < generation]
        parents = [r for r in earlier if r["generation"] == generation - 1]
        if len(parents) != c.population:
            raise RuntimeError(f"generation {generation - 1} is incomplete in the store")
        # Candidates are compared at equal fidelity: one that reached a higher rung ranks above every
        # one that stopped lower (successive halving already found it better there).
        fitness = equal_fidelity_fitness([r["fitness"] for r in parents], [r.get("epochs") or 0 for r in parents])
        ranks = None
        if len(c.objectives) > 1:
            # NSGA-II: accuracy (at equal fidelity) against the costs; a failed candidate is worst in all.
            points = [
                objective_point(r, c.objectives, accuracy=f)
                if r["status"] in CONTINUABLE
                else (math.inf,) * len(c.objectives)
                for r, f in zip(parents, fitness)
            ]
            ranks = nsga2_ranks(points)
        genomes = [Genome.from_dict(r["genome"]) for r in parents]
        offspring = breed(
            genomes,
            fitness,
            c,
            random.Random(derive_seed(c.seed, "breed", generation)),
            repair=self.fit,
            known={Genome.from_dict(r["genome"]).key() for r in earlier},
            ranks=ranks,
        )
        self._parents = {index: tuple(genomes[i] for i in pair) for index, (_child, pair) in enumerate(offspring)}
        return [child for child, _pair in offspring]

    def initial_genomes(self, count: int) -> list[Genome]:
        """The first ``count`` genomes of generation 0: the reference CNN, those of the runs it starts
        from (``warm_start``), then samples of the space. A larger population only adds genomes after
        them, so a budget's timing trains the very networks generation 0 starts with."""
        rng = random.Random(derive_seed(self.config.seed, "initial"))
        population: list[Genome] = [self.fit(reference_genome(self.space))][:count]
        for genome in self.warm_genomes():
            if genome not in population and len(population) < count:
                population.append(genome)
        while len(population) < count:
            genome = self.fit(sample_genome(self.space, rng))
            for _ in range(NOVELTY_TRIES):
                if genome not in population:
                    break
                genome = self.fit(sample_genome(self.space, rng))
            population.append(genome)
        return population

    def warm_genomes(self) -> list[Genome]:
        """Generation 0's genomes from earlier runs (``warm_start``), fitted to this run: chosen once
        and recorded with the run (``warm_genomes``), so that a resume starts from the same ones
        whatever those runs did since."""
        c = self.config
        if not c.warm_start:
            return []
        run = self.store.get_run(self.run_id) or {}
        if run.get("warm_genomes") is None:
            chosen = warm_start_genomes(self.store, c.warm_start, limit=max(1, c.population // 2))
            self.store.update_run(self.run_id, warm_genomes=[g.to_dict() for g in chosen])
        else:
            chosen = [Genome.from_dict(d) for d in run["warm_genomes"]]
        return [self.fit(g) for g in chosen]

    # ------------------------------------------------------------------ candidates
    def _plan(self, generation: int, population: list[Genome], contenders: list[int], fidelity: int) -> list[Task]:
        """Tasks that bring the contenders to ``fidelity`` epochs. A genome already known at that
        rung (an elite, a repeat) is recorded from the cache; one over the MACs or parameter budget
        is refused without training; a genome twice in the generation trains once."""
        rows = {r["index"]: r for r in self.store.individuals(self.run_id, generation)}
        tasks, planned = [], set()
        prune_below = self.prune_threshold(generation)
        pause_after = fidelity if fidelity < self.config.epochs else None
        for index in contenders:
            genome = population[index]
            key = genome.key()
            row = rows.get(index)
            if row is not None and score_at(row, fidelity) is not None:
                continue
            known = self._cache.get(key)
            if known is not None and score_at(known, fidelity) is not None:
                if row is None or row.get("cached"):
                    self._record(generation, index, genome, known, cached=True)
                continue
            if key in planned:
                continue
            refusal = self._over_budget(genome)
            if refusal is not None:
                params, macs = self.cost(genome)
                self._record(
                    generation,
                    index,
                    genome,
                    {"fitness": 0.0, "status": TOO_LARGE, "reason": refusal, "params": params, "macs": macs},
                    cached=False,
                )
                continue
            planned.add(key)
            checkpoint = self._checkpoints.pop(key, None)
            parent, weights = self._inheritance(index, genome, need_weights=checkpoint is None)
            tasks.append(
                Task(
                    generation,
                    index,
                    genome,
                    self.training_seed(genome),
                    prune_below=prune_below,
                    pause_after=pause_after,
                    resume=checkpoint,
                    parent=parent,
                    inherit=weights,
                    epochs=self.config.epochs,
                    batch_size=self.config.batch_size,
                    time_limit_s=self.candidate_time_limit(),
                )
            )
        return tasks

    def _keeps_weights(self) -> bool:
        """Whether candidates' trained weights are kept: to be inherited, or for the final to start from."""
        return self.config.inherit_weights or self.config.final_from in ("search", "auto")

    def _inheritance(self, index: int, genome: Genome, need_weights: bool) -> tuple[str | None, dict | None]:
        """(parent key, its trained weights) for the child at ``index``: of the parents it was bred from
        whose weights the run still keeps, the one that can give it the most of its parameters.
        (None, None) with inheritance off, in generation 0, or when no parent has weights to give."""
        parents = [p for p in self._parents.get(index, ()) if self.weights.path(p.key()).exists()]
        if not self.config.inherit_weights or not parents:
            return None, None
        chosen = choose_parent(genome, parents, self.dataset.input_shape, len(self.dataset.classes))
        if chosen is None:
            return None, None
        key = parents[chosen].key()
        weights = self.weights.load(key) if need_weights else None
        if need_weights and weights is None:
            return None, None
        return key, weights

    def training_seed(self, genome: Genome) -> int:
        """A candidate's training seed follows from the run seed and the genome alone, so a genome
        trains the same wherever and whenever it appears (and a paused rung replays exactly)."""
        return derive_seed(self.config.seed, "train", genome.key())

    def _over_budget(self, genome: Genome) -> str | None:
        params, macs = self.cost(genome)
        if macs > self.max_macs():
            return f"{macs:,} multiply-accumulates per image exceed the budget of {self.max_macs():,} (max_macs)"
        if params > self.config.max_params:
            return f"{params:,} parameters exceed the cap of {self.config.max_params:,}"
        return None

    def _copy_duplicates(self, generation: int, population: list[Genome], contenders: list[int], fidelity: int) -> None:
        """A genome that appeared twice in one generation was trained once; record the copies."""
        rows = {r["index"]: r for r in self.store.individuals(self.run_id, generation)}
        for index in contenders:
            row = rows.get(index)
            if row is None or (row.get("cached") and score_at(row, fidelity) is None):
                self._record(generation, index, population[index], self._cache[population[index].key()], cached=True)

    def _promote(self, generation: int, population: list[Genome], contenders: list[int], fidelity: int) -> list[int]:
        """The contenders that go on from the rung at ``fidelity`` epochs: the best
        ceil(n / reduction_factor) distinct genomes by their score at that rung (earlier index wins a
        tie). The others are recorded as pruned, with their score at the rung as fitness."""
        rows = {r["index"]: r for r in self.store.individuals(self.run_id, generation)}
        keys = [genome.key() for genome in population]
        going_on, keep, distinct = survivors(keys, rows, contenders, fidelity, self.config.reduction_factor)
        promoted = {keys[i] for i in going_on}
        for index in contenders:
            row = rows[index]
            if population[index].key() not in promoted and row["status"] == PARTIAL:
                row = {
                    **row,
                    "status": PRUNED,
                    "reason": f"successive halving: after {fidelity} epoch"
                    f"{'s' if fidelity != 1 else ''} not among the best {keep} of {distinct}",
                }
                self.store.add_individual(row)
                if not row.get("cached"):
                    self._cache[row["key"]] = row
        return going_on

    def prune_threshold(self, generation: int) -> float | None:
        """``prune_fraction`` × the median first-epoch accuracy of earlier generations' candidates.

        Only earlier generations count, never this one's running results: the threshold is then
        the same whatever order candidates finish in (local or Ray) and after a resume.
        """
        if not self.config.prune:
            return None
        scores = [
            score
            for r in self.store.individuals(self.run_id)
            if r["generation"] < generation and (score := r.get("first_epoch_fitness")) is not None
        ]
        if len(scores) < self.config.population:
            return 0.0  # too few earlier scores: measure the first epoch, prune nothing yet
        return self.config.prune_fraction * statistics.median(scores)

    def _on_result(self, task: Task, result: TrainResult) -> None:
        self._finished.add((task.generation, task.index))
        status, epochs = result.status, result.epochs_done
        if status == OK:
            epochs = task.pause_after or self.config.epochs
            if task.pause_after is not None:
                status = PARTIAL
        if result.checkpoint is not None:
            self._checkpoints[task.genome.key()] = result.checkpoint
        if self._keeps_weights() and status in (OK, PARTIAL):
            # Written before the record: a child bred from this candidate after a restart finds them.
            weights = result.state_dict if result.checkpoint is None else result.checkpoint.model
            if weights is not None:
                self.weights.save(task.genome.key(), weights)
        previous = next(
            (
                r
                for r in self.store.individuals(self.run_id, task.generation)
                if r["index"] == task.index and not r.get("cached")
            ),
            None,
        )
        inherited = result.inherited if result.inherited is not None else (previous or {}).get("inherited")
        start_epoch = task.resume.epoch if task.resume is not None else 0
        trained = (previous or {}).get("trained_epochs", 0) + max(0, result.epochs_done - start_epoch)
        improves = status == OK and (
            self._best is None or (result.fitness, -task.generation, -task.index) > _rank(self._best)
        )
        if improves and result.state_dict is not None:
            # The weights go to disk before the record names this candidate the best, so the
            # run never points at a model file that holds another candidate.
            path = self._save_model(
                task.genome,
                result.state_dict,
                {"stage": "search", "val_accuracy": result.fitness, "generation": task.generation, "index": task.index},
            )
            self.store.update_run(self.run_id, best_model_path=str(path))
        params, macs = self.cost(task.genome)
        self._record(
            task.generation,
            task.index,
            task.genome,
            {
                "fitness": result.fitness,
                "status": status,
                "reason": result.reason,
                "params": result.params or params,
                "macs": macs,
                "latency_ms": result.latency_ms,
                "seconds": round(result.seconds, 3),
                "epochs": epochs,
                "trained_epochs": trained,
                "history": result.history,
                "train_loss": result.train_loss,
                "first_epoch_fitness": result.first_epoch_fitness,
                "parent": task.parent,
                "inherited": round(inherited, 4) if inherited is not None else None,
                "node": result.node,
                "worker": result.worker,
            },
            cached=False,
        )
        if self._progress_writes.forget(task.worker_label):
            # A back end that trains several candidates at once (Ray) labels each one's progress
            # with its task's worker_label; a finished candidate's progress record goes away.
            self.store.clear_progress(self.run_id, task.worker_label)

    def _record(
        self, generation: int, index: int, genome: Genome, outcome: Mapping[str, Any], cached: bool
    ) -> CandidateRecord:
        record: CandidateRecord = {
            "run_id": self.run_id,
            "generation": generation,
            "index": index,
            "key": genome.key(),
            "genome": genome.to_dict(),
            "summary": genome.summary(),
            "fitness": outcome["fitness"],
            "status": outcome["status"],
            "reason": outcome.get("reason", ""),
            "params": outcome.get("params", 0),
            "macs": outcome.get("macs"),
            "latency_ms": outcome.get("latency_ms"),
            "seconds": 0.0 if cached else outcome.get("seconds", 0.0),
            "epochs": outcome.get("epochs", 0),
            "trained_epochs": 0 if cached else outcome.get("trained_epochs", 0),
            "history": outcome.get("history") or [],
            "train_loss": outcome.get("train_loss"),
            "first_epoch_fitness": outcome.get("first_epoch_fitness"),
            "parent": outcome.get("parent"),
            "inherited": outcome.get("inherited"),
            "node": outcome.get("node"),
            "worker": None if cached else outcome.get("worker"),
            "cached": cached,
            "recorded_at": time.time(),
        }
        self.store.add_individual(record)
        if self.tracker is not None:
            self.tracker.candidate(record)
        if not cached:
            self._cache[record["key"]] = record
        self._update_best(record)
        self.reporter.candidate_done(Task(generation, index, genome, 0), record)
        return record

    def _on_progress(self, task: Task, info: dict) -> None:
        self.reporter.candidate_progress(task, info)
        worker = info.get("worker", "main")
        if self._progress_writes.ready(worker, force=info.get("batch") == info.get("batches")):
            self.store.set_progress(
                self.run_id,
                {
                    "generation": task.generation,
                    "generations": self.config.generations,
                    "index": task.index,
                    "population": self.config.population,
                    "final": task.final,
                    "summary": task.genome.summary(),
                    **info,
                },
                worker=worker,
            )

    def _load_cache(self) -> None:
        for record in self.store.individuals(self.run_id):
            if not record.get("cached"):
                # Keys are computed again: a genome recorded by an earlier version may hash differently now.
                self._cache[Genome.from_dict(record["genome"]).key()] = record
            self._update_best(record)

    def _update_best(self, record: CandidateRecord) -> None:
        """The best is the fittest fully trained candidate (a pruned one's partial score does not count)."""
        if record["status"] == "ok" and (self._best is None or _rank(record) > _rank(self._best)):
            self._best = record
            self.store.update_run(
                self.run_id,
                best_fitness=record["fitness"],
                best_key=record["key"],
                best_summary=record["summary"],
                best_genome=record["genome"],
                best_generation=record["generation"],
                best_index=record["index"],
            )

    def _furthest_trained(self) -> CandidateRecord | None:
        """When no candidate trained all its epochs (a budget that ran out inside the top rung), the
        winner is the fittest of those that trained furthest, compared at equal fidelity; None when
        every candidate failed."""
        scored = [
            r
            for r in self.store.individuals(self.run_id)
            if r["status"] in CONTINUABLE and not r.get("cached") and r.get("epochs")
        ]
        if not scored:
            return None
        best = max(scored, key=lambda r: (r["epochs"], *_rank(r)))
        self._best = best
        self.store.update_run(
            self.run_id,
            best_fitness=best["fitness"],
            best_key=best["key"],
            best_summary=best["summary"],
            best_genome=best["genome"],
            best_generation=best["generation"],
            best_index=best["index"],
        )
        return best

    def _save_model(self, genome: Genome, state_dict: dict, metrics: dict) -> Path:
        return save_model(self.run_dir / "best.pt", genome, state_dict, self.dataset, metrics)

    def _record_generation(self, generation: int, seconds: float) -> dict:
        rows = self.store.individuals(self.run_id, generation)
        fitness = [r["fitness"] for r in rows]
        record = {
            "full_fidelity": sum(r["status"] == OK for r in rows),
            "trained_epochs": sum(r.get("trained_epochs", 0) for r in rows if not r.get("cached")),
            "run_id": self.run_id,
            "generation": generation,
            "best": max(fitness),
            "mean": statistics.fmean(fitness),
            "worst": min(fitness),
            "diversity": round(diversity([Genome.from_dict(r["genome"]) for r in rows], self.space), 4),
            "failed": sum(r["status"] not in (OK, PRUNED) for r in rows),
            "pruned": sum(r["status"] == "pruned" for r in rows),
            "trained": sum(not r["cached"] for r in rows),
            "seconds": round(seconds, 3),
            "recorded_at": time.time(),
        }
        self.store.add_generation(record)
        if self.tracker is not None:
            self.tracker.generation(record)
        self.store.update_run(
            self.run_id, generations_done=generation + 1, evaluated=len(self.store.individuals(self.run_id))
        )
        self.reporter.generation_done(record)
        return record

    # ------------------------------------------------------------------ final model
    def _final_training(self, evaluator: Evaluator) -> str:
        """Train the best genome again on train + validation and score it once on the test split."""
        best = self._best if self._best is not None and self._best["status"] == OK else self._furthest_trained()
        if best is None:
            self.store.update_run(self.run_id, reason="no candidate trained successfully")
            return "failed"
        self.store.update_run(self.run_id, evaluated=len(self.store.individuals(self.run_id)), stage="final")
        genome = Genome.from_dict(best["genome"])
        epochs, threads = self._final_plan(evaluator, genome)
        if self.stop():
            return "stopped"
        self.reporter.message(f"final training of the best genome for {epochs} epochs")
        # The final training trains far longer than a candidate: a candidate's time limit is not its own.
        final_epoch_s = ((self.store.get_run(self.run_id) or {}).get("plan") or {}).get("final_epoch_s") or 0.0
        start = self.weights.load(best["key"]) if self._final_continues(best, epochs) else None
        task = final_task(
            self.config,
            genome,
            epochs=epochs,
            threads=threads,
            parent=best["key"] if start is not None else None,
            inherit=start,
            time_limit_s=max(self.config.time_limit_s, 3 * epochs * final_epoch_s),
        )
        results: list[TrainResult] = []
        # Only a stop request ends the final training: the time budget is for the search.
        evaluator.evaluate([task], lambda _t, r: results.append(r), self._on_progress, self.stop)
        if self.stop():
            return "stopped"
        result = results[0]
        if result.status != "ok" or result.state_dict is None:
            self.store.update_run(self.run_id, reason=f"final training failed: {result.status} {result.reason}")
            return "failed"
        path = self._save_model(
            genome,
            result.state_dict,
            {
                "stage": "final",
                "val_accuracy": best["fitness"],
                "test_accuracy": result.fitness,
                "final_epochs": self.config.final_epochs,
            },
        )
        report = test_report(genome, result.state_dict, self.dataset, self.run_dir / "misclassified")
        self.store.update_run(
            self.run_id,
            test_accuracy=result.fitness,
            best_model_path=str(path),
            stage="done",
            final_seconds=round(result.seconds, 3),
            test_report=report,
            final_history=result.history,
            final_start="search" if task.parent else "scratch",
        )
        self.reporter.message(f"test accuracy of the final model: {result.fitness:.4f}")
        return "completed"
