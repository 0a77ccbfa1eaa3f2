"""The yardstick: the CNN a person writes by hand in a short script, trained once and scored once.

Three 3×3 conv blocks of 32, 64 and 128 filters with batch norm, ReLU and 2×2 max pooling, global
average pooling, a linear layer; AdamW at 1e-3 with a one-cycle schedule, batch 64, random
translation (reflect-pad 4 and crop), 15 epochs on the training images (train + validation split,
as the search's final model gets), then the test split once. The data come through AutoModel's
loader so that the split is the search's own; nothing else of AutoModel is used.

    python bench/hand_cnn.py DATASET [--epochs 15] [--seed 0]      # prints "hand_cnn: ACC in S s"
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automodel.data import load_dataset  # noqa: E402


def hand_cnn(channels: int, classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(channels, 32),
        *block(32, 64),
        *block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, classes),
    )


def train_and_test(dataset: str, epochs: int = 15, seed: int = 0, data_dir: str = "data") -> tuple[float, float]:
    """(test accuracy, seconds of training and testing) of one hand-written training."""
    data = load_dataset(dataset, data_dir, seed=seed)
    started = time.perf_counter()
    torch.manual_seed(seed)
    x = torch.cat([data.train_x, data.val_x]).float().div(255)
    y = torch.cat([data.train_y, data.val_y])
    mean = x.mean((0, 2, 3), keepdim=True)
    std = x.std((0, 2, 3), keepdim=True)
    model = hand_cnn(x.shape[1], len(data.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = epochs * ((len(x) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x)).split(64):
            batch = nn.functional.pad(x[index], (4, 4, 4, 4), mode="reflect")
            dy, dx = torch.randint(0, 9, (2,)).tolist()
            batch = batch[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]
            loss = nn.functional.cross_entropy(model((batch - mean) / std), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        test_x = data.test_x.float().div(255)
        predicted = torch.cat([model((b - mean) / std).argmax(1) for b in test_x.split(512)])
    accuracy = (predicted == data.test_y).float().mean().item()
    return accuracy, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    accuracy, seconds = train_and_test(args.dataset, args.epochs, args.seed)
    print(f"hand_cnn: {accuracy:.4f} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
