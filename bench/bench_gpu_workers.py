"""Candidates per hour on one GPU with 1, 2, 4 and 8 local workers, with the GPU's utilisation.

A CIFAR-10-shaped synthetic set (3×32×32, 10 classes, ``--images`` training images) and one
generation of ``--population`` candidates sampled from the default space, trained for ``--epochs``
epochs each, once per worker count (the same genomes every time). Utilisation is sampled from
``nvidia-smi`` every half second while the generation trains (torch's own reading where nvidia-smi
is missing). Also times ``torch.compile`` against eager mode on the same short trainings (one
worker).

    python bench/bench_gpu_workers.py                 # needs a CUDA GPU
    python bench/bench_gpu_workers.py --workers 1,2,4,8 --images 20000 --population 8 --epochs 2
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from searches import SearchOnly  # noqa: E402

from automodel.config import Config  # noqa: E402
from automodel.store import Store  # noqa: E402


def synthetic_folder(root: Path, images: int) -> Path:
    """Random 32×32 colour images in class folders (the time is real, the accuracy meaningless)."""
    rng = np.random.default_rng(0)
    for c in range(10):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(images // 10):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        test = root / "test" / f"class{c}"
        test.mkdir(parents=True, exist_ok=True)
        for i in range(max(2, images // 100)):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(test / f"{i}.png")
    return root


class Utilisation:
    """GPU utilisation (%) sampled in a thread while a block runs."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, subprocess.SubprocessError, IndexError, ValueError):
                try:
                    self.samples.append(float(torch.cuda.utilization()))
                except Exception:  # noqa: BLE001 — no reading available
                    return

    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def generation(dataset: str, workers: int, args, compile_: bool = False) -> tuple[float, int, float | None]:
    config = Config.from_dict(
        {
            **Config().to_dict(),
            "dataset": dataset,
            "population": args.population,
            "generations": 1,
            "epochs": args.epochs,
            "min_epochs": args.epochs,
            "seed": 0,
            "device": "cuda",
            "workers": workers,
            "compile": compile_,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "db.json")
        store.create_run("g", config.to_dict())
        with Utilisation() as use:
            started = time.perf_counter()
            SearchOnly(config, store, "g", data_dir=ROOT / "data").run()
            seconds = time.perf_counter() - started
        trained = sum(not r["cached"] for r in store.individuals("g"))
        return seconds, trained, use.mean()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing measured")
        return 1
    print(
        f"# {datetime.date.today()} · {torch.cuda.get_device_name(0)} · torch {torch.__version__} · "
        f"{args.images} synthetic 3×32×32 images, {args.population} candidates × {args.epochs} epochs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        dataset = str(synthetic_folder(Path(tmp) / "synthetic", args.images))
        rates = {}
        for workers in (int(w) for w in args.workers.split(",")):
            seconds, trained, use = generation(dataset, workers, args)
            rates[workers] = trained / seconds * 3600
            print(
                f"workers {workers}: {seconds:.1f} s for {trained} candidates = {rates[workers]:.0f} candidates/hour"
                f" · GPU utilisation {use if use is None else round(use)}%",
                flush=True,
            )
        best = max(rates, key=rates.get)
        print(
            f"gpu_workers_best: {best} ({rates[best] / rates[min(rates)]:.2f}× the candidates per hour of "
            f"{min(rates)} worker)"
        )
        eager, _, _ = generation(dataset, 1, args)
        compiled, _, _ = generation(dataset, 1, args, compile_=True)
        print(
            f"torch.compile against eager, one worker: {compiled:.1f} s against {eager:.1f} s "
            f"({eager / compiled:.2f}× {'faster' if compiled < eager else 'slower'} with compile)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
