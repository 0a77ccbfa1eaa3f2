"""Priors: how much of the search space learns within a few epochs, by optimizer, learning rate and head.

Samples genomes from the search space (repaired to the MACs budget as a search does), trains each
for a few epochs with the search's recipe, and prints the share whose validation accuracy is
above twice chance after each epoch — overall, per optimizer, per learning-rate band and per
head. This is the measurement behind the default learning-rate ranges and training settings.

    python bench/bench_priors.py --set glyphs --genomes 24 --epochs 3 --batch-size 32
    python bench/bench_priors.py --set shapes --space '{"optimizers": ["sgd"], "learning_rates": {"sgd": [0.003, 0.5]}}'
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from harder_sets import ensure_set  # noqa: E402

from automodel.config import SearchSpace, resolve_batch_size, resolve_max_macs  # noqa: E402
from automodel.data import load_dataset  # noqa: E402
from automodel.evolution.genome import sample_genome  # noqa: E402
from automodel.evolution.repair import fit_to_budget, fit_to_image  # noqa: E402
from automodel.training.trainer import DeviceData, TrainSettings, resolve_augment, train_candidate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="glyphs", help="glyphs, shapes or digits")
    parser.add_argument("--genomes", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", default="{}", help="JSON search-space settings over the defaults")
    parser.add_argument("--max-macs", type=int, default=None)
    args = parser.parse_args(argv)

    source = "digits" if args.set == "digits" else str(ensure_set(args.set, ROOT / "bench" / "out" / "sets"))
    data = load_dataset(source, ROOT / "data", val_fraction=0.15, seed=0)
    device_data = DeviceData(data, torch.device("cpu"))
    space = SearchSpace.from_dict(json.loads(args.space))
    space.validate()
    chance2 = 2 / len(data.classes)
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=resolve_batch_size(args.batch_size, len(data.train_x)),
        augment=resolve_augment("auto", data.name),
    )
    max_macs = resolve_max_macs(args.max_macs, data.input_shape)
    rng = random.Random(args.seed)
    groups: dict[str, list[list[float]]] = defaultdict(list)
    print(
        f"# {args.set}: {len(data.train_x)} training images, batch {settings.batch_size} "
        f"({math.ceil(len(data.train_x) / settings.batch_size)} steps per epoch), twice chance = {chance2:.2f}"
    )
    for i in range(args.genomes):
        genome = fit_to_budget(
            fit_to_image(sample_genome(space, rng), data.input_shape),
            data.input_shape,
            len(data.classes),
            max_macs=max_macs,
            max_params=20_000_000,
        ) or sample_genome(space, rng)
        started = time.perf_counter()
        result = train_candidate(genome, device_data, settings, seed=args.seed + i)
        curve = [h["val_accuracy"] for h in result.history] + [0.0] * (args.epochs - len(result.history))
        position = _position(genome, space)
        band = f"{genome.optimizer} lr {'low' if position < 1 / 3 else 'mid' if position < 2 / 3 else 'high'}"
        downsamples = sum(b.downsample != "none" for b in genome.conv)
        kinds = "+".join(sorted({b.kind for b in genome.conv}))
        for name in (
            "all",
            genome.optimizer,
            band,
            f"head {genome.head}",
            f"blocks {len(genome.conv)}",
            f"downsamples {downsamples}",
            f"dense {len(genome.dense)}",
            f"dropout {genome.dropout:g}",
            f"kinds {kinds}",
        ):
            groups[name].append(curve)
        print(
            f"{i:3d} {result.status:8s} {' '.join(f'{v:.3f}' for v in curve)}  {time.perf_counter() - started:5.1f}s  "
            f"{genome.summary()}",
            flush=True,
        )
    print(f"\n# share above twice chance after each epoch (of {args.genomes})")
    for name in sorted(groups, key=lambda n: (n != "all", n)):
        curves = groups[name]
        shares = [sum(c[e] > chance2 for c in curves) / len(curves) for e in range(args.epochs)]
        print(f"{name:16s} n={len(curves):3d}  " + "  ".join(f"e{e + 1} {s:.2f}" for e, s in enumerate(shares)))
    return 0


def _position(genome, space: SearchSpace) -> float:
    """Where the genome's learning rate sits in its optimizer's range, 0 (low) to 1 (high), on a log scale."""
    low, high = space.learning_rate_range(genome.optimizer)
    return 0.5 if high == low else (math.log(genome.learning_rate) - math.log(low)) / (math.log(high) - math.log(low))


if __name__ == "__main__":
    sys.exit(main())
