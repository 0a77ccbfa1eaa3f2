"""Splits and the in-memory dataset: :class:`ImageData`, a validation split carved from training
data (stratified, seeded by the search's seed), and a fixed test split for sources without one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

TEST_FRACTION = 0.2  # for sources without their own test split (digits, flat folders)
TEST_SPLIT_SEED = 0  # fixed, so the test set does not move with the search seed


@dataclass
class ImageData:
    """A whole dataset in memory: uint8 N×C×H×W images and int64 labels per split."""

    name: str
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    val_x: torch.Tensor = field(repr=False)
    val_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    skipped: int = 0
    ignored: int = 0
    skipped_names: list[str] = field(default_factory=list)  # a few of them, for the page and `show`
    ignored_names: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """The data a run trained on, JSON-ready (``show --json``'s ``data``)."""
        counts = torch.bincount(torch.cat([self.train_y, self.val_y, self.test_y]), minlength=self.num_classes)
        return {
            "name": self.name,
            "classes": {c: int(n) for c, n in zip(self.classes, counts.tolist())},
            "input_shape": list(self.input_shape),
            "train": len(self.train_y),
            "validation": len(self.val_y),
            "test": len(self.test_y),
            "skipped": self.skipped,
            "skipped_names": self.skipped_names,
            "ignored": self.ignored,
            "ignored_names": self.ignored_names,
        }

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, taken), taking ``fraction`` of every class, rounded.

    Each class keeps at least one index, so a class with a single example stays whole. When
    rounding would take nothing although ``fraction`` > 0, one index is taken from the largest
    class that can spare it, so a small dataset still gets a non-empty split. Deterministic
    for ``seed`` and ``labels``; uses a local generator, never global random state.
    """
    gen = torch.Generator().manual_seed(seed)
    groups, counts = [], []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        groups.append(idx[torch.randperm(len(idx), generator=gen)])
        counts.append(min(math.floor(len(idx) * fraction + 0.5), len(idx) - 1))
    if fraction > 0 and groups and sum(counts) == 0:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        counts[largest] = 1 if len(groups[largest]) > 1 else 0
    empty = torch.empty(0, dtype=torch.int64)
    kept = torch.cat([g[n:] for g, n in zip(groups, counts)] or [empty])
    taken = torch.cat([g[:n] for g, n in zip(groups, counts)] or [empty])
    return torch.sort(kept).values, torch.sort(taken).values


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], exact via a histogram.

    A 256-bin histogram avoids a float copy of the whole training set. Std is floored at 1e-3
    so normalising never divides by zero.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        var = float((counts * values**2).sum() / total) - mean**2
        means.append(mean)
        stds.append(max(math.sqrt(max(var, 0.0)), 1e-3))
    return tuple(means), tuple(stds)


def assemble(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: list[str],
    val_fraction: float,
    seed: int,
    skipped: int = 0,
    ignored: int = 0,
) -> ImageData:
    """Carve the validation split from training data and package everything."""
    keep, val = stratified_split(train_y, val_fraction, seed)
    tr_x = train_x[keep].contiguous()
    mean, std = channel_stats(tr_x)
    return ImageData(
        name=name,
        train_x=tr_x,
        train_y=train_y[keep].contiguous(),
        val_x=train_x[val].contiguous(),
        val_y=train_y[val].contiguous(),
        test_x=test_x.contiguous(),
        test_y=test_y.contiguous(),
        classes=classes,
        mean=mean,
        std=std,
        skipped=skipped,
        ignored=ignored,
    )


def assemble_with_test_split(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: list[str],
    val_fraction: float,
    seed: int,
    skipped: int = 0,
    ignored: int = 0,
) -> ImageData:
    """For sources without a test split: a fixed-seed stratified test split, then validation."""
    train_idx, test_idx = stratified_split(y, TEST_FRACTION, TEST_SPLIT_SEED)
    return assemble(
        name, x[train_idx], y[train_idx], x[test_idx], y[test_idx], classes, val_fraction, seed, skipped, ignored
    )


def split_order(
    train_labels: torch.Tensor, test_labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, int, int]:
    """The splits :func:`assemble` (with a test source) or :func:`assemble_with_test_split` (with an
    empty one) would make, as one permutation: positions into the training-source images followed
    by the test-source ones, ordered training, validation, test; and the first two splits' sizes.
    Images can then be decoded straight into their split."""
    n = len(train_labels)
    if len(test_labels):
        train_idx, test_idx = torch.arange(n), n + torch.arange(len(test_labels))
    else:
        train_idx, test_idx = stratified_split(train_labels, TEST_FRACTION, TEST_SPLIT_SEED)
    keep, val = stratified_split(train_labels[train_idx], val_fraction, seed)
    return torch.cat([train_idx[keep], train_idx[val], test_idx]), len(keep), len(val)


def from_split_order(
    name: str, x: torch.Tensor, y: torch.Tensor, n_train: int, n_val: int, classes: list[str], **counts
) -> ImageData:
    """An :class:`ImageData` whose splits are consecutive slices of ``x`` and ``y`` (no copies)."""
    a, b = n_train, n_train + n_val
    mean, std = channel_stats(x[:a])
    return ImageData(
        name=name,
        train_x=x[:a],
        train_y=y[:a],
        val_x=x[a:b],
        val_y=y[a:b],
        test_x=x[b:],
        test_y=y[b:],
        classes=classes,
        mean=mean,
        std=std,
        **counts,
    )
