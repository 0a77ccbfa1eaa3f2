"""Which source a dataset setting names, and loading it: a built-in name, an image folder, or a
``.zip`` of one."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import DatasetError
from .archive import ExtractLimits
from .builtin import ALIASES, DATASET_NAMES, load_builtin
from .folders import default_extract_dir, load_folder, load_zip
from .splits import ImageData

NAMES_HINT = "give digits, cifar10, cifar100, mnist, fashion-mnist, or a path to an image folder or .zip of one"


def is_builtin_dataset(source: str) -> bool:
    """Whether ``source`` names a built-in dataset (which wins over a folder of the same name)."""
    text = str(source).strip().lower()
    return ALIASES.get(text, text) in DATASET_NAMES


def load_dataset(source: str, data_dir: str | Path = "data", *, val_fraction: float = 0.15,
                 seed: int = 0, work_dir: str | Path | None = None, download: bool = True,
                 limits: ExtractLimits | None = None, max_side: int = 64) -> ImageData:
    """Load a built-in dataset by name, or an image folder / ``.zip`` by path.

    Built-in names win over a same-named folder in the working directory (give ``./digits``
    for the folder). ``work_dir`` is where a zip is unpacked; by default
    ``data_dir/extracted/<hash of the zip>``, reused when the same zip is loaded again.
    ``max_side`` caps the longer side of folder images (aspect kept).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction {val_fraction!r} is not accepted; give a number from 0 up to (not including) 1.")
    text = str(source).strip()
    if not text:
        raise DatasetError(f"the dataset is empty; {NAMES_HINT}.")
    key = ALIASES.get(text.lower(), text.lower())
    if key in DATASET_NAMES:
        return load_builtin(key, Path(data_dir), val_fraction, seed, download)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_folder(path, text, val_fraction, seed, max_side)
    if path.is_file():
        if path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
            raise DatasetError(f"dataset file {text} is not a .zip archive; give a folder of images or a .zip of one.")
        dest = Path(work_dir) if work_dir is not None else default_extract_dir(path, Path(data_dir))
        return load_zip(path, dest, text, val_fraction, seed, max_side, limits or ExtractLimits(),
                         cached=work_dir is None)
    if _looks_like_path(text):
        raise DatasetError(f"dataset path {text} does not exist; {NAMES_HINT}.")
    raise DatasetError(f"unknown dataset {text!r}; {NAMES_HINT}.")


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith((".", "~")) or Path(text).suffix != ""
