"""Any supported dataset source → in-memory uint8 tensors with train / validation / test splits.

``load_dataset`` accepts a built-in name (``digits`` is bundled; ``cifar10``, ``cifar100``,
``mnist`` and ``fashion-mnist`` are read from ``data_dir`` in their published file formats and
downloaded with torchvision when absent), a folder of images, or a ``.zip`` of such a folder.
Everything is decoded once, up front, into one ``ImageData``: the trainer then only slices
tensors, so no file or PIL work happens while a search runs.

Fitness is measured on a validation split carved from the training data (stratified by class,
seeded by ``seed``); the test split is kept apart and is the same for every seed, so test
accuracies of different runs are comparable.

Errors a person can cause (a wrong name, a missing path, an unusable folder or zip) raise
``DatasetError`` with one sentence naming the value and what would be accepted.

Modules: ``sources`` (which source a setting names; zips), ``builtin`` (the named datasets' file
formats), ``folders`` (what an image folder holds, from headers only), ``decoding`` (a folder's
images into tensors: memory check, progress, in parallel), ``cache`` (a decoded folder kept for a
resume), ``images`` (one image file, upright), ``splits`` (``ImageData`` and the splits),
``archive`` (unpacking a zip safely). The names below are imported on first use, so
``automodel.data.archive`` and ``automodel.data.images`` load without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from automodel.errors import DatasetError

if TYPE_CHECKING:
    from automodel.data.builtin import DATASET_NAMES, DIGITS_FILE
    from automodel.data.images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS
    from automodel.data.sources import is_builtin_dataset, load_dataset
    from automodel.data.splits import TEST_FRACTION, TEST_SPLIT_SEED, ImageData

_HOMES = {
    "DATASET_NAMES": "builtin",
    "DIGITS_FILE": "builtin",
    "IMAGE_EXTENSIONS": "images",
    "MAX_IMAGE_PIXELS": "images",
    "is_builtin_dataset": "sources",
    "load_dataset": "sources",
    "TEST_FRACTION": "splits",
    "TEST_SPLIT_SEED": "splits",
    "ImageData": "splits",
}

__all__ = [
    "DATASET_NAMES",
    "DIGITS_FILE",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "TEST_FRACTION",
    "TEST_SPLIT_SEED",
    "DatasetError",
    "ImageData",
    "is_builtin_dataset",
    "load_dataset",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
