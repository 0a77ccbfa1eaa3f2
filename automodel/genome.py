"""One architecture as plain data: sampling, canonical hashing, summaries.

A :class:`Genome` is immutable and JSON-able. It says *what* to build; :mod:`automodel.model`
decides *how* it fits a given image size (pooling that would go below 1×1 is skipped, kernels
are clipped to the feature map), so every genome builds on every dataset.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from .config import SearchSpace


@dataclass(frozen=True)
class ConvBlock:
    """Convolution (same padding) → optional batch norm → activation → optional 2×2 pooling."""

    filters: int
    kernel: int
    activation: str
    pooling: str
    batch_norm: bool


@dataclass(frozen=True)
class DenseLayer:
    """Fully connected layer → activation → dropout."""

    units: int
    activation: str


@dataclass(frozen=True)
class Genome:
    conv: tuple[ConvBlock, ...]
    dense: tuple[DenseLayer, ...]
    dropout: float
    optimizer: str
    learning_rate: float
    weight_decay: float

    def __post_init__(self):
        # Numbers are stored as floats so that a genome and its JSON round trip (where 0 may
        # come back as 0.0) have the same canonical key.
        for name in ("dropout", "learning_rate", "weight_decay"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "conv": [asdict(b) for b in self.conv],
            "dense": [asdict(d) for d in self.dense],
            "dropout": self.dropout,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Genome":
        return cls(
            conv=tuple(ConvBlock(**b) for b in data["conv"]),
            dense=tuple(DenseLayer(**d) for d in data["dense"]),
            dropout=data["dropout"],
            optimizer=str(data["optimizer"]),
            learning_rate=data["learning_rate"],
            weight_decay=data["weight_decay"],
        )

    def key(self) -> str:
        """Canonical hash: equal genomes (gene by gene) have equal keys."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def summary(self) -> str:
        """A one-line description, e.g. ``C32k3relu/max·bn → D128 | drop 0.2 | adam 1e-03``."""
        convs = " ".join(
            f"C{b.filters}k{b.kernel}{b.activation}{'/' + b.pooling if b.pooling != 'none' else ''}"
            f"{'·bn' if b.batch_norm else ''}" for b in self.conv)
        dense = " ".join(f"D{d.units}{d.activation}" for d in self.dense)
        body = f"{convs} → {dense}" if dense else convs
        wd = f" wd {self.weight_decay:g}" if self.weight_decay else ""
        return f"{body} | drop {self.dropout:g} | {self.optimizer} {self.learning_rate:.0e}{wd}"


def sample_conv_block(space: SearchSpace, rng: random.Random) -> ConvBlock:
    return ConvBlock(
        filters=rng.choice(space.filters),
        kernel=rng.choice(space.kernel_sizes),
        activation=rng.choice(space.activations),
        pooling=rng.choice(space.pooling),
        batch_norm=rng.choice(space.batch_norm),
    )


def sample_dense_layer(space: SearchSpace, rng: random.Random) -> DenseLayer:
    return DenseLayer(units=rng.choice(space.dense_units), activation=rng.choice(space.activations))


SCALAR_GENES = ("dropout", "optimizer", "learning_rate", "weight_decay")


def sample_scalar(name: str, space: SearchSpace, rng: random.Random) -> Any:
    choices = {"dropout": space.dropout, "optimizer": space.optimizers,
               "learning_rate": space.learning_rates, "weight_decay": space.weight_decays}[name]
    return rng.choice(choices)


def sample_genome(space: SearchSpace, rng: random.Random) -> Genome:
    """A genome drawn uniformly gene by gene from the search space."""
    n_conv = rng.randint(*space.conv_blocks)
    n_dense = rng.randint(*space.dense_layers)
    return Genome(
        conv=tuple(sample_conv_block(space, rng) for _ in range(n_conv)),
        dense=tuple(sample_dense_layer(space, rng) for _ in range(n_dense)),
        **{name: sample_scalar(name, space, rng) for name in SCALAR_GENES},
    )


def with_scalar(genome: Genome, name: str, value: Any) -> Genome:
    return replace(genome, **{name: value})


def gene_slots(genome: Genome, space: SearchSpace) -> list[Any]:
    """The genome as a fixed-length list aligned by position: conv slots, dense slots, scalars.

    Absent layers are ``None``. Two genomes of any lengths line up slot by slot, which is what
    crossover and the diversity measure need.
    """
    max_conv, max_dense = space.conv_blocks[1], space.dense_layers[1]
    conv = list(genome.conv[:max_conv]) + [None] * (max_conv - len(genome.conv[:max_conv]))
    dense = list(genome.dense[:max_dense]) + [None] * (max_dense - len(genome.dense[:max_dense]))
    return conv + dense + [getattr(genome, name) for name in SCALAR_GENES]


def from_slots(slots: list[Any], space: SearchSpace) -> Genome:
    """Inverse of :func:`gene_slots`; absent (``None``) layer slots are dropped."""
    max_conv, max_dense = space.conv_blocks[1], space.dense_layers[1]
    conv = tuple(s for s in slots[:max_conv] if s is not None)
    dense = tuple(s for s in slots[max_conv:max_conv + max_dense] if s is not None)
    scalars = dict(zip(SCALAR_GENES, slots[max_conv + max_dense:]))
    return Genome(conv=conv, dense=dense, **scalars)


def diversity(genomes: list[Genome], space: SearchSpace) -> float:
    """Mean pairwise fraction of differing gene slots (0: all identical, 1: nothing shared)."""
    if len(genomes) < 2:
        return 0.0
    rows = [gene_slots(g, space) for g in genomes]
    total, pairs = 0.0, 0
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            total += sum(a != b for a, b in zip(rows[i], rows[j])) / len(rows[i])
            pairs += 1
    return total / pairs
