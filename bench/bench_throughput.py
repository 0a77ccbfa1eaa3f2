"""Training throughput: AutoModel's trainer against a baseline written the original way.

Both train the same genome on the same images (CIFAR-10 shaped: 3×32×32, 10 classes) for the
same number of epochs, in one process, alternating, several repetitions. The baseline does
what the original system did: a torchvision-style dataset that turns each uint8 array into a
PIL image, then ``ToTensor`` and ``Normalize`` per image, a ``DataLoader`` (batch 128,
shuffled, default workers) rebuilt for every epoch, fp32, and a plain Adam loop. AutoModel's
trainer keeps the data as one uint8 tensor on the device and cuts batches by index.

The images are synthetic (CIFAR-10 cannot be downloaded on the benchmark machines); their
content does not change the speed of either path. The last line printed is
``speedup_vs_baseline: X.XX`` (median AutoModel images/s over median baseline images/s).

    python bench/bench_throughput.py [--images 10000] [--epochs 1] [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automodel.data import ImageData  # noqa: E402
from automodel.evolution.genome import ConvBlock, DenseLayer, Genome  # noqa: E402
from automodel.training.model import build_model  # noqa: E402
from automodel.training.trainer import DeviceData, TrainSettings, resolve_device, train_candidate  # noqa: E402

GENOME = Genome(
    conv=(
        ConvBlock(32, 3, "relu", "max", True),
        ConvBlock(64, 3, "relu", "max", True),
        ConvBlock(128, 3, "relu", "max", True),
    ),
    dense=(DenseLayer(128, "relu"),),
    dropout=0.2,
    optimizer="adam",
    learning_rate=1e-3,
    weight_decay=0.0,
)
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class ArrayImageDataset(Dataset):
    """Like torchvision's CIFAR10: HWC uint8 arrays, a PIL image per item, then transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def baseline_epochs(images: np.ndarray, labels: np.ndarray, epochs: int, device: torch.device) -> float:
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    dataset = ArrayImageDataset(images, labels, transform)
    torch.manual_seed(0)
    model = build_model(GENOME, (3, 32, 32), [str(i) for i in range(10)], (0.0,) * 3, (1.0,) * 3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(dataset, batch_size=128, shuffle=True):
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def automodel_epochs(data: DeviceData, epochs: int, augment: str) -> float:
    settings = TrainSettings(
        epochs=epochs, batch_size=128, device=str(data.device), augment=augment, time_limit_s=1e9, max_params=10**9
    )
    started = time.perf_counter()
    result = train_candidate(GENOME, data, settings, seed=0)
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    assert result.status == "ok", result
    return elapsed - _scoring_seconds(data)


def _scoring_seconds(data: DeviceData) -> float:
    """The trainer also scores the validation split; the baseline does not, so subtract it."""
    from automodel.training.trainer import accuracy

    model = build_model(GENOME, (3, 32, 32), data.classes, MEAN, STD).to(data.device, memory_format=torch.channels_last)
    started = time.perf_counter()
    accuracy(model, data.val_x, data.val_y)
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=args.images)
    chw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels).long()
    data = DeviceData(
        ImageData(
            "synthetic-cifar10", chw, y, chw[:1000], y[:1000], chw[:10], y[:10], [str(i) for i in range(10)], MEAN, STD
        ),
        device,
    )
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU"
    )
    print(f"machine: {name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"images: {args.images} synthetic 3x32x32, epochs per measurement: {args.epochs}, repeats: {args.repeats}")
    work = args.images * args.epochs
    rows = {
        "baseline (PIL+DataLoader, fp32)": [],
        "automodel (tensors, no augmentation)": [],
        "automodel (tensors, crop+flip on device)": [],
    }
    automodel_epochs(data, 1, "none")  # warm-up (allocator, cuDNN autotuning)
    for _ in range(args.repeats):
        rows["baseline (PIL+DataLoader, fp32)"].append(work / baseline_epochs(images, labels, args.epochs, device))
        rows["automodel (tensors, no augmentation)"].append(work / automodel_epochs(data, args.epochs, "none"))
        rows["automodel (tensors, crop+flip on device)"].append(work / automodel_epochs(data, args.epochs, "flip_crop"))
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    for label, values in rows.items():
        print(f"{label:44} {statistics.median(values):10.0f} images/s  (runs: {', '.join(f'{v:.0f}' for v in values)})")
    base = statistics.median(rows["baseline (PIL+DataLoader, fp32)"])
    ours = statistics.median(rows["automodel (tensors, no augmentation)"])
    print(f"speedup_vs_baseline: {ours / base:.2f}")


if __name__ == "__main__":
    main()
