"""A folder's scan → one :class:`ImageData`, each image decoded once, in parallel, straight into the
split it belongs to.

- **Memory**: the decoded set's size is known from the headers before any pixel is decoded; a set
  that would not fit in the memory that is free is refused then, with one sentence naming the size
  it needs and the setting to lower. Every image is written into one preallocated array ordered
  training, validation, test, whose slices are the splits: the peak is about the decoded set's
  size, not the two or three copies that stacking and splitting make.
- **Speed**: threads (PIL releases the GIL while it decodes and resizes); JPEGs decoded at a
  reduced scale when that still covers the size asked for.
- **Progress**: ``on_progress(done, total)`` about every half second.
- **Cache**: with a ``cache_dir`` (a run's folder) the decoded tensors are kept there, so a resume
  reads them instead of decoding again; any change to the files (names, sizes, times) or to the
  settings that shape them decodes again (:mod:`.cache`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from automodel.data import cache
from automodel.data.folders import AUTO_MAX_SIDE, NAMES_KEPT, FolderScan, Header, image_files, scan_folder
from automodel.data.images import decode, to_channels
from automodel.data.splits import ImageData, from_split_order, split_order
from automodel.errors import DatasetError

MEMORY_SHARE = 0.6  # of the memory that is free, the most the decoded set may take (training needs the rest)
PROGRESS_EVERY_S = 0.5

Progress = Callable[[int, int], None]


def load_folder(
    root: Path,
    name: str,
    *,
    val_fraction: float,
    seed: int,
    image_size: int | None = None,
    max_side: int = AUTO_MAX_SIDE,
    cache_dir: Path | None = None,
    on_progress: Progress | None = None,
    free_bytes: int | None = None,
) -> ImageData:
    """Load an image folder (see :mod:`.folders` for what is read and how), from ``cache_dir`` when
    it holds this folder decoded with these settings."""
    settings = {"image_size": image_size, "max_side": max_side, "val_fraction": val_fraction, "seed": seed}
    key = cache.signature(image_files(root), settings) if cache_dir is not None else None
    if cache_dir is not None and key is not None:
        cached = cache.load(cache_dir, key)
        if cached is not None:
            return cached
    scan = scan_folder(root, name)
    data = decode_scan(
        scan,
        name,
        val_fraction=val_fraction,
        seed=seed,
        image_size=image_size,
        max_side=max_side,
        on_progress=on_progress,
        free_bytes=free_bytes,
    )
    if cache_dir is not None and key is not None:
        cache.save(cache_dir, key, data)
    return data


def decode_scan(
    scan: FolderScan,
    name: str,
    *,
    val_fraction: float,
    seed: int,
    image_size: int | None = None,
    max_side: int = AUTO_MAX_SIDE,
    on_progress: Progress | None = None,
    free_bytes: int | None = None,
    threads: int | None = None,
) -> ImageData:
    """Decode every image of ``scan`` into its split."""
    headers = scan.headers
    w, h = scan.size(image_size, max_side)
    channels = scan.channels()
    early: dict[int, tuple[np.ndarray, bool] | None] = {}
    if channels is None:
        # Only palette images could hold colour: they tell once decoded (and are kept, not decoded twice).
        early = {i: decode(hd.path, (w, h)) for i, hd in enumerate(headers) if hd.palette}
        channels = 3 if any(r is not None and r[1] for r in early.values()) else 1
    _check_memory(name, len(headers), channels, (w, h), image_size, free_bytes)
    classes = scan.classes
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[hd.label] for hd in headers], dtype=torch.int64)
    is_test = torch.tensor([hd.is_test for hd in headers], dtype=torch.bool)
    order, n_train, n_val = _order(labels, is_test, val_fraction, seed)
    slot = np.empty(len(headers), dtype=np.int64)
    slot[order.numpy()] = np.arange(len(headers))
    x = np.empty((len(headers), channels, h, w), dtype=np.uint8)

    def work(i: int) -> bool:
        result = early[i] if i in early else decode(headers[i].path, (w, h))
        if result is None:
            return False
        if channels == 3:
            x[slot[i]] = result[0].transpose(2, 0, 1)  # one strided copy, straight into the split
        else:
            x[slot[i]] = to_channels(result[0], 1)
        return True

    decoded = np.ones(len(headers), dtype=bool)
    reported = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads or min(16, os.cpu_count() or 1)) as pool:
        for i, ok in enumerate(pool.map(work, range(len(headers)))):
            decoded[i] = ok
            if on_progress is not None and time.monotonic() - reported >= PROGRESS_EVERY_S:
                on_progress(i + 1, len(headers))
                reported = time.monotonic()
    if on_progress is not None:
        on_progress(len(headers), len(headers))
    skipped = [hd.path for hd, ok in zip(headers, decoded) if not ok]
    counts = {
        "skipped": len(scan.skipped) + len(skipped),
        "skipped_names": [p.name for p in (scan.skipped + skipped)[:NAMES_KEPT]],
        "ignored": scan.ignored,
        "ignored_names": scan.ignored_names[:NAMES_KEPT],
    }
    tensor_x, tensor_y = torch.from_numpy(x), labels[order]
    if not skipped:
        return from_split_order(name, tensor_x, tensor_y, n_train, n_val, classes, **counts)
    return _without_failures(name, headers, decoded, tensor_x, slot, val_fraction, seed, counts)


def _order(
    labels: torch.Tensor, is_test: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, int, int]:
    """``split_order`` over headers listed training images first, then test images."""
    n_source = int((~is_test).sum())
    return split_order(labels[:n_source], labels[n_source:], val_fraction, seed)


def _without_failures(
    name: str,
    headers: list[Header],
    decoded: np.ndarray,
    x: torch.Tensor,
    slot: np.ndarray,
    val_fraction: float,
    seed: int,
    counts: dict,
) -> ImageData:
    """Images whose header read but whose pixels did not (truncated files) are left out, and the
    splits made again over the rest: a class whose images all failed is not a class."""
    good = np.flatnonzero(decoded)
    kept = [headers[i] for i in good]
    classes = sorted({hd.label for hd in kept if not hd.is_test})
    if len(classes) < 2:
        raise DatasetError(
            f"dataset {name} needs at least two class folders with readable images; found {len(classes)}."
        )
    extra = sorted({hd.label for hd in kept if hd.is_test} - set(classes))
    if extra:
        raise DatasetError(
            f"dataset {name} has test classes without training images ({', '.join(extra)}); "
            "every test class folder needs a training class folder of the same name."
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[hd.label] for hd in kept], dtype=torch.int64)
    is_test = torch.tensor([hd.is_test for hd in kept], dtype=torch.bool)
    order, n_train, n_val = _order(labels, is_test, val_fraction, seed)
    rows = torch.from_numpy(slot[good])[order]
    return from_split_order(name, x[rows], labels[order], n_train, n_val, classes, **counts)


def free_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_memory(
    name: str, n: int, channels: int, size: tuple[int, int], image_size: int | None, free_bytes: int | None
) -> None:
    free = free_bytes if free_bytes is not None else free_memory()
    needed = n * channels * size[0] * size[1]
    if free is None or needed <= MEMORY_SHARE * free:
        return
    setting = f"now {image_size}" if image_size is not None else f"now auto, {max(size)}"
    raise DatasetError(
        f"dataset {name} would take {_gib(needed)} in memory ({n:,} images of {channels}×{size[1]}×"
        f"{size[0]}) but only {_gib(free)} is free; lower the image size (--image-size, "
        f"{setting}) or train on fewer images."
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
