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
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import re
import shutil
import struct
import warnings
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from .archive import ExtractLimits, safe_extract_zip
from .errors import DatasetError  # noqa: F401  (defined with the other errors, re-exported)

DATASET_NAMES = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
_ALIASES = {
    "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100",
    "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
}
_NAMES_HINT = "give digits, cifar10, cifar100, mnist, fashion-mnist, or a path to an image folder or .zip of one"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MAX_IMAGE_PIXELS = 40_000_000  # larger images are skipped as possible decompression bombs
TEST_FRACTION = 0.2  # for sources without their own test split (digits, flat folders)
TEST_SPLIT_SEED = 0  # fixed, so the test set does not move with the search seed

DIGITS_FILE = Path(__file__).resolve().parent.parent / "data" / "digits" / "digits.csv.gz"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass
class ImageData:
    """A whole dataset in memory: uint8 N×C×H×W images and int64 labels per split."""

    name: str
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    val_x: torch.Tensor = field(repr=False)
    val_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    skipped: int = 0
    ignored: int = 0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def is_builtin_dataset(source: str) -> bool:
    """Whether ``source`` names a built-in dataset (which wins over a folder of the same name)."""
    text = str(source).strip().lower()
    return _ALIASES.get(text, text) in DATASET_NAMES


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
        raise DatasetError(f"the dataset is empty; {_NAMES_HINT}.")
    key = _ALIASES.get(text.lower(), text.lower())
    if key in DATASET_NAMES:
        return _load_builtin(key, Path(data_dir), val_fraction, seed, download)
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, text, val_fraction, seed, max_side)
    if path.is_file():
        if path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
            raise DatasetError(f"dataset file {text} is not a .zip archive; give a folder of images or a .zip of one.")
        dest = Path(work_dir) if work_dir is not None else _default_extract_dir(path, Path(data_dir))
        return _load_zip(path, dest, text, val_fraction, seed, max_side, limits or ExtractLimits(),
                         cached=work_dir is None)
    if _looks_like_path(text):
        raise DatasetError(f"dataset path {text} does not exist; {_NAMES_HINT}.")
    raise DatasetError(f"unknown dataset {text!r}; {_NAMES_HINT}.")


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith((".", "~")) or Path(text).suffix != ""


# ----------------------------------------------------------------------------- splits and stats

def _stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, taken), taking ``fraction`` of every class, rounded.

    Each class keeps at least one index, so a class with a single example stays whole. When
    rounding would take nothing although ``fraction`` > 0, one index is taken from the largest
    class that can spare it, so a small dataset still gets a non-empty split. Deterministic
    for ``seed`` and ``labels``; uses a local generator, never global random state.
    """
    gen = torch.Generator().manual_seed(seed)
    groups, counts = [], []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        groups.append(idx[torch.randperm(len(idx), generator=gen)])
        counts.append(min(math.floor(len(idx) * fraction + 0.5), len(idx) - 1))
    if fraction > 0 and groups and sum(counts) == 0:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        counts[largest] = 1 if len(groups[largest]) > 1 else 0
    empty = torch.empty(0, dtype=torch.int64)
    kept = torch.cat([g[n:] for g, n in zip(groups, counts)] or [empty])
    taken = torch.cat([g[:n] for g, n in zip(groups, counts)] or [empty])
    return torch.sort(kept).values, torch.sort(taken).values


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], exact via a histogram.

    A 256-bin histogram avoids a float copy of the whole training set. Std is floored at 1e-3
    so normalising never divides by zero.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        var = float((counts * values ** 2).sum() / total) - mean ** 2
        means.append(mean)
        stds.append(max(math.sqrt(max(var, 0.0)), 1e-3))
    return tuple(means), tuple(stds)


def _assemble(name: str, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
              test_y: torch.Tensor, classes: list[str], val_fraction: float, seed: int,
              skipped: int = 0, ignored: int = 0) -> ImageData:
    """Carve the validation split from training data and package everything."""
    keep, val = _stratified_split(train_y, val_fraction, seed)
    tr_x = train_x[keep].contiguous()
    mean, std = _channel_stats(tr_x)
    return ImageData(name=name, train_x=tr_x, train_y=train_y[keep].contiguous(),
                     val_x=train_x[val].contiguous(), val_y=train_y[val].contiguous(),
                     test_x=test_x.contiguous(), test_y=test_y.contiguous(), classes=classes,
                     mean=mean, std=std, skipped=skipped, ignored=ignored)


def _assemble_with_test_split(name: str, x: torch.Tensor, y: torch.Tensor, classes: list[str],
                              val_fraction: float, seed: int, skipped: int = 0, ignored: int = 0) -> ImageData:
    """For sources without a test split: a fixed-seed stratified test split, then validation."""
    train_idx, test_idx = _stratified_split(y, TEST_FRACTION, TEST_SPLIT_SEED)
    return _assemble(name, x[train_idx], y[train_idx], x[test_idx], y[test_idx], classes,
                     val_fraction, seed, skipped, ignored)


# ----------------------------------------------------------------------------- built-in datasets

def _load_builtin(name: str, data_dir: Path, val_fraction: float, seed: int, download: bool) -> ImageData:
    if name == "digits":
        return _load_digits(val_fraction, seed)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, data_dir, val_fraction, seed, download)
    return _load_mnist_like(name, data_dir, val_fraction, seed, download)


def _load_digits(val_fraction: float, seed: int) -> ImageData:
    """The bundled 8×8 digits: 64 values 0..16 then the label, one image per line."""
    try:
        table = np.loadtxt(DIGITS_FILE, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"the bundled digits file {DIGITS_FILE} cannot be read ({exc}).") from None
    pixels = np.rint(table[:, :64] * 255 / 16).astype(np.uint8).reshape(-1, 1, 8, 8)
    x = torch.from_numpy(np.ascontiguousarray(pixels))
    y = torch.from_numpy(table[:, 64].copy())
    return _assemble_with_test_split("digits", x, y, [str(d) for d in range(10)], val_fraction, seed)


_CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)],
                    test="test_batch", meta="batches.meta", labels=b"labels", names=b"label_names",
                    torchvision="CIFAR10"),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test="test", meta="meta",
                     labels=b"fine_labels", names=b"fine_label_names", torchvision="CIFAR100"),
}


def _load_cifar(name: str, data_dir: Path, val_fraction: float, seed: int, download: bool) -> ImageData:
    """CIFAR-10/100 from the python-pickle batches torchvision and the authors publish."""
    spec = _CIFAR[name]
    folder = data_dir / spec["folder"]
    files = [*spec["train"], spec["test"], spec["meta"]]
    _ensure_files(name, data_dir, folder, files, download,
                  lambda: getattr(_torchvision_datasets(), spec["torchvision"])(root=str(data_dir), download=True))
    meta = _read_pickle(folder / spec["meta"])
    classes = _cifar_names(meta, spec["names"], folder / spec["meta"])
    batches = [_read_cifar_batch(folder / f, spec["labels"], len(classes)) for f in spec["train"]]
    train_x = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    train_y = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    test_x, test_y = (torch.from_numpy(a) for a in _read_cifar_batch(folder / spec["test"], spec["labels"], len(classes)))
    return _assemble(name, train_x, train_y, test_x, test_y, classes, val_fraction, seed)


def _cifar_names(meta: Any, key: bytes, path: Path) -> list[str]:
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise DatasetError(f"CIFAR metadata file {path} has no {key.decode()} list; replace it with the original file.")
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def _read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch → (N×3×32×32 uint8, N int64). Rows are 1024 red, 1024 green, 1024 blue values."""
    batch = _read_pickle(path)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(label_key) if isinstance(batch, dict) else None
    if data is None or labels is None:
        raise DatasetError(f"CIFAR file {path} lacks the data or {label_key.decode()} entry; replace it with the original file.")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if (data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],)
            or (labels.size and (labels.min() < 0 or labels.max() >= num_classes))):
        raise DatasetError(f"CIFAR file {path} does not hold N×3072 uint8 images with matching labels; "
                           "replace it with the original file.")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle can otherwise run any code,
    and these files may have been placed by hand from anywhere."""

    _ALLOWED = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str) -> Any:
        module = re.sub(r"^numpy\.core\b", "numpy._core", module)  # pickles from numpy < 2
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="bytes").load()
    except (OSError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            pickle.UnpicklingError) as exc:
        raise DatasetError(f"file {path} is not a readable CIFAR python pickle ({exc}); "
                           "replace it with the original file.") from None


_MNIST = {
    "mnist": ("MNIST", [str(d) for d in range(10)]),
    "fashion-mnist": ("FashionMNIST", list(FASHION_CLASSES)),
}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _load_mnist_like(name: str, data_dir: Path, val_fraction: float, seed: int, download: bool) -> ImageData:
    """MNIST / Fashion-MNIST from IDX files (plain or .gz) in torchvision's ``<Name>/raw`` layout."""
    tv_name, classes = _MNIST[name]
    folder = data_dir / tv_name / "raw"
    _ensure_files(name, data_dir, folder, list(_IDX_FILES), download,
                  lambda: getattr(_torchvision_datasets(), tv_name)(root=str(data_dir), download=True),
                  gz_ok=True)
    train_x, train_y, test_x, test_y = (_read_idx(_idx_path(folder, f)) for f in _IDX_FILES)
    for x, y in ((train_x, train_y), (test_x, test_y)):
        if len(x) != len(y) or (len(y) and int(y.max()) >= len(classes)):
            raise DatasetError(f"{name} files in {folder} disagree on image and label counts or hold labels "
                               "outside 0..9; replace them with the original files.")
    to_images = lambda a: torch.from_numpy(np.ascontiguousarray(a[:, None]))  # noqa: E731
    to_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return _assemble(name, to_images(train_x), to_labels(train_y), to_images(test_x), to_labels(test_y),
                     classes, val_fraction, seed)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file: big-endian magic 2051 (images, N×rows×cols) or 2049 (labels, N)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            raw = bytearray(fh.read())  # writable, so tensors can share it without a copy
        magic, count = struct.unpack_from(">II", raw, 0)
        if magic == 2051:
            rows, cols = struct.unpack_from(">II", raw, 8)
            return np.frombuffer(raw, np.uint8, count * rows * cols, 16).reshape(count, rows, cols)
        if magic == 2049:
            return np.frombuffer(raw, np.uint8, count, 8)
    except (OSError, EOFError, ValueError, struct.error, zlib.error) as exc:
        raise DatasetError(f"file {path} is not a readable IDX file ({exc}); replace it with the original file.") from None
    raise DatasetError(f"file {path} is not an IDX image or label file (magic number {magic}); "
                       "replace it with the original file.")


def _torchvision_datasets() -> Any:
    """Imported on demand (looked up at call time, so tests can replace a dataset class)."""
    import torchvision.datasets
    return torchvision.datasets


def _ensure_files(name: str, data_dir: Path, folder: Path, files: list[str], download: bool,
                  fetch: Callable[[], Any], gz_ok: bool = False) -> None:
    """Make sure the dataset files are in ``folder``, downloading them when allowed.

    Whatever was downloaded is then read by this module's own parser, exactly as files placed
    by hand would be.
    """
    def missing() -> list[str]:
        return [f for f in files if not (folder / f).is_file() and not (gz_ok and (folder / f"{f}.gz").is_file())]

    if not missing():
        return
    if not download:
        raise DatasetError(f"{name} files are missing from {folder} ({', '.join(missing())}); "
                           "place them there by hand or allow downloading.")
    try:
        fetch()
    except Exception as exc:  # noqa: BLE001 - every download failure is told the same way
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120].rstrip(":")
        raise DatasetError(f"{name} could not be downloaded into {data_dir} ({reason}); "
                           f"the files can be placed in {folder} by hand.") from None
    if missing():
        raise DatasetError(f"{name} was downloaded into {data_dir} but {folder} still lacks "
                           f"{', '.join(missing())}; the files can be placed there by hand.")


# ----------------------------------------------------------------------------- image folders

def _load_folder(root: Path, name: str, val_fraction: float, seed: int, max_side: int) -> ImageData:
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
        return _assemble_with_test_split(name, x, y, classes, val_fraction, seed, decoded.skipped, ignored)
    test_x, test_y = _stack(decoded.test, index, decoded.colour, decoded.size)
    return _assemble(name, x, y, test_x, test_y, classes, val_fraction, seed, decoded.skipped, ignored)


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
                size = _read_size(path)
                if size is None:
                    skipped += 1
                else:
                    headers.append(_Header(path, label, is_test, size))
    if not headers:
        raise DatasetError(f"dataset {name} has no readable images; give class folders of "
                           f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))} files.")
    size = _target_size([h.size for h in headers], max_side)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda h: _decode(h.path, size), headers))
    out = _DecodedImages([], [], size, False, skipped)
    for header, result in zip(headers, results):
        if result is None:
            out.skipped += 1
            continue
        array, colour = result
        out.colour = out.colour or colour
        (out.test if header.is_test else out.train).append((array, header.label))
    return out


_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, MemoryError,
                  Image.DecompressionBombError, Image.DecompressionBombWarning)


def _read_size(path: Path) -> tuple[int, int] | None:
    """(W, H) from the file header only; None if unreadable or over ``MAX_IMAGE_PIXELS``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except _DECODE_ERRORS:
        return None
    return (w, h) if 0 < w * h <= MAX_IMAGE_PIXELS else None


def _target_size(sizes: list[tuple[int, int]], max_side: int) -> tuple[int, int]:
    """The most common (W, H), scaled down (aspect kept) so its longer side is at most ``max_side``."""
    w, h = Counter(sizes).most_common(1)[0][0]
    longer = max(w, h)
    if longer > max_side:
        w, h = max(1, round(w * max_side / longer)), max(1, round(h * max_side / longer))
    return w, h


def _decode(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, bool] | None:
    """Decode one image to an H×W×3 uint8 array at ``size`` (W, H) and whether it is colour.

    None when decoding fails (truncated, empty, corrupt). Only files whose header passed
    ``_read_size`` come here, so the pixel cap already holds.
    """
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft(im.mode, size)  # decode at a reduced scale when shrinking: much faster
            im.load()
            colour = _is_colour(im)
            rgb = _to_rgb(im)
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8), colour
    except _DECODE_ERRORS:
        return None


_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _is_colour(im: Image.Image) -> bool:
    """Colour by mode; a palette image is colour only if it uses non-grey colours."""
    if im.mode in _GRAY_MODES:
        return False
    if im.mode in ("P", "PA"):
        rgb = np.asarray(im.convert("RGB"))
        return not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
    return True


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode → RGB; transparency is composited onto white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and arr.max() > 255:  # 16-bit greys
            arr = arr * (255.0 / 65535.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def _stack(images: list[tuple[np.ndarray, str]], index: dict[str, int], colour: bool,
           size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N×C×H×W uint8, N int64) with C = 3 when ``colour`` else 1."""
    w, h = size
    batch = np.stack([a for a, _ in images]) if images else np.empty((0, h, w, 3), np.uint8)
    batch = batch.transpose(0, 3, 1, 2) if colour else batch[:, None, :, :, 0]
    x = torch.from_numpy(np.ascontiguousarray(batch))
    y = torch.tensor([index[label] for _, label in images], dtype=torch.int64)
    return x, y


# ----------------------------------------------------------------------------- zip archives

def _default_extract_dir(zip_path: Path, data_dir: Path) -> Path:
    digest = hashlib.sha1()
    try:
        with open(zip_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DatasetError(f"dataset zip {zip_path} cannot be read ({exc.strerror}).") from None
    return data_dir / "extracted" / digest.hexdigest()[:12]


def _load_zip(zip_path: Path, dest: Path, name: str, val_fraction: float, seed: int, max_side: int,
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
    return _load_folder(dest, name, val_fraction, seed, max_side)
