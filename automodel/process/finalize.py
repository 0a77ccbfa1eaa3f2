"""Finish any candidate of a run, not only the best: train it on train + validation, score it once
on the test split, and keep its model beside the run's best (``runs/RUN/candidates/KEY.pt``).

This is what a person does after choosing a member of a multi-objective run's Pareto front. It
runs in its own process (``automodel finalize RUN --candidate KEY``, which the page starts too):
a stop request (SIGTERM, Ctrl-C) ends it between two batches; a second request for the same
candidate while one trains waits for that one instead of training again, and a finished one is
never trained again. The training is the run's final training (same epochs, settings and seed),
so finalizing the run's best candidate reproduces the run's own final model on the CPU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from automodel.config import Config
from automodel.data import load_dataset
from automodel.data.folders import AUTO_MAX_SIDE
from automodel.errors import FinalizeError, no_run_message  # noqa: F401  (defined with the other errors, re-exported)
from automodel.evaluators.worker_pool import WorkerPoolEvaluator
from automodel.evolution.final import final_task, save_model, test_report, train_settings
from automodel.evolution.genome import Genome
from automodel.process.jobs import pid_is_search, run_dir_for
from automodel.process.stop import StopSignal
from automodel.store import Store
from automodel.store.records import CandidateRecord, RunRecord
from automodel.training.trainer import DeviceData, TrainResult, resolve_device

WAIT_POLL_S = 0.5


def candidate_record(store: Store, run_id: str, key: str) -> CandidateRecord:
    """The fully trained record of candidate ``key`` in the run, or a FinalizeError saying why not."""
    rows = [r for r in store.individuals(run_id) if r["key"] == key or Genome.from_dict(r["genome"]).key() == key]
    trained = [r for r in rows if r["status"] == "ok" and not r.get("cached")] or [
        r for r in rows if r["status"] == "ok"
    ]
    if not trained:
        reason = f"it stopped as {rows[0]['status']}" if rows else "no candidate has that key"
        raise FinalizeError(
            f"run {run_id} has no fully trained candidate {key} ({reason}); "
            f"`automodel show {run_id} --json` lists the candidates of its Pareto front."
        )
    return trained[0]


def candidate_model_path(store: Store, run_id: str, key: str) -> Path:
    return run_dir_for(store, run_id) / "candidates" / f"{key}.pt"


def finalize_candidate(
    store: Store,
    run_id: str,
    key: str,
    *,
    data_dir: str | Path | None = None,
    on_progress=None,
    wait_timeout_s: float = 24 * 3600,
) -> dict:
    """Finalize candidate ``key``; returns its record under the run's ``finalized``, plus
    ``status``: ``done`` (already finalized), ``finalized`` (trained now), ``waited`` (another
    process trained it) or ``stopped``."""
    run = _run(store, run_id)
    record = candidate_record(store, run_id, key)
    key = record["key"]
    while True:
        with store.locked():
            run = _run(store, run_id)
            done = (run.get("finalized") or {}).get(key)
            if done and Path(done["path"]).is_file():
                return {**done, "status": "done"}
            claims = dict(run.get("finalizing") or {})
            holder = claims.get(key)
            if holder is None or not pid_is_search(holder["pid"]) or holder["pid"] == os.getpid():
                claims[key] = {"pid": os.getpid(), "started_at": time.time()}
                store.update_run(run_id, finalizing=claims)
                break
        deadline = time.monotonic() + wait_timeout_s
        while time.monotonic() < deadline and pid_is_search(holder["pid"]):
            time.sleep(WAIT_POLL_S)
        done = (_run(store, run_id).get("finalized") or {}).get(key)
        if done and Path(done["path"]).is_file():
            return {**done, "status": "waited"}
        # the other process stopped or died without finishing: train it here
    try:
        return _train_and_keep(store, run_id, run, record, data_dir, on_progress)
    finally:
        with store.locked():
            now = store.get_run(run_id)
            if now is not None:  # deleted meanwhile: nothing left to release
                claims = dict(now.get("finalizing") or {})
                claims.pop(key, None)
                store.update_run(run_id, finalizing=claims)
        store.clear_progress(run_id, f"finalize-{key}")


def _run(store: Store, run_id: str) -> RunRecord:
    run = store.get_run(run_id)
    if run is None:
        raise FinalizeError(no_run_message(run_id, store.path))
    return run


def _train_and_keep(store: Store, run_id: str, run: RunRecord, record: CandidateRecord, data_dir, on_progress) -> dict:
    config = Config.from_dict(run["config"])
    key = record["key"]
    stop = StopSignal().install()  # SIGTERM or Ctrl-C end it between two batches
    image_size, max_side = run.get("image_size") or (None, AUTO_MAX_SIDE)  # as the search decoded it
    data = load_dataset(
        config.dataset,
        Path(data_dir or run.get("data_dir") or "data"),
        val_fraction=config.val_fraction,
        seed=config.seed,
        work_dir=run_dir_for(store, run_id) / "dataset",
        image_size=image_size,
        max_side=max_side,
        cache_dir=run_dir_for(store, run_id),
    )
    settings = train_settings(config, data)
    # In a worker process, as in a search: a crash in native code fails the training, not this process.
    evaluator = WorkerPoolEvaluator(DeviceData(data, resolve_device(settings.device)), settings, 1)
    genome = Genome.from_dict(record["genome"])
    # A budget run chose its final training's threads; the same choice reproduces its final model.
    task = final_task(config, genome, epochs=config.final_epochs, threads=(run.get("plan") or {}).get("final_threads"))
    results: list[TrainResult] = []

    def progress(_task, info: dict) -> None:
        store.set_progress(
            run_id, {"final": True, "candidate": key, "summary": genome.summary(), **info}, worker=f"finalize-{key}"
        )
        if on_progress is not None:
            on_progress(info)

    try:
        evaluator.evaluate([task], lambda _t, r: results.append(r), progress, stop)
    finally:
        evaluator.close()
    if stop() or not results:
        return {"status": "stopped", "key": key}
    result = results[0]
    if result.status != "ok" or result.state_dict is None:
        raise FinalizeError(f"the final training of candidate {key} failed: {result.status} {result.reason}")
    path = candidate_model_path(store, run_id, key)
    save_model(
        path,
        genome,
        result.state_dict,
        data,
        metrics={
            "stage": "final",
            "candidate": key,
            "val_accuracy": record["fitness"],
            "test_accuracy": result.fitness,
            "final_epochs": config.final_epochs,
        },
    )
    report = test_report(genome, result.state_dict, data, path.parent / f"{key}-misclassified")
    entry = {
        "key": key,
        "path": str(path),
        "test_accuracy": result.fitness,
        "val_accuracy": record["fitness"],
        "test_report": report,
        "params": record.get("params"),
        "macs": record.get("macs"),
        "latency_ms": record.get("latency_ms"),
        "summary": record.get("summary"),
        "seconds": round(result.seconds, 3),
        "finalized_at": time.time(),
    }
    with store.locked():
        finalized = dict(_run(store, run_id).get("finalized") or {})
        finalized[key] = entry
        store.update_run(run_id, finalized=finalized)
    return {**entry, "status": "finalized"}
