"""The built-in datasets: the bundled 8×8 digits, and CIFAR-10/100, MNIST and Fashion-MNIST read
from ``data_dir`` in their published file formats (downloaded with torchvision when absent, then
read by the parsers here exactly as files placed by hand would be)."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automodel.data.splits import ImageData, assemble, assemble_with_test_split
from automodel.errors import DatasetError

DATASET_NAMES = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
ALIASES = {
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
}
DIGITS_FILE = Path(__file__).resolve().parents[2] / "data" / "digits" / "digits.csv.gz"
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_builtin(name: str, data_dir: Path, val_fraction: float, seed: int, download: bool) -> ImageData:
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
    return assemble_with_test_split("digits", x, y, [str(d) for d in range(10)], val_fraction, seed)


@dataclass(frozen=True)
class _CifarFiles:
    """Where one CIFAR variant keeps its batches in the original Python release."""

    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    labels: bytes  # the label key inside each batch
    names: bytes  # the class-name key inside the meta file
    torchvision: str  # torchvision's class, for downloading


_CIFAR = {
    "cifar10": _CifarFiles(
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test="test_batch",
        meta="batches.meta",
        labels=b"labels",
        names=b"label_names",
        torchvision="CIFAR10",
    ),
    "cifar100": _CifarFiles(
        folder="cifar-100-python",
        train=("train",),
        test="test",
        meta="meta",
        labels=b"fine_labels",
        names=b"fine_label_names",
        torchvision="CIFAR100",
    ),
}


def _load_cifar(name: str, data_dir: Path, val_fraction: float, seed: int, download: bool) -> ImageData:
    """CIFAR-10/100 from the python-pickle batches torchvision and the authors publish."""
    spec = _CIFAR[name]
    folder = data_dir / spec.folder
    files = [*spec.train, spec.test, spec.meta]
    _ensure_files(
        name,
        data_dir,
        folder,
        files,
        download,
        lambda: getattr(_torchvision_datasets(), spec.torchvision)(root=str(data_dir), download=True),
    )
    meta = _read_pickle(folder / spec.meta)
    classes = _cifar_names(meta, spec.names, folder / spec.meta)
    batches = [_read_cifar_batch(folder / f, spec.labels, len(classes)) for f in spec.train]
    train_x = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    train_y = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    test_x, test_y = (torch.from_numpy(a) for a in _read_cifar_batch(folder / spec.test, spec.labels, len(classes)))
    return assemble(name, train_x, train_y, test_x, test_y, classes, val_fraction, seed)


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
        raise DatasetError(
            f"CIFAR file {path} lacks the data or {label_key.decode()} entry; replace it with the original file."
        )
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if (
        data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or labels.shape != (data.shape[0],)
        or (labels.size and (labels.min() < 0 or labels.max() >= num_classes))
    ):
        raise DatasetError(
            f"CIFAR file {path} does not hold N×3072 uint8 images with matching labels; "
            "replace it with the original file."
        )
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle can otherwise run any code,
    and these files may have been placed by hand from anywhere."""

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        module = re.sub(r"^numpy\.core\b", "numpy._core", module)  # pickles from numpy < 2
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="bytes").load()
    except (
        OSError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        pickle.UnpicklingError,
    ) as exc:
        raise DatasetError(
            f"file {path} is not a readable CIFAR python pickle ({exc}); replace it with the original file."
        ) from None


_MNIST = {
    "mnist": ("MNIST", [str(d) for d in range(10)]),
    "fashion-mnist": ("FashionMNIST", list(FASHION_CLASSES)),
}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _load_mnist_like(name: str, data_dir: Path, val_fraction: float, seed: int, download: bool) -> ImageData:
    """MNIST / Fashion-MNIST from IDX files (plain or .gz) in torchvision's ``<Name>/raw`` layout."""
    tv_name, classes = _MNIST[name]
    folder = data_dir / tv_name / "raw"
    _ensure_files(
        name,
        data_dir,
        folder,
        list(_IDX_FILES),
        download,
        lambda: getattr(_torchvision_datasets(), tv_name)(root=str(data_dir), download=True),
        gz_ok=True,
    )
    train_x, train_y, test_x, test_y = (read_idx(_idx_path(folder, f)) for f in _IDX_FILES)
    for x, y in ((train_x, train_y), (test_x, test_y)):
        if len(x) != len(y) or (len(y) and int(y.max()) >= len(classes)):
            raise DatasetError(
                f"{name} files in {folder} disagree on image and label counts or hold labels "
                "outside 0..9; replace them with the original files."
            )
    to_images = lambda a: torch.from_numpy(np.ascontiguousarray(a[:, None]))  # noqa: E731
    to_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return assemble(
        name, to_images(train_x), to_labels(train_y), to_images(test_x), to_labels(test_y), classes, val_fraction, seed
    )


def _idx_path(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{stem} is missing from {folder}; place it there (as is or gzipped) or allow downloading.")


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file: big-endian magic 2051 (images, N×rows×cols) or 2049 (labels, N)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            raw = bytearray(fh.read())  # writable, so tensors can share it without a copy
        magic, count = struct.unpack_from(">II", raw, 0)
        if magic == 2051:
            rows, cols = struct.unpack_from(">II", raw, 8)
            return np.frombuffer(raw, np.uint8, count * rows * cols, 16).reshape(count, rows, cols)
        if magic == 2049:
            return np.frombuffer(raw, np.uint8, count, 8)
    except (OSError, EOFError, ValueError, struct.error, zlib.error) as exc:
        raise DatasetError(
            f"file {path} is not a readable IDX file ({exc}); replace it with the original file."
        ) from None
    raise DatasetError(
        f"file {path} is not an IDX image or label file (magic number {magic}); replace it with the original file."
    )


def _torchvision_datasets() -> Any:
    """Imported on demand (looked up at call time, so tests can replace a dataset class)."""
    import torchvision.datasets

    return torchvision.datasets


def _ensure_files(
    name: str,
    data_dir: Path,
    folder: Path,
    files: list[str],
    download: bool,
    fetch: Callable[[], Any],
    gz_ok: bool = False,
) -> None:
    """Make sure the dataset files are in ``folder``, downloading them when allowed.

    Whatever was downloaded is then read by this module's own parser, exactly as files placed
    by hand would be.
    """

    def missing() -> list[str]:
        return [f for f in files if not (folder / f).is_file() and not (gz_ok and (folder / f"{f}.gz").is_file())]

    if not missing():
        return
    if not download:
        raise DatasetError(
            f"{name} files are missing from {folder} ({', '.join(missing())}); "
            "place them there by hand or allow downloading."
        )
    try:
        fetch()
    except Exception as exc:  # noqa: BLE001 - every download failure is told the same way
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120].rstrip(":")
        raise DatasetError(
            f"{name} could not be downloaded into {data_dir} ({reason}); the files can be placed in {folder} by hand."
        ) from None
    if missing():
        raise DatasetError(
            f"{name} was downloaded into {data_dir} but {folder} still lacks "
            f"{', '.join(missing())}; the files can be placed there by hand."
        )
