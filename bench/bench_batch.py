"""Batch size by time to accuracy: the search's trainer on the plain reference CNN, at batch 16, 32,
64 and 128, each given the same wall time, on a harder set (bench/harder_sets.py).

First a short timing at every batch size (images per second, with 1 thread as a candidate
trains and with all threads as the final training does); then, for each batch size, as many
epochs as the time of ``--epochs`` epochs at batch 16 buys at its own speed, trained with the
trainer's full schedule (warm-up, decay) and scored on the validation split. The trainer's
learning rate is the genome's (AdamW 1e-3), not scaled with the batch.

    python bench/bench_batch.py [--set glyphs] [--epochs 9] [--seeds 0,1] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automodel.config import SearchSpace  # noqa: E402
from automodel.data import load_dataset  # noqa: E402
from automodel.evolution.genome import reference_genome  # noqa: E402
from automodel.training.trainer import DeviceData, TrainSettings, train_candidate  # noqa: E402

BATCHES = (16, 32, 64, 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="glyphs")
    parser.add_argument("--epochs", type=int, default=9, help="the equal budget: this many epochs at batch 16")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "batch")
    args = parser.parse_args()
    from bench.harder_sets import ensure_set

    folder = ensure_set(args.set, args.work / "sets", 3000, 0)
    data = load_dataset(str(folder), seed=0)
    device_data = DeviceData(data, torch.device("cpu"))
    genome = reference_genome(SearchSpace())
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, set {args.set} "
        f"({len(data.train_x)} training images), {args.threads} thread(s), genome {genome.summary()}",
        flush=True,
    )
    speed = {}
    for batch in BATCHES:
        settings = TrainSettings(epochs=1, batch_size=batch, augment="crop", threads=args.threads)
        result = train_candidate(genome, device_data, settings, seed=0, probe_steps=80)
        speed[batch] = batch / result.step_seconds
        print(f"batch {batch}: {speed[batch]:.0f} images/s", flush=True)
    budget_s = args.epochs * len(data.train_x) / speed[16]
    print(f"\nequal time: {budget_s:.0f} s ({args.epochs} epochs at batch 16)\n")
    print("| batch | images/s | epochs in the same time | validation accuracy (per seed) | mean | seconds |")
    print("|---|---|---|---|---|---|")
    for batch in BATCHES:
        epochs = max(1, round(args.epochs * speed[batch] / speed[16]))
        scores, seconds = [], []
        for seed in map(int, args.seeds.split(",")):
            settings = TrainSettings(
                epochs=epochs, batch_size=batch, augment="crop", threads=args.threads, time_limit_s=10 * budget_s
            )
            started = time.perf_counter()
            result = train_candidate(genome, device_data, settings, seed=seed)
            seconds.append(time.perf_counter() - started)
            scores.append(result.fitness)
        print(
            f"| {batch} | {speed[batch]:.0f} | {epochs} | {', '.join(f'{s:.3f}' for s in scores)} | "
            f"{statistics.fmean(scores):.3f} | {statistics.fmean(seconds):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
