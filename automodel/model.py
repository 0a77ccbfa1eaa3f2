"""Genome → ``torch.nn.Module`` that runs on the dataset's image size.

The genome says what to build; this module fits it to the input: a pooling layer that would
take a side below 1 pixel pools only the sides that can shrink (or is skipped), and a kernel
larger than its feature map is clipped to the largest odd size that fits. Convolutions use
"same" padding. Before the classifier, an adaptive average pool caps the feature map at 4×4,
so a shallow network on large images does not produce an enormous first dense layer.

The model takes float images in [0, 1] (N×C×H×W) and normalises them itself, so an exported
model needs nothing but its file to be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .genome import Genome

MAX_FEATURE_SIDE = 4


def activation_layer(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
    }[name]()


@dataclass(frozen=True)
class ConvPlan:
    """How one conv block is realised on a feature map of a given size."""

    in_channels: int
    out_channels: int
    kernel: int
    pool: tuple[int, int] | None
    out_hw: tuple[int, int]


def plan_conv_blocks(genome: Genome, input_shape: Sequence[int]) -> list[ConvPlan]:
    """Kernel sizes and pooling each block really gets on this input size."""
    channels, h, w = input_shape
    plans = []
    for block in genome.conv:
        kernel = min(block.kernel, _largest_odd_at_most(min(h, w)))
        pool = None
        if block.pooling != "none" and (h >= 2 or w >= 2):
            pool = (2 if h >= 2 else 1, 2 if w >= 2 else 1)
            h, w = h // pool[0], w // pool[1]
        plans.append(ConvPlan(channels, block.filters, kernel, pool, (h, w)))
        channels = block.filters
    return plans


def _largest_odd_at_most(n: int) -> int:
    return max(1, n if n % 2 == 1 else n - 1)


class CandidateNet(nn.Module):
    """A CNN built from a genome; normalisation is part of the model."""

    def __init__(self, genome: Genome, input_shape: Sequence[int], classes: Sequence[str],
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.genome = genome
        self.input_shape = tuple(int(v) for v in input_shape)
        self.classes = list(classes)
        channels = self.input_shape[0]
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, channels, 1, 1))

        layers: list[nn.Module] = []
        h, w = self.input_shape[1:]
        for block, plan in zip(genome.conv, plan_conv_blocks(genome, self.input_shape)):
            layers.append(nn.Conv2d(plan.in_channels, plan.out_channels, plan.kernel,
                                    padding=plan.kernel // 2, bias=not block.batch_norm))
            if block.batch_norm:
                layers.append(nn.BatchNorm2d(plan.out_channels))
            layers.append(activation_layer(block.activation))
            if plan.pool is not None:
                pool_cls = nn.MaxPool2d if block.pooling == "max" else nn.AvgPool2d
                layers.append(pool_cls(plan.pool, plan.pool))
            channels, (h, w) = plan.out_channels, plan.out_hw
        if h > MAX_FEATURE_SIDE or w > MAX_FEATURE_SIDE:
            h, w = min(h, MAX_FEATURE_SIDE), min(w, MAX_FEATURE_SIDE)
            layers.append(nn.AdaptiveAvgPool2d((h, w)))
        self.features = nn.Sequential(*layers)

        head: list[nn.Module] = [nn.Flatten()]
        width = channels * h * w
        for dense in genome.dense:
            head += [nn.Dropout(genome.dropout), nn.Linear(width, dense.units), activation_layer(dense.activation)]
            width = dense.units
        head += [nn.Dropout(genome.dropout), nn.Linear(width, len(self.classes))]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.classifier(self.features(x))


def build_model(genome: Genome, input_shape: Sequence[int], classes: Sequence[str],
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> CandidateNet:
    channels = int(input_shape[0])
    return CandidateNet(genome, input_shape, classes,
                        mean if mean is not None else [0.5] * channels,
                        std if std is not None else [0.25] * channels)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def estimate_parameters(genome: Genome, input_shape: Sequence[int], num_classes: int) -> int:
    """Parameter count without allocating weights (built on the meta device)."""
    with torch.device("meta"):
        model = build_model(genome, input_shape, [str(i) for i in range(num_classes)])
    return count_parameters(model)


def layer_table(genome: Genome, input_shape: Sequence[int], num_classes: int) -> list[dict]:
    """The architecture as rows of layer, output shape and parameters (for people to read)."""
    with torch.device("meta"):
        model = build_model(genome, input_shape, [str(i) for i in range(num_classes)]).eval()
        rows: list[dict] = [{"layer": "Input (normalised)", "output_shape": "×".join(map(str, input_shape)),
                             "parameters": 0}]
        x = torch.empty(1, *input_shape)
        for module in list(model.features) + list(model.classifier):
            x = module(x)
            if isinstance(module, nn.Dropout) and module.p == 0:
                continue
            rows.append({"layer": _describe(module), "output_shape": "×".join(map(str, x.shape[1:])),
                         "parameters": count_parameters(module)})
    return rows


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return f"Conv2d {module.out_channels} filters {module.kernel_size[0]}×{module.kernel_size[1]}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
        return f"{type(module).__name__} {k[0]}×{k[1]}"
    if isinstance(module, nn.Linear):
        return f"Linear {module.out_features}"
    if isinstance(module, nn.Dropout):
        return f"Dropout {module.p:g}"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "AdaptiveAvgPool2d"
    return type(module).__name__
