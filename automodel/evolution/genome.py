"""One architecture as plain data: sampling, canonical hashing, summaries.

A :class:`Genome` is immutable and JSON-able. It says *what* to build; :mod:`automodel.training.model`
decides *how* it fits a given image size (downsampling that would go below 1×1 is skipped,
kernels are clipped to the feature map), so every genome builds on every dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from automodel.config import SearchSpace


@dataclass(frozen=True)
class ConvBlock:
    """One block of the network's body.

    ``kind``: ``plain`` (convolution → batch norm → activation), ``residual`` (two such
    convolutions with a skip connection, projected by a 1×1 convolution where the shape changes)
    or ``separable`` (a depthwise k×k convolution, then a pointwise 1×1 one). ``downsample``
    halves the feature map: by 2×2 ``max`` or ``avg`` pooling after the block, by a ``stride`` of 2
    in its first convolution, or not at all (``none``).
    """

    filters: int
    kernel: int
    activation: str
    downsample: str
    batch_norm: bool
    kind: str = "plain"


@dataclass(frozen=True)
class DenseLayer:
    """Dropout → fully connected layer → batch norm → activation. Batch norm lets a network with a
    hidden dense layer learn as fast as one without (bench/RESULTS.md §6); layers recorded by
    earlier versions had none and keep none."""

    units: int
    activation: str
    batch_norm: bool = True


@dataclass(frozen=True)
class Genome:
    """An architecture and its training hyper-parameters. ``head``, between the body and the dense
    layers: ``flatten`` (the feature map, averaged down to at most 4×4, flattened), ``gap`` (global
    average pooling) or ``avgmax`` (global average and global max pooling, concatenated)."""

    conv: tuple[ConvBlock, ...]
    dense: tuple[DenseLayer, ...]
    dropout: float
    optimizer: str
    learning_rate: float
    weight_decay: float
    head: str = "flatten"

    def __post_init__(self):
        # Numbers are stored as floats so that a genome and its JSON round trip (where 0 may
        # come back as 0.0) have the same canonical key.
        for name in ("dropout", "learning_rate", "weight_decay"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "conv": [asdict(b) for b in self.conv],
            "dense": [asdict(d) for d in self.dense],
            "head": self.head,
            "dropout": self.dropout,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genome:
        """Also reads genomes recorded by earlier versions (a block's ``pooling``, no ``kind`` or
        ``head``): they mean the same network as before."""
        return cls(
            conv=tuple(_conv_block(b) for b in data["conv"]),
            dense=tuple(DenseLayer(**{"batch_norm": False, **d}) for d in data["dense"]),
            head=str(data.get("head", "flatten")),
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
        """A one-line description, e.g. ``R32k3relu/max·bn S64k5gelu/s2·bn → gap D128relu | drop 0.2 | sgd 5.0e-02``.

        Blocks: ``C`` plain, ``R`` residual, ``S`` separable; ``/max``, ``/avg``, ``/s2`` their downsampling.
        """
        convs = " ".join(
            f"{_KIND_LETTER.get(b.kind, 'C')}{b.filters}k{b.kernel}{b.activation}{_DOWN_SUFFIX.get(b.downsample, '')}"
            f"{'·bn' if b.batch_norm else ''}"
            for b in self.conv
        )
        dense = " ".join(f"D{d.units}{d.activation}{'·bn' if d.batch_norm else ''}" for d in self.dense)
        body = f"{convs} → {self.head}" + (f" {dense}" if dense else "")
        wd = f" wd {self.weight_decay:g}" if self.weight_decay else ""
        return f"{body} | drop {self.dropout:g} | {self.optimizer} {self.learning_rate:.1e}{wd}"


_KIND_LETTER = {"plain": "C", "residual": "R", "separable": "S"}
_DOWN_SUFFIX = {"max": "/max", "avg": "/avg", "stride": "/s2", "none": ""}


def _conv_block(data: dict[str, Any]) -> ConvBlock:
    data = dict(data)
    if "pooling" in data:
        data["downsample"] = data.pop("pooling")
    return ConvBlock(**data)


def sample_downsample(space: SearchSpace, rng: random.Random) -> str:
    """``none`` (the block keeps its size) half of the time when the space allows it, else one of the
    ways to halve it. Uniform over four choices, three blocks in four would halve the map, and a
    network of five or six blocks would be down to one pixel after its first few: such networks
    rarely learn in a few epochs (bench/bench_priors.py)."""
    halving = [d for d in space.downsampling if d != "none"]
    if "none" in space.downsampling and (not halving or rng.random() < 0.5):
        return "none"
    return rng.choice(halving)


def sample_conv_block(space: SearchSpace, rng: random.Random) -> ConvBlock:
    return ConvBlock(
        filters=rng.choice(space.filters),
        kernel=rng.choice(space.kernel_sizes),
        activation=rng.choice(space.activations),
        downsample=sample_downsample(space, rng),
        batch_norm=rng.choice(space.batch_norm),
        kind=rng.choice(space.block_kinds),
    )


def sample_dense_layer(space: SearchSpace, rng: random.Random) -> DenseLayer:
    return DenseLayer(units=rng.choice(space.dense_units), activation=rng.choice(space.activations))


# Genes outside the layers. The optimizer and its learning rate are one linked gene: a learning
# rate means something only for its optimizer, so crossover keeps them together and mutation
# redraws the rate whenever the optimizer changes.
SCALAR_GENES = ("head", "dropout", "training", "weight_decay")


def sample_learning_rate(optimizer: str, space: SearchSpace, rng: random.Random) -> float:
    """Log-uniform in the optimizer's range, to two significant digits."""
    low, high = space.learning_rate_range(optimizer)
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return min(high, max(low, float(f"{value:.2g}")))


def perturb_learning_rate(optimizer: str, rate: float, space: SearchSpace, rng: random.Random) -> float:
    """A step of a factor up to 2 either way on the log scale, kept inside the optimizer's range."""
    low, high = space.learning_rate_range(optimizer)
    value = rate * math.exp(rng.uniform(-math.log(2), math.log(2)))
    return min(high, max(low, float(f"{value:.2g}")))


def sample_scalar(name: str, space: SearchSpace, rng: random.Random) -> Any:
    if name == "training":
        optimizer = rng.choice(space.optimizers)
        return optimizer, sample_learning_rate(optimizer, space, rng)
    options: dict[str, list[Any]] = {"head": space.heads, "dropout": space.dropout, "weight_decay": space.weight_decays}
    choices = options[name]
    return rng.choice(choices)


def scalar_value(genome: Genome, name: str) -> Any:
    if name == "training":
        return genome.optimizer, genome.learning_rate
    return getattr(genome, name)


def with_scalars(conv, dense, scalars: dict[str, Any]) -> Genome:
    optimizer, learning_rate = scalars["training"]
    return Genome(
        conv=tuple(conv),
        dense=tuple(dense),
        head=scalars["head"],
        dropout=scalars["dropout"],
        optimizer=optimizer,
        learning_rate=learning_rate,
        weight_decay=scalars["weight_decay"],
    )


def sample_genome(space: SearchSpace, rng: random.Random) -> Genome:
    """A genome drawn gene by gene from the search space (learning rates on a log scale).

    The blocks' widths are drawn independently and then put in ascending order, as in most
    hand-designed CNNs: the full-resolution layers are the narrow, cheap ones. (Crossover and
    mutation may later break the order.)
    """
    n_conv = rng.randint(*space.conv_blocks)
    n_dense = rng.randint(*space.dense_layers)
    conv = [sample_conv_block(space, rng) for _ in range(n_conv)]
    widths = sorted(block.filters for block in conv)
    conv = [ConvBlock(**{**asdict(block), "filters": width}) for block, width in zip(conv, widths)]
    dense = [sample_dense_layer(space, rng) for _ in range(n_dense)]
    return with_scalars(conv, dense, {name: sample_scalar(name, space, rng) for name in SCALAR_GENES})


def reference_genome(space: SearchSpace) -> Genome:
    """The plain CNN a person writes first, as near as the space allows: three plain 3×3 blocks widening
    32 → 64 → 128 with batch norm, ReLU and 2×2 max pooling, no hidden dense layer, AdamW at 1e-3.
    What a budget too short to search trains (see automodel/budget.py)."""

    def nearest(value, choices):
        if value in choices:
            return value
        numbers = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        return min(numbers, key=lambda c: abs(math.log((c + 1e-9) / (value + 1e-9)))) if numbers else choices[0]

    blocks = min(max(3, space.conv_blocks[0]), space.conv_blocks[1])
    widths = [nearest(min(32 * 2**i, 128), space.filters) for i in range(blocks)]
    halving = [d for d in space.downsampling if d != "none"]
    conv = tuple(
        ConvBlock(
            filters=w,
            kernel=nearest(3, space.kernel_sizes),
            activation=nearest("relu", space.activations),
            downsample=nearest("max", halving or space.downsampling),
            batch_norm=True if True in space.batch_norm else space.batch_norm[0],
            kind=nearest("plain", space.block_kinds),
        )
        for w in widths
    )
    dense = tuple(
        DenseLayer(units=nearest(128, space.dense_units), activation=nearest("relu", space.activations))
        for _ in range(space.dense_layers[0])
    )
    optimizer = nearest("adamw", space.optimizers)
    low, high = space.learning_rate_range(optimizer)
    return Genome(
        conv=conv,
        dense=dense,
        head=nearest("gap", space.heads),
        dropout=nearest(0.0, space.dropout),
        optimizer=optimizer,
        learning_rate=min(high, max(low, 1e-3)),
        weight_decay=nearest(5e-4, space.weight_decays),
    )


def gene_slots(genome: Genome, space: SearchSpace) -> list[Any]:
    """The genome as a fixed-length list aligned by position: conv slots, dense slots, scalars.

    Absent layers are ``None``. Two genomes of any lengths line up slot by slot, which is what
    crossover and the diversity measure need.
    """
    max_conv, max_dense = space.conv_blocks[1], space.dense_layers[1]
    conv = list(genome.conv[:max_conv]) + [None] * (max_conv - len(genome.conv[:max_conv]))
    dense = list(genome.dense[:max_dense]) + [None] * (max_dense - len(genome.dense[:max_dense]))
    return conv + dense + [scalar_value(genome, name) for name in SCALAR_GENES]


def from_slots(slots: list[Any], space: SearchSpace) -> Genome:
    """Inverse of :func:`gene_slots`; absent (``None``) layer slots are dropped."""
    max_conv, max_dense = space.conv_blocks[1], space.dense_layers[1]
    conv = tuple(s for s in slots[:max_conv] if s is not None)
    dense = tuple(s for s in slots[max_conv : max_conv + max_dense] if s is not None)
    return with_scalars(conv, dense, dict(zip(SCALAR_GENES, slots[max_conv + max_dense :])))


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
