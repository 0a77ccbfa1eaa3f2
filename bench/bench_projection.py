"""Strided 1×1 convolutions as AutoModel builds them (on fewer than 8 input channels: subsample,
then a 1×1 convolution, ``SubsampledPointwiseConv``) against ``nn.Conv2d(stride=2)`` everywhere,
the layer that crashes oneDNN's AVX2 kernel on 2–7 channels (docs/onednn-strided-1x1-bug.md):
training images per second of residual networks whose
blocks downsample by stride, on 3×32×32 images, at batch 16 and 64, in channels-last and
contiguous memory, interleaved in one process on this machine's own kernels (where both work).

    python bench/bench_projection.py [--steps 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from automodel.evolution.genome import ConvBlock, Genome  # noqa: E402
from automodel.training.model import SubsampledPointwiseConv, build_model  # noqa: E402

GENOMES = {
    "1 residual stride block, 16 filters": (ConvBlock(16, 5, "silu", "stride", True, "residual"),),
    "3 residual stride blocks, 32-64-128": (
        ConvBlock(32, 3, "relu", "stride", True, "residual"),
        ConvBlock(64, 3, "relu", "stride", True, "residual"),
        ConvBlock(128, 3, "relu", "stride", True, "residual"),
    ),
}


def with_strided_conv2d(model: nn.Module) -> nn.Module:
    """The same network with every SubsampledPointwiseConv put back as a plain strided nn.Conv2d."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, SubsampledPointwiseConv):
                plain = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    1,
                    stride=child.stride,
                    groups=child.groups,
                    bias=child.bias is not None,
                )
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain)
    return model


def images_per_s(model: nn.Module, batch: int, steps: int, fmt) -> float:
    model = model.to(memory_format=fmt).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    for _ in range(3):  # warm-up
        nn.functional.cross_entropy(model(x), y).backward()
    started = time.perf_counter()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(f"{'network':38} {'batch':>5} {'memory':>14} {'Conv2d stride':>14} {'as built':>11} {'ratio':>6}")
    for label, conv in GENOMES.items():
        genome = Genome(conv=conv, dense=(), dropout=0.0, optimizer="sgd", learning_rate=0.02, weight_decay=0.0)
        for batch in (16, 64):
            for fmt, fmt_name in ((torch.channels_last, "channels-last"), (torch.contiguous_format, "contiguous")):
                ours, theirs = [], []
                for _ in range(args.repeats):
                    torch.manual_seed(0)
                    ours.append(
                        images_per_s(build_model(genome, (3, 32, 32), list("0123456789")), batch, args.steps, fmt)
                    )
                    torch.manual_seed(0)
                    theirs.append(
                        images_per_s(
                            with_strided_conv2d(build_model(genome, (3, 32, 32), list("0123456789"))),
                            batch,
                            args.steps,
                            fmt,
                        )
                    )
                a, b = statistics.median(theirs), statistics.median(ours)
                print(f"{label:38} {batch:5} {fmt_name:>14} {a:12.0f}/s {b:9.0f}/s {b / a:6.2f}")


if __name__ == "__main__":
    main()
