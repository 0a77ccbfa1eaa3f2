"""Lamarckian weight inheritance: a child starts from its parent's trained weights.

A child bred by crossover or mutation shares most of its layers with a parent. Every tensor of
the child's network whose name and shape match the parent's trained network (the same block at
the same place with the same widths, the same head) starts from the parent's values; the rest keep
their fresh initialisation, as in network-morphism NAS (Elsken et al. 2018; Cai et al. 2018). The
child can then be judged after fewer steps. A run keeps its candidates' trained weights in a
:class:`WeightStore` for as long as they can still be parents.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from automodel.evolution.genome import Genome
from automodel.training.model import build_model


def parameter_shapes(genome: Genome, input_shape: Sequence[int], num_classes: int) -> dict[str, tuple[int, ...]]:
    """Name → shape of each learned parameter of the genome's network (built on the meta device)."""
    with torch.device("meta"):
        model = build_model(genome, input_shape, [str(i) for i in range(num_classes)])
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def shared_share(child: Mapping[str, tuple[int, ...]], parent: Mapping[str, tuple[int, ...]]) -> float:
    """The share of the child's parameters (by count) that a parent of these shapes can give it."""
    total = sum(_numel(shape) for shape in child.values())
    shared = sum(_numel(shape) for name, shape in child.items() if parent.get(name) == shape)
    return shared / total if total else 0.0


def choose_parent(child: Genome, parents: Sequence[Genome], input_shape: Sequence[int], num_classes: int) -> int | None:
    """The index of the parent that can give the child the most of its parameters (the first on a
    tie); None when none can give it any."""
    shapes = parameter_shapes(child, input_shape, num_classes)
    shares = [shared_share(shapes, parameter_shapes(p, input_shape, num_classes)) for p in parents]
    best = max(range(len(parents)), key=lambda i: (shares[i], -i), default=None)
    return best if best is not None and shares[best] > 0 else None


def inherit_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> float:
    """Copy into ``model`` every tensor of ``state`` (parameters and batch-norm statistics) whose name
    and shape match; returns the share of the model's parameters (by count) that were copied."""
    own = model.state_dict()
    copied = {
        name: value
        for name, value in state.items()
        if name in own and own[name].shape == value.shape and own[name].dtype == value.dtype
    }
    with torch.no_grad():
        for name, value in copied.items():
            own[name].copy_(value)
    total = sum(p.numel() for p in model.parameters())
    shared = sum(p.numel() for name, p in model.named_parameters() if name in copied)
    return shared / total if total else 0.0


class WeightStore:
    """Trained weights by genome key, one file each in a run's folder (``weights/KEY.pt``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def save(self, key: str, state: Mapping[str, torch.Tensor]) -> None:
        """Write atomically: a reader never sees half a file, even if the run is killed while writing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.path(key).with_suffix(f".tmp{os.getpid()}")
        torch.save({name: value.detach().cpu() for name, value in state.items()}, temporary)
        os.replace(temporary, self.path(key))

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file: the child starts from fresh weights instead
            return None

    def keep_only(self, keys: Iterable[str]) -> None:
        """Delete the weights of every genome not in ``keys`` (those that can no longer be parents)."""
        keep = set(keys)
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.pt"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for side in shape:
        n *= side
    return n
