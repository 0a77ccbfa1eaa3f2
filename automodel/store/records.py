"""What the store holds, as types: the statuses of runs and candidates, and the fields of a run,
generation and candidate record. Records stay plain JSON-able dicts on disk (a status is written as
its string); these types say what each one carries."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class RunStatus(StrEnum):
    """A run's status (``show --json``'s ``status``)."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE_RUN_STATUSES = (RunStatus.RUNNING, RunStatus.STOPPING)


class CandidateStatus(StrEnum):
    """How a candidate's training ended."""

    OK = "ok"  # trained all its epochs
    PARTIAL = "partial"  # trained to a lower rung; waits for the rest of its rung to be ranked
    PRUNED = "pruned"  # stopped early on purpose (successive halving, pruning); its partial score kept
    STALLED = "stalled"  # its loss did not fall below guessing
    OOM = "oom"  # out of memory
    NAN = "nan"  # the loss became NaN or infinite
    TIMEOUT = "timeout"  # over its time limit
    TOO_LARGE = "too_large"  # over the parameter limit, refused before training
    TOO_SLOW = "too_slow"  # over the latency limit, refused before training
    STOPPED = "stopped"  # the run was stopped while it trained
    ERROR = "error"  # anything else


SCORED_STATUSES = (CandidateStatus.OK, CandidateStatus.PARTIAL, CandidateStatus.PRUNED)  # a fitness that ranks


class CandidateRecord(TypedDict, total=False):
    """One trained (or copied) candidate: ``(run_id, generation, index)`` is its identity."""

    run_id: str
    generation: int
    index: int
    key: str  # the genome's canonical hash
    genome: dict[str, Any]
    summary: str
    fitness: float  # validation accuracy (0 for a failure)
    status: str  # a CandidateStatus
    reason: str
    params: int
    macs: int | None
    latency_ms: float | None
    seconds: float
    epochs: int  # the rung it reached
    trained_epochs: int  # epochs trained in this record (0 for a copy)
    history: list[dict[str, Any]]  # per epoch: epoch, train_loss, val_accuracy, seconds
    train_loss: float | None
    first_epoch_fitness: float | None
    parent: str | None  # the key of the parent whose weights it started from
    inherited: float | None  # the share of its weights inherited
    node: str | None  # the Ray node it trained on ("address/node id"); None on the local back end
    worker: str | None  # the process that trained it ("pid N" on this machine or on its node); None for a copy
    cached: bool  # a copy of an earlier record of the same genome
    recorded_at: float


class GenerationRecord(TypedDict, total=False):
    """One finished generation's summary."""

    run_id: str
    generation: int
    best: float
    mean: float
    worst: float
    diversity: float
    failed: int
    pruned: int
    trained: int
    full_fidelity: int
    trained_epochs: int
    seconds: float
    recorded_at: float


class RunRecord(TypedDict, total=False):
    """A run: its settings and where it stands. The search adds fields as it goes (``plan``,
    ``best_*``, ``test_accuracy``, ``tracking`` …); README's *Records* lists them."""

    run_id: str
    status: str  # a RunStatus
    config: dict[str, Any]
    created_at: float
    started_at: float
    ended_at: float
    pid: int | None
    host: str
    reason: str
    stage: str  # data, search, final, done
    generations_done: int
    total_generations: int
    evaluated: int
    best_fitness: float | None
    best_key: str | None
    best_genome: dict[str, Any] | None
    best_summary: str | None
    best_model_path: str | None
    test_accuracy: float | None
    plan: dict[str, Any] | None
    tracking: dict[str, Any] | None
    # Where the search process runs and how it was started or stopped.
    claimed_at: float
    resumed_at: float
    heartbeat_at: float
    stop_requested: bool
    data_dir: str
    device: str
    workers: int
    threads_per_worker: int
    elapsed_s: float
    # The data, as the search resolved and loaded it.
    image_size: list[Any]  # [longer side, or None for the images' own; its cap] (config.resolve_image_size)
    input_shape: list[int]
    classes: list[str]
    train_size: int
    val_size: int
    test_size: int
    skipped_images: int
    ignored_files: int
    data: dict[str, Any]  # classes with counts, splits, skipped and ignored names (``ImageData.describe``)
    loading: dict[str, int] | None  # images decoded so far: done, total
    warm_genomes: list[dict[str, Any]]
    # The winner and its final training.
    best_generation: int
    best_index: int
    test_report: dict[str, Any]
    final_history: list[dict[str, Any]]
    final_seconds: float
    final_start: str  # scratch or search: where the final training's weights started
    finalizing: dict[str, dict[str, Any]]  # candidate key -> the process finalizing it
    finalized: dict[str, dict[str, Any]]  # candidate key -> its final model
