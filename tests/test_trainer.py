"""The trainer: a candidate's failures become results, stops are obeyed between batches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from automodel.data import load_dataset
from automodel.genome import ConvBlock, DenseLayer, Genome
from automodel.model import CandidateNet
from automodel.trainer import (DeviceData, TrainSettings, augment_batch, resolve_augment,
                               train_candidate, warmup_linear_decay)

SMALL = Genome(conv=(ConvBlock(16, 3, "relu", "max", True),), dense=(DenseLayer(32, "relu"),), dropout=0.1,
               optimizer="adam", learning_rate=3e-3, weight_decay=0.0)


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


def test_nan_loss_is_a_result_not_an_exception(digits):
    wild = dataclasses.replace(SMALL, conv=(ConvBlock(8, 3, "relu", "none", False),), dense=(),
                               optimizer="sgd", learning_rate=1000.0)
    result = train_candidate(wild, digits, TrainSettings(epochs=1), seed=0, on_progress=lambda info: None)
    assert result.status == "nan" and result.fitness == 0.0
    assert "NaN" in result.reason


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
