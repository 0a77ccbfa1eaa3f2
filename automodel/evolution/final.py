"""The final training, one definition for the search's winner and for any candidate a person
finishes later (``automodel finalize``): the run's train settings, the task that trains a genome on
train + validation with the run's final seed, and what is kept of the result (the checkpoint and
the test report)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from automodel.config import Config, resolve_batch_size
from automodel.data import ImageData
from automodel.evaluators.base import Task
from automodel.evolution.genome import Genome
from automodel.training.export import save_checkpoint
from automodel.training.trainer import TrainSettings, resolve_augment, resolve_device

FINAL_GENERATION = -1  # the final training's progress is labelled with this generation


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one purpose and position, independent of everything else drawn."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def train_settings(config: Config, data: ImageData) -> TrainSettings:
    """How a run trains every candidate (and its final model) on ``data``."""
    c = config
    return TrainSettings(
        epochs=c.epochs,
        batch_size=resolve_batch_size(c.batch_size, len(data.train_x)),
        device=str(resolve_device(c.device)),
        time_limit_s=c.candidate_time_limit(),
        max_params=c.max_params,
        augment=resolve_augment(c.augment, data.name),
        label_smoothing=c.label_smoothing,
        clip_grad_norm=c.clip_grad_norm,
        compile=c.compile,
        measure_latency=c.measures_latency(),
        max_latency_ms=c.max_latency_ms,
    )


def final_task(
    config: Config,
    genome: Genome,
    *,
    epochs: int,
    threads: int | None = None,
    parent: str | None = None,
    inherit: dict | None = None,
    time_limit_s: float | None = None,
) -> Task:
    """The final training of ``genome``: train + validation for ``epochs``, seeded by the run's seed
    alone, so that the same genome always gets the same final model (from ``inherit``, its trained
    weights, when the final continues from the search)."""
    return Task(
        FINAL_GENERATION,
        0,
        genome,
        derive_seed(config.seed, "final"),
        final=True,
        epochs=epochs,
        threads=threads,
        batch_size=config.batch_size,
        parent=parent,
        inherit=inherit,
        time_limit_s=time_limit_s,
    )


def save_model(path: Path, genome: Genome, state_dict: dict, data: ImageData, metrics: dict) -> Path:
    """A trained network as a checkpoint that ``load_model`` reads (normalisation and classes inside)."""
    return save_checkpoint(
        path,
        genome,
        state_dict,
        input_shape=data.input_shape,
        classes=data.classes,
        mean=data.mean,
        std=data.std,
        metrics=metrics,
    )


def test_report(genome: Genome, state_dict: dict, data: ImageData, gallery_dir: Path) -> dict:
    """Per-class accuracy, confusion matrix and misclassified examples of a final model (on the CPU)."""
    from automodel.training.model import build_model
    from automodel.training.report import test_report as report_of

    model = build_model(genome, data.input_shape, data.classes, data.mean, data.std)
    model.load_state_dict(state_dict)
    return report_of(model, data.test_x, data.test_y, data.classes, gallery_dir)
