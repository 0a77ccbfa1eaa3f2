"""Genome → ``torch.nn.Module`` that runs on the dataset's image size, and what it costs.

The genome says what to build; this module fits it to the input: downsampling that would take a
side below 1 pixel halves only the sides that can shrink (or is skipped), and a kernel larger
than its feature map is clipped to the largest odd size that fits. Convolutions use "same"
padding. The ``flatten`` head averages the feature map down to at most 4×4 before flattening it,
so a shallow network on large images does not get an enormous first dense layer; the ``gap``
head averages each channel over the whole map, and ``avgmax`` takes both the average and the
maximum of each channel.

The model takes float images in [0, 1] (N×C×H×W) and normalises them itself, so an exported
model needs nothing but its file to be used.

Cost: :func:`count_macs` counts the multiply–accumulates of one image's forward pass from the
layers of the built model (convolutions and linear layers; batch norm, activations, pooling and
additions are a few per value and left out, as is usual). Repairing a genome that is over a budget
is search policy: :mod:`automodel.evolution.repair`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from automodel.evolution.genome import ConvBlock, Genome

MAX_FEATURE_SIDE = 4


def activation_layer(name: str) -> nn.Module:
    layers: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
    }
    return layers[name]()


@dataclass(frozen=True)
class ConvPlan:
    """How one block is realised on a feature map of a given size."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: tuple[int, int]  # of the block's first convolution
    pool: tuple[int, int] | None  # 2×2 (or 2×1, 1×2) pooling after the block
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]


def plan_conv_blocks(genome: Genome, input_shape: Sequence[int]) -> list[ConvPlan]:
    """Kernel sizes, strides and pooling each block really gets on this input size."""
    channels, h, w = (int(v) for v in input_shape)
    plans = []
    for block in genome.conv:
        kernel = min(block.kernel, _largest_odd_at_most(min(h, w)))
        halve = (2 if h >= 2 else 1, 2 if w >= 2 else 1)
        can_halve = halve != (1, 1)
        stride = halve if block.downsample == "stride" and can_halve else (1, 1)
        pool = halve if block.downsample in ("max", "avg") and can_halve else None
        out_h, out_w = -(-h // stride[0]), -(-w // stride[1])  # "same" padding with a stride: ceil
        if pool is not None:
            out_h, out_w = out_h // pool[0], out_w // pool[1]
        plans.append(ConvPlan(channels, block.filters, kernel, stride, pool, (h, w), (out_h, out_w)))
        channels, h, w = block.filters, out_h, out_w
    return plans


def _largest_odd_at_most(n: int) -> int:
    return max(1, n if n % 2 == 1 else n - 1)


FEW_CHANNELS = 8  # strided 1×1 convolutions on fewer input channels are built as SubsampledPointwiseConv


class SubsampledPointwiseConv(nn.Conv2d):
    """A strided 1×1 convolution computed as what it is: every ``stride``-th pixel, then a 1×1
    convolution. The result, the weights and their names are those of ``nn.Conv2d`` with that
    stride; the difference is the kernel that runs. oneDNN's AVX2 kernel for the weight gradient of
    a strided 1×1 convolution on channels-last input with 2–7 input channels writes outside its
    buffers (PyTorch 2.14 on CPUs without AVX-512: the process dies of a segmentation fault or heap
    corruption, or hangs), and a residual block's projection on RGB images is exactly that
    convolution (docs/onednn-strided-1x1-bug.md). Used only below ``FEW_CHANNELS`` input channels:
    on wider inputs the strided kernel is safe and up to 10% faster (bench/bench_projection.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride[0], :: self.stride[1]]
        return nn.functional.conv2d(x, self.weight, self.bias, 1, 0, 1, self.groups)


def _conv(
    in_channels: int, out_channels: int, kernel: int, stride=(1, 1), groups: int = 1, bias: bool = True
) -> nn.Conv2d:
    if kernel == 1 and tuple(stride) != (1, 1) and in_channels < FEW_CHANNELS:
        return SubsampledPointwiseConv(in_channels, out_channels, 1, stride=stride, groups=groups, bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)


def _norm(channels: int, on: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if on else nn.Identity()


def _pool(block: ConvBlock, plan: ConvPlan) -> nn.Module:
    if plan.pool is None:
        return nn.Identity()
    return (nn.MaxPool2d if block.downsample == "max" else nn.AvgPool2d)(plan.pool, plan.pool)


class PlainBlock(nn.Module):
    """Convolution → batch norm → activation → pooling."""

    def __init__(self, block: ConvBlock, plan: ConvPlan):
        super().__init__()
        self.conv = _conv(plan.in_channels, plan.out_channels, plan.kernel, plan.stride, bias=not block.batch_norm)
        self.norm = _norm(plan.out_channels, block.batch_norm)
        self.act = activation_layer(block.activation)
        self.pool = _pool(block, plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


class ResidualBlock(nn.Module):
    """Two convolutions with a skip connection (He et al. 2016): act(main(x) + skip(x)), then pooling.
    The skip is the identity, or a strided 1×1 convolution where channels or size change."""

    def __init__(self, block: ConvBlock, plan: ConvPlan):
        super().__init__()
        bias = not block.batch_norm
        self.conv1 = _conv(plan.in_channels, plan.out_channels, plan.kernel, plan.stride, bias=bias)
        self.norm1 = _norm(plan.out_channels, block.batch_norm)
        self.act1 = activation_layer(block.activation)
        self.conv2 = _conv(plan.out_channels, plan.out_channels, plan.kernel, bias=bias)
        self.norm2 = _norm(plan.out_channels, block.batch_norm)
        if plan.in_channels != plan.out_channels or plan.stride != (1, 1):
            self.skip: nn.Module = nn.Sequential(
                _conv(plan.in_channels, plan.out_channels, 1, plan.stride, bias=bias),
                _norm(plan.out_channels, block.batch_norm),
            )
        else:
            self.skip = nn.Identity()
        self.act = activation_layer(block.activation)
        self.pool = _pool(block, plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.pool(self.act(main + self.skip(x)))


class SeparableBlock(nn.Module):
    """Depthwise-separable convolution (as in MobileNet): a depthwise k×k convolution, then a
    pointwise 1×1 one, each with batch norm and activation; then pooling."""

    def __init__(self, block: ConvBlock, plan: ConvPlan):
        super().__init__()
        bias = not block.batch_norm
        self.depthwise = _conv(
            plan.in_channels, plan.in_channels, plan.kernel, plan.stride, groups=plan.in_channels, bias=bias
        )
        self.norm1 = _norm(plan.in_channels, block.batch_norm)
        self.act1 = activation_layer(block.activation)
        self.pointwise = _conv(plan.in_channels, plan.out_channels, 1, bias=bias)
        self.norm2 = _norm(plan.out_channels, block.batch_norm)
        self.act = activation_layer(block.activation)
        self.pool = _pool(block, plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.depthwise(x)))
        return self.pool(self.act(self.norm2(self.pointwise(x))))


BLOCKS = {"plain": PlainBlock, "residual": ResidualBlock, "separable": SeparableBlock}


class GlobalAvgMaxPool(nn.Module):
    """Global average and global max pooling side by side (2 × channels features): the maximum
    tells whether a feature is anywhere in the image, which a network learns from in far fewer
    steps than from the average alone (bench/RESULTS.md §6)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


class CandidateNet(nn.Module):
    """A CNN built from a genome; normalisation is part of the model."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(
        self,
        genome: Genome,
        input_shape: Sequence[int],
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        self.genome = genome
        self.input_shape = tuple(int(v) for v in input_shape)
        self.classes = list(classes)
        channels = self.input_shape[0]
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, channels, 1, 1))

        plans = plan_conv_blocks(genome, self.input_shape)
        self.plans = plans
        self.features = nn.Sequential(*(BLOCKS[block.kind](block, plan) for block, plan in zip(genome.conv, plans)))
        h, w = plans[-1].out_hw if plans else self.input_shape[1:]
        channels = plans[-1].out_channels if plans else channels

        head: list[nn.Module] = []
        if genome.head == "gap":
            head += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            width = channels
        elif genome.head == "avgmax":
            head.append(GlobalAvgMaxPool())
            width = 2 * channels
        else:
            if h > MAX_FEATURE_SIDE or w > MAX_FEATURE_SIDE:
                h, w = min(h, MAX_FEATURE_SIDE), min(w, MAX_FEATURE_SIDE)
                head.append(nn.AdaptiveAvgPool2d((h, w)))
            head.append(nn.Flatten())
            width = channels * h * w
        for dense in genome.dense:
            head += [nn.Dropout(genome.dropout), nn.Linear(width, dense.units, bias=not dense.batch_norm)]
            if dense.batch_norm:
                head.append(nn.BatchNorm1d(dense.units))
            head.append(activation_layer(dense.activation))
            width = dense.units
        head += [nn.Dropout(genome.dropout), nn.Linear(width, len(self.classes))]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.classifier(self.features(x))


def build_model(
    genome: Genome,
    input_shape: Sequence[int],
    classes: Sequence[str],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> CandidateNet:
    channels = int(input_shape[0])
    return CandidateNet(
        genome,
        input_shape,
        classes,
        mean if mean is not None else [0.5] * channels,
        std if std is not None else [0.25] * channels,
    )


def meta_model(genome: Genome, input_shape: Sequence[int], num_classes: int) -> CandidateNet:
    """The model's structure without weights (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        return build_model(genome, input_shape, [str(i) for i in range(num_classes)])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def estimate_parameters(genome: Genome, input_shape: Sequence[int], num_classes: int) -> int:
    """Parameter count without allocating weights (built on the meta device)."""
    return count_parameters(meta_model(genome, input_shape, num_classes))


# ---------------------------------------------------------------------------------- cost


def _conv_macs(conv: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    k_h, k_w = conv.kernel_size
    return out_hw[0] * out_hw[1] * conv.out_channels * (conv.in_channels // conv.groups) * k_h * k_w


def block_macs(block: nn.Module, plan: ConvPlan) -> int:
    """Multiply–accumulates of one block of a built model for one image."""
    h, w = plan.in_hw
    conv_hw = (-(-h // plan.stride[0]), -(-w // plan.stride[1]))  # where the convolutions run
    return sum(_conv_macs(m, conv_hw) for m in block.modules() if isinstance(m, nn.Conv2d))


def model_macs(model: CandidateNet) -> list[int]:
    """Per block, then the head as the last entry."""
    per_block = [block_macs(block, plan) for block, plan in zip(model.features, model.plans)]
    head = sum(m.in_features * m.out_features for m in model.classifier if isinstance(m, nn.Linear))
    return per_block + [head]


def count_macs(genome: Genome, input_shape: Sequence[int], num_classes: int) -> int:
    """Multiply–accumulates of one forward pass of one image, counted on the built model's layers."""
    return sum(model_macs(meta_model(genome, input_shape, num_classes)))


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def measure_cost(genome: Genome, input_shape: Sequence[int], num_classes: int) -> Cost:
    model = meta_model(genome, input_shape, num_classes)
    return Cost(count_parameters(model), sum(model_macs(model)))


def layer_table(genome: Genome, input_shape: Sequence[int], num_classes: int) -> list[dict]:
    """The architecture as rows of layer, output shape, parameters and MACs (for people to read).

    One row per block of the body (its kind, convolutions, downsampling and skip) and one per
    layer of the head.
    """
    model = meta_model(genome, input_shape, num_classes)
    macs = model_macs(model)
    rows: list[dict] = [
        {"layer": "Input (normalised)", "output_shape": "×".join(map(str, input_shape)), "parameters": 0, "macs": 0}
    ]
    for i, (block, module, plan) in enumerate(zip(genome.conv, model.features, model.plans)):
        rows.append(
            {
                "layer": describe_block(block, plan),
                "output_shape": f"{plan.out_channels}×{plan.out_hw[0]}×{plan.out_hw[1]}",
                "parameters": count_parameters(module),
                "macs": macs[i],
                "kind": block.kind,
                "skip": block.kind == "residual",
            }
        )
    c, h, w = (model.plans[-1].out_channels, *model.plans[-1].out_hw) if model.plans else tuple(input_shape)
    shape: tuple[int, ...] = (c, h, w)
    for module in model.classifier:
        if isinstance(module, nn.AdaptiveAvgPool2d):
            size = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
            shape = (shape[0], *(int(s or 1) for s in size))
            name = "Global average pool" if size == (1, 1) else f"Adaptive average pool to {size[0]}×{size[1]}"
        elif isinstance(module, nn.Flatten):
            shape = (math.prod(shape),)
            name = "Flatten"
        elif isinstance(module, GlobalAvgMaxPool):
            shape = (2 * shape[0],)
            name = "Global average and max pool"
        elif isinstance(module, nn.Linear):
            shape = (module.out_features,)
            name = f"Linear {module.out_features}"
        elif isinstance(module, nn.Dropout):
            if module.p == 0:
                continue
            name = f"Dropout {module.p:g}"
        elif isinstance(module, nn.BatchNorm1d):
            name = "BatchNorm1d"
        else:
            name = type(module).__name__
        rows.append(
            {
                "layer": name,
                "output_shape": "×".join(map(str, shape)),
                "parameters": count_parameters(module),
                "macs": module.in_features * module.out_features if isinstance(module, nn.Linear) else 0,
            }
        )
    return rows


def describe_block(block: ConvBlock, plan: ConvPlan) -> str:
    """E.g. ``Residual 64 filters 3×3, stride 2, relu, batch norm, skip 1×1`` (what the block really is
    on this input: the kernel and downsampling after fitting)."""
    parts = [f"{block.kind.capitalize()} {plan.out_channels} filters {plan.kernel}×{plan.kernel}"]
    if plan.stride != (1, 1):
        parts.append(f"stride {plan.stride[0]}×{plan.stride[1]}" if plan.stride[0] != plan.stride[1] else "stride 2")
    parts.append(block.activation)
    if block.batch_norm:
        parts.append("batch norm")
    if plan.pool is not None:
        parts.append(f"{block.downsample} pool {plan.pool[0]}×{plan.pool[1]}")
    if block.kind == "residual":
        projected = plan.in_channels != plan.out_channels or plan.stride != (1, 1)
        parts.append("skip via 1×1 conv" if projected else "identity skip")
    return ", ".join(parts)
