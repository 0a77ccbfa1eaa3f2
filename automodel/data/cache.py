"""A decoded image folder kept in a run's folder, so that a resume does not decode it again.

The cache is one ``decoded.pt`` file (plain tensors and values, read with ``weights_only=True``)
named by a signature of every image file's path, size and modification time and of the settings
that shape the tensors. Any change to the files or the settings gives another signature, and the
folder is decoded again; an unreadable or foreign cache file is ignored the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from automodel.data.splits import ImageData
from automodel.store.files import replacing

CACHE_FILE = "decoded.pt"
FORMAT = 1  # raised whenever what decoding produces changes, so older caches are decoded again

_TENSORS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
_VALUES = ("name", "classes", "mean", "std", "skipped", "ignored", "skipped_names", "ignored_names")


def signature(files: list[Path], settings: dict) -> str | None:
    """A digest of the files (path, size, modification time) and the settings; None when a file
    cannot be looked at (then nothing is cached)."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, **settings}, sort_keys=True).encode())
    try:
        for path in files:
            st = os.stat(path)
            digest.update(f"{os.fsencode(path)!r}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()


def load(folder: Path, key: str) -> ImageData | None:
    """The cached data for ``key``, or None (no cache, another signature, or an unreadable file)."""
    path = Path(folder) / CACHE_FILE
    if not path.is_file():
        return None
    try:
        kept = torch.load(path, weights_only=True)
        if not isinstance(kept, dict) or kept.get("key") != key:
            return None
        values = dict(kept["values"])
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return ImageData(**{name: kept["tensors"][name] for name in _TENSORS}, **values)
    except Exception:  # noqa: BLE001 - a broken cache is decoded again, whatever broke it
        return None


def save(folder: Path, key: str, data: ImageData) -> None:
    """Keep ``data`` under ``key`` (written whole or not at all); a full disk only costs the cache."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with replacing(folder / CACHE_FILE) as tmp:
            torch.save(
                {
                    "key": key,
                    "tensors": {name: getattr(data, name) for name in _TENSORS},
                    "values": {name: getattr(data, name) for name in _VALUES},
                },
                tmp,
            )
    except OSError:
        pass
