"""Which source a dataset setting names, and loading it: a built-in name, an image folder, or a
``.zip`` of one."""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

from automodel.data.archive import ExtractLimits, safe_extract_zip
from automodel.data.builtin import ALIASES, DATASET_NAMES, load_builtin
from automodel.data.decoding import Progress, load_folder
from automodel.data.folders import AUTO_MAX_SIDE
from automodel.data.splits import ImageData
from automodel.errors import DatasetError

NAMES_HINT = "give digits, cifar10, cifar100, mnist, fashion-mnist, or a path to an image folder or .zip of one"


def is_builtin_dataset(source: str) -> bool:
    """Whether ``source`` names a built-in dataset (which wins over a folder of the same name)."""
    text = str(source).strip().lower()
    return ALIASES.get(text, text) in DATASET_NAMES


def load_dataset(
    source: str,
    data_dir: str | Path = "data",
    *,
    val_fraction: float = 0.15,
    seed: int = 0,
    work_dir: str | Path | None = None,
    download: bool = True,
    limits: ExtractLimits | None = None,
    image_size: int | None = None,
    max_side: int = AUTO_MAX_SIDE,
    cache_dir: str | Path | None = None,
    on_progress: Progress | None = None,
) -> ImageData:
    """Load a built-in dataset by name, or an image folder / ``.zip`` by path.

    Built-in names win over a same-named folder in the working directory (give ``./digits``
    for the folder). ``work_dir`` is where a zip is unpacked; by default
    ``data_dir/extracted/<hash of the zip>``, reused when the same zip is loaded again.
    Folder images are scaled so that their longer side is ``image_size``, or when it is None at
    most ``max_side`` (aspect kept); built-in datasets keep their own size. ``cache_dir`` keeps a
    decoded folder for the next load (a resume); ``on_progress(done, total)`` follows decoding.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(
            f"val_fraction {val_fraction!r} is not accepted; give a number from 0 up to (not including) 1."
        )
    text = str(source).strip()
    if not text:
        raise DatasetError(f"the dataset is empty; {NAMES_HINT}.")
    key = ALIASES.get(text.lower(), text.lower())
    if key in DATASET_NAMES:
        return load_builtin(key, Path(data_dir), val_fraction, seed, download)

    def folder(root: Path) -> ImageData:
        return load_folder(
            root,
            text,
            val_fraction=val_fraction,
            seed=seed,
            image_size=image_size,
            max_side=max_side,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            on_progress=on_progress,
        )

    path = Path(text).expanduser()
    if path.is_dir():
        return folder(path)
    if path.is_file():
        if path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
            raise DatasetError(f"dataset file {text} is not a .zip archive; give a folder of images or a .zip of one.")
        dest = Path(work_dir) if work_dir is not None else default_extract_dir(path, Path(data_dir))
        unpack_zip(path, dest, limits or ExtractLimits(), cached=work_dir is None)
        return folder(dest)
    if _looks_like_path(text):
        raise DatasetError(f"dataset path {text} does not exist; {NAMES_HINT}.")
    raise DatasetError(f"unknown dataset {text!r}; {NAMES_HINT}.")


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith((".", "~")) or Path(text).suffix != ""


def default_extract_dir(zip_path: Path, data_dir: Path) -> Path:
    digest = hashlib.sha1()
    try:
        with open(zip_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DatasetError(f"dataset zip {zip_path} cannot be read ({exc.strerror}).") from None
    return data_dir / "extracted" / digest.hexdigest()[:12]


def unpack_zip(zip_path: Path, dest: Path, limits: ExtractLimits, cached: bool) -> None:
    """Unpack a zip into ``dest``.

    When ``cached`` (``dest`` is named by the zip's hash) an existing ``dest`` is reused; a new
    one is unpacked beside it and renamed into place, so an interrupted or concurrent unpack
    never leaves a half-filled folder that looks complete.
    """
    if not cached:
        safe_extract_zip(zip_path, dest, limits)
    elif not dest.is_dir():
        staging = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        safe_extract_zip(zip_path, staging, limits)
        try:
            staging.rename(dest)
        except OSError:  # another process finished the same zip first
            shutil.rmtree(staging, ignore_errors=True)
