"""Search wall time: a whole search through the command line, timed end to end.

Presets:
  quick      the Quick demo: bundled digits, population 8, 3 generations, 2 epochs (CPU is fine)
  cifar      10 candidates × 20 generations × 6 epochs (halving from 2) on CIFAR-10-sized data (50,000 + 10,000
             images of 3×32×32). With ``--synthetic`` the images are random and written in the
             real CIFAR-10 file format first (for machines that cannot download CIFAR-10): the
             time is real, the accuracy meaningless. Without it, real CIFAR-10 is read from (or
             downloaded into) ``--data-dir`` and the final model's test accuracy is meaningful.

    python bench/bench_search.py quick
    python bench/bench_search.py cifar --synthetic          # time only
    python bench/bench_search.py cifar --data-dir data      # real CIFAR-10: time and accuracy

Other arguments go to ``automodel run`` (e.g. ``--generations 2``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {
    "quick": ["--dataset", "digits", "--population", "8", "--generations", "3", "--epochs", "2", "--seed", "0"],
    "cifar": [
        "--dataset",
        "cifar10",
        "--population",
        "10",
        "--generations",
        "20",
        "--epochs",
        "6",
        "--min-epochs",
        "2",
        "--final-epochs",
        "30",
        "--batch-size",
        "256",
        "--seed",
        "0",
    ],
}


def write_synthetic_cifar10(data_dir: Path, train: int = 50_000, test: int = 10_000) -> None:
    """Random images in the real cifar-10-batches-py pickle format (5 train batches + test)."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_batch = train // 5
    for name, count in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", test)]:
        batch = {
            b"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, size=count).tolist(),
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names}, handle)


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset", choices=PRESETS)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    args, extra = parser.parse_known_args()
    args.extra = [a for a in extra if a != "--"]
    with tempfile.TemporaryDirectory() as folder:
        data_dir = args.data_dir
        if args.synthetic:
            data_dir = Path(folder) / "data"
            write_synthetic_cifar10(data_dir)
        db = Path(folder) / "db.json"
        cmd = [
            sys.executable,
            "-m",
            "automodel",
            "run",
            *PRESETS[args.preset],
            "--run-id",
            "bench",
            "--db",
            str(db),
            "--data-dir",
            str(data_dir),
            "--quiet",
            *args.extra,
        ]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"search failed ({done.returncode}): {done.stderr[-2000:]}")
        info = json.loads(
            subprocess.run(
                [sys.executable, "-m", "automodel", "show", "bench", "--json", "--db", str(db)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    label = "synthetic" if args.synthetic else "real"
    print(f"machine: {machine()}")
    print(f"preset: {args.preset} ({label} data) {' '.join(PRESETS[args.preset] + args.extra)}")
    print(
        f"wall time: {seconds:.1f} s, candidates evaluated: {info['evaluated']}, "
        f"best validation accuracy: {info['best_fitness']:.4f}, final test accuracy: {info['test_accuracy']:.4f}"
    )


if __name__ == "__main__":
    main()
