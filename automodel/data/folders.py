"""Image folders and zips of them → one :class:`ImageData`: which files are classes, which are
skipped or ignored, one size for all, every image decoded once (``images.read_image``: upright,
RGB or grey)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .archive import ExtractLimits, safe_extract_zip
from .images import IMAGE_EXTENSIONS, decode, upright_size
from .splits import ImageData, assemble, assemble_with_test_split

def load_folder(root: Path, name: str, val_fraction: float, seed: int, max_side: int) -> ImageData:
    """Load ``root/<class>/*`` (flat) or ``root/train/<class>/*`` + ``root/test/<class>/*`` (split).

    Decisions, so a person can predict the result:

    * A single top-level folder wrapping either layout (usual in zips) is looked through.
    * Classes are the sorted names of training class folders holding at least one readable
      image; a folder whose files all fail to decode is not a class. Images in sub-folders of
      a class folder belong to that class.
    * Flat layout: 20% of each class (rounded, fixed seed) becomes the test split; every class
      keeps at least one training image, so a class with a single image is in training only.
      Validation is carved the same way (``val_fraction``, seeded by ``seed``). When rounding
      leaves a split empty, one image of the largest class that can spare one goes to it.
    * Split layout: test classes must be a subset of the training classes. If ``test/`` is
      missing or holds no readable image, the test split is carved from ``train/`` as in the
      flat layout. Other top-level folders (``val/`` for instance) are not read; their files
      count as ignored.
    * If any image is colour all become RGB (transparency composited onto white), else all
      stay one-channel; all are resized to the most common size, capped at ``max_side``.
    """
    root = _unwrap(root)
    train_dir, test_dir = _split_dirs(root)
    ignored = 0
    if train_dir is None:
        train_files, ignored = _scan_classes(root)
        test_files: dict[str, list[Path]] = {}
    else:
        train_files, train_ignored = _scan_classes(train_dir)
        test_files, test_ignored = _scan_classes(test_dir) if test_dir else ({}, 0)
        ignored = train_ignored + test_ignored + _count_outside(root, {train_dir, test_dir})
    decoded = _decode_images(train_files, test_files, max_side, name)
    classes = sorted({label for _, label in decoded.train})
    if len(classes) < 2:
        raise DatasetError(f"dataset {name} needs at least two class folders with readable images; "
                           f"found {len(classes)} in {train_dir or root}.")
    extra = sorted({label for _, label in decoded.test} - set(classes))
    if extra:
        raise DatasetError(f"dataset {name} has test classes without training images ({', '.join(extra)}); "
                           "every test class folder needs a training class folder of the same name.")
    index = {c: i for i, c in enumerate(classes)}
    x, y = _stack(decoded.train, index, decoded.colour, decoded.size)
    if not decoded.test:
        return assemble_with_test_split(name, x, y, classes, val_fraction, seed, decoded.skipped, ignored)
    test_x, test_y = _stack(decoded.test, index, decoded.colour, decoded.size)
    return assemble(name, x, y, test_x, test_y, classes, val_fraction, seed, decoded.skipped, ignored)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _visible_children(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not _is_hidden(p.name))
    except OSError as exc:
        raise DatasetError(f"dataset folder {folder} cannot be read ({exc.strerror}).") from None


def _unwrap(root: Path) -> Path:
    """Look through single wrapper folders (``archive.zip → myphotos/cat/...``)."""
    for _ in range(3):
        children = _visible_children(root)
        if len(children) != 1 or not children[0].is_dir():
            break
        if not any(c.is_dir() for c in _visible_children(children[0])):
            break  # the only child is a class folder: a one-class dataset, reported later
        root = children[0]
    return root


def _split_dirs(root: Path) -> tuple[Path | None, Path | None]:
    """``root/train`` and ``root/test`` (any letter case) when ``train`` holds class folders."""
    dirs = {c.name.lower(): c for c in _visible_children(root) if c.is_dir()}
    train = dirs.get("train")
    if train is None or not any(c.is_dir() for c in _visible_children(train)):
        return None, None
    return train, dirs.get("test")


def _scan_classes(folder: Path) -> tuple[dict[str, list[Path]], int]:
    """Sorted image files under each class folder, and the count of files that are not images."""
    files: dict[str, list[Path]] = {}
    ignored = 0
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not _is_hidden(child.name):
            images, child_ignored = _walk_images(child)
            files.setdefault(_class_name(child.name), []).extend(images)
            ignored += child_ignored
        else:
            ignored += _count_files(child)
    return files, ignored


def _class_name(folder_name: str) -> str:
    """A folder name as printable text: undecodable bytes become U+FFFD, so class names can
    always be written to JSON and shown on the page."""
    return os.fsencode(folder_name).decode("utf-8", "replace")


def _walk_images(folder: Path) -> tuple[list[Path], int]:
    images, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for hidden in [d for d in dirnames if _is_hidden(d)]:
            ignored += _count_files(here / hidden)
            dirnames.remove(hidden)
        for fname in filenames:
            if not _is_hidden(fname) and Path(fname).suffix.lower() in IMAGE_EXTENSIONS:
                images.append(here / fname)
            else:
                ignored += 1
    return sorted(images), ignored


def _count_files(path: Path) -> int:
    if not path.is_dir():
        return 1
    return sum(len(files) for _, _, files in os.walk(path))


def _count_outside(root: Path, used: set[Path | None]) -> int:
    """Files in a split-layout root that are not under its train/ or test/ folders."""
    return sum(_count_files(c) for c in root.iterdir() if c not in used)


@dataclass
class _Header:
    path: Path
    label: str
    is_test: bool
    size: tuple[int, int]  # (W, H), as PIL gives it


@dataclass
class _DecodedImages:
    train: list[tuple[np.ndarray, str]]  # H×W×3 uint8 arrays with their class
    test: list[tuple[np.ndarray, str]]
    size: tuple[int, int]  # (W, H)
    colour: bool
    skipped: int


def _decode_images(train_files: dict[str, list[Path]], test_files: dict[str, list[Path]],
                   max_side: int, name: str) -> _DecodedImages:
    """Read headers to pick one size, then decode every image once, in a few threads.

    PIL releases the GIL while decoding, so threads speed up large folders.
    """
    headers, skipped = [], 0
    for is_test, files in ((False, train_files), (True, test_files)):
        for label, paths in files.items():
            for path in paths:
                size = upright_size(path)
                if size is None:
                    skipped += 1
                else:
                    headers.append(_Header(path, label, is_test, size))
    if not headers:
        raise DatasetError(f"dataset {name} has no readable images; give class folders of "
                           f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))} files.")
    size = _target_size([h.size for h in headers], max_side)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda h: decode(h.path, size), headers))
    out = _DecodedImages([], [], size, False, skipped)
    for header, result in zip(headers, results):
        if result is None:
            out.skipped += 1
            continue
        array, colour = result
        out.colour = out.colour or colour
        (out.test if header.is_test else out.train).append((array, header.label))
    return out



def _target_size(sizes: list[tuple[int, int]], max_side: int) -> tuple[int, int]:
    """The most common (W, H), scaled down (aspect kept) so its longer side is at most ``max_side``."""
    w, h = Counter(sizes).most_common(1)[0][0]
    longer = max(w, h)
    if longer > max_side:
        w, h = max(1, round(w * max_side / longer)), max(1, round(h * max_side / longer))
    return w, h



def _stack(images: list[tuple[np.ndarray, str]], index: dict[str, int], colour: bool,
           size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N×C×H×W uint8, N int64) with C = 3 when ``colour`` else 1."""
    w, h = size
    batch = np.stack([a for a, _ in images]) if images else np.empty((0, h, w, 3), np.uint8)
    batch = batch.transpose(0, 3, 1, 2) if colour else batch[:, None, :, :, 0]
    x = torch.from_numpy(np.ascontiguousarray(batch))
    y = torch.tensor([index[label] for _, label in images], dtype=torch.int64)
    return x, y



def default_extract_dir(zip_path: Path, data_dir: Path) -> Path:
    digest = hashlib.sha1()
    try:
        with open(zip_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DatasetError(f"dataset zip {zip_path} cannot be read ({exc.strerror}).") from None
    return data_dir / "extracted" / digest.hexdigest()[:12]


def load_zip(zip_path: Path, dest: Path, name: str, val_fraction: float, seed: int, max_side: int,
              limits: ExtractLimits, cached: bool) -> ImageData:
    """Unpack a zip into ``dest`` and load it as a folder.

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
    return load_folder(dest, name, val_fraction, seed, max_side)
