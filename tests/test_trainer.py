"""The trainer: a candidate's failures become results, stops are obeyed between batches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from automodel.data import load_dataset
from automodel.evolution.genome import ConvBlock, DenseLayer, Genome
from automodel.training.model import CandidateNet
from automodel.training.trainer import (
    DeviceData,
    TrainSettings,
    augment_batch,
    chance_loss,
    resolve_augment,
    scaled_learning_rate,
    train_candidate,
    warmup_linear_decay,
)

SMALL = Genome(
    conv=(ConvBlock(16, 3, "relu", "max", True),),
    dense=(DenseLayer(32, "relu"),),
    dropout=0.1,
    optimizer="adam",
    learning_rate=3e-3,
    weight_decay=0.0,
)


@pytest.fixture(scope="module")
def digits() -> DeviceData:
    return DeviceData(load_dataset("digits"), torch.device("cpu"))


def test_small_genome_learns_digits(digits):
    result = train_candidate(SMALL, digits, TrainSettings(epochs=3, augment="crop"), seed=1, keep_weights=True)
    assert result.status == "ok"
    assert result.fitness > 0.85
    assert result.epochs_done == 3 and result.params > 0
    assert result.state_dict is not None and all(t.device.type == "cpu" for t in result.state_dict.values())


def test_same_seed_same_fitness_on_cpu(digits):
    first = train_candidate(SMALL, digits, TrainSettings(epochs=1), seed=7)
    second = train_candidate(SMALL, digits, TrainSettings(epochs=1), seed=7)
    assert first.fitness == second.fitness and first.train_loss == second.train_loss


def test_nan_loss_is_a_result_not_an_exception(digits, monkeypatch):
    forward = CandidateNet.forward
    monkeypatch.setattr(CandidateNet, "forward", lambda self, x: forward(self, x) * float("nan"))
    result = train_candidate(SMALL, digits, TrainSettings(epochs=1), seed=0, on_progress=lambda info: None)
    assert result.status == "nan" and result.fitness == 0.0
    assert "NaN" in result.reason


def test_a_huge_learning_rate_is_clipped_and_reported_as_not_learning(digits):
    """Gradient clipping keeps SGD at a learning rate of 1,000 finite; the candidate does not learn,
    and is stopped after its first epoch with that reason instead of training on."""
    wild = dataclasses.replace(
        SMALL, conv=(ConvBlock(8, 3, "relu", "none", False),), dense=(), optimizer="sgd", learning_rate=1000.0
    )
    result = train_candidate(wild, digits, TrainSettings(epochs=3, stall_after_steps=30), seed=0)
    assert result.status == "stalled" and result.epochs_done < 3
    assert "not learning" in result.reason and result.fitness < 0.3


def test_pause_and_resume_equal_an_unpaused_training(digits):
    settings = TrainSettings(epochs=3, augment="crop")
    whole = train_candidate(SMALL, digits, settings, seed=3, keep_weights=True)
    paused = train_candidate(SMALL, digits, settings, seed=3, pause_after=1)
    assert paused.status == "ok" and paused.epochs_done == 1 and paused.checkpoint is not None
    assert paused.fitness == whole.history[0]["val_accuracy"]
    assert paused.state_dict is None  # weights travel in the checkpoint until the training ends
    resumed = train_candidate(SMALL, digits, settings, seed=3, resume=paused.checkpoint, keep_weights=True)
    assert resumed.epochs_done == 3 and resumed.checkpoint is None
    assert resumed.fitness == whole.fitness and resumed.history == [
        {**h, "seconds": r["seconds"]} for h, r in zip(whole.history, resumed.history)
    ]
    assert all(torch.equal(resumed.state_dict[k], whole.state_dict[k]) for k in whole.state_dict)
    # Without its checkpoint, a paused training is replayed from the start: the same result.
    again = train_candidate(SMALL, digits, settings, seed=3, pause_after=1)
    assert again.fitness == paused.fitness


def test_every_epoch_records_its_validation_accuracy(digits):
    result = train_candidate(SMALL, digits, TrainSettings(epochs=2), seed=0)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[-1]["val_accuracy"] == result.fitness
    assert all(h["train_loss"] > 0 for h in result.history)
    final = train_candidate(SMALL, digits, TrainSettings(epochs=2), seed=0, final=True)
    assert all(h["val_accuracy"] is None for h in final.history)  # the test split is looked at once


def test_learning_rate_scales_with_the_batch_size():
    sgd = dataclasses.replace(SMALL, optimizer="sgd", learning_rate=0.1)
    assert scaled_learning_rate(sgd, 64) == pytest.approx(0.1)
    assert scaled_learning_rate(sgd, 256) == pytest.approx(0.4)
    assert scaled_learning_rate(SMALL, 256) == pytest.approx(3e-3 * 2)  # adam: square root


def test_chance_loss_is_the_entropy_of_the_labels():
    assert chance_loss(torch.tensor([0, 1, 2, 3]), 4) == pytest.approx(math.log(4))
    assert chance_loss(torch.tensor([0, 0, 0, 0]), 4) == pytest.approx(0.0)


def test_time_limit(digits):
    result = train_candidate(SMALL, digits, TrainSettings(epochs=50, time_limit_s=0.2), seed=0)
    assert result.status == "timeout" and result.fitness == 0.0
    assert "time limit" in result.reason and result.seconds < 5


def test_parameter_cap_refuses_before_allocating(digits):
    huge = dataclasses.replace(SMALL, dense=(DenseLayer(16384, "relu"), DenseLayer(16384, "relu")))
    result = train_candidate(huge, digits, TrainSettings(epochs=1, max_params=1_000_000), seed=0)
    assert result.status == "too_large" and result.params > 1_000_000
    assert "exceed" in result.reason


def test_out_of_memory_is_recorded(digits, monkeypatch):
    def explode(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    monkeypatch.setattr(CandidateNet, "forward", explode)
    result = train_candidate(SMALL, digits, TrainSettings(epochs=1), seed=0)
    assert result.status == "oom" and "out of GPU memory" in result.reason


def test_stop_is_obeyed_between_batches(digits):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    result = train_candidate(SMALL, digits, TrainSettings(epochs=5, batch_size=8), seed=0, should_stop=should_stop)
    assert result.status == "stopped"
    assert len(calls) == 4  # three batches ran, the fourth check stopped it


def test_progress_reports_batches_and_loss(digits):
    reports = []
    train_candidate(SMALL, digits, TrainSettings(epochs=2, progress_every_s=0.0), seed=0, on_progress=reports.append)
    assert reports[-1]["epoch"] == 2 and reports[-1]["batch"] == reports[-1]["batches"]
    assert all(r["loss"] >= 0 and r["eta_s"] >= 0 for r in reports)


def test_final_training_scores_on_test_split(digits):
    result = train_candidate(SMALL, digits, TrainSettings(epochs=1), seed=0, final=True)
    x, y, ex, ey = digits.splits(final=True)
    assert len(x) == len(digits.train_x) + len(digits.val_x)
    assert ex is digits.test_x
    assert result.status == "ok"


def test_augmentation_keeps_shape_and_pixels():
    x = torch.rand(16, 3, 12, 10)
    generator = torch.Generator().manual_seed(0)
    for mode in ("none", "crop", "flip_crop"):
        out = augment_batch(x, mode, generator)
        assert out.shape == x.shape
    flipped = augment_batch(x, "flip_crop", torch.Generator().manual_seed(1))
    # a translation by reflect padding only moves pixels: values stay inside the input's range
    assert flipped.min() >= x.min() and flipped.max() <= x.max()
    assert not torch.equal(flipped, x)


def test_auto_augment_never_flips_digits():
    assert resolve_augment("auto", "digits") == "crop"
    assert resolve_augment("auto", "mnist") == "crop"
    assert resolve_augment("auto", "cifar10") == "flip_crop"
    assert resolve_augment("none", "cifar10") == "none"


def test_schedule_warms_up_then_decays_to_zero():
    factor = warmup_linear_decay(100, 0.1)
    values = [factor(s) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert values[-1] < 0.02


def test_pruned_candidate_stops_after_its_first_epoch(digits):
    result = train_candidate(SMALL, digits, TrainSettings(epochs=4), seed=1, prune_below=1.01)
    assert result.status == "pruned" and result.epochs_done == 1
    assert result.fitness == result.first_epoch_fitness and 0 < result.fitness <= 1
    assert "below" in result.reason
    kept = train_candidate(SMALL, digits, TrainSettings(epochs=2), seed=1, prune_below=0.0)
    assert kept.status == "ok" and kept.first_epoch_fitness is not None
