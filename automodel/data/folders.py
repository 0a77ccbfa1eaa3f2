"""What an image folder holds, before any pixel is decoded: its layout, its classes and their files,
the files that are skipped (unreadable) or ignored (not images), and each image's upright size and
mode from its header. :func:`scan_folder` is all the page needs to describe a folder before a
search starts (class counts, the size images will be trained at, the memory they will take);
:mod:`.decoding` turns a scan into tensors.

Decisions, so a person can predict the result:

* A single top-level folder wrapping either layout (usual in zips) is looked through.
* Flat layout ``root/<class>/*``, or split layout ``root/train/<class>/*`` + ``root/test/<class>/*``
  (``train`` and ``test`` in any letter case). In the split layout other top-level folders
  (``val/`` for instance) are not read; their files count as ignored.
* Classes are the sorted names of training class folders holding at least one readable image.
  Images in sub-folders of a class folder belong to that class. Hidden files and folders
  (``.DS_Store``, ``__MACOSX``) and files without an image extension are ignored.
* One size for all: the most common upright size, scaled (aspect kept) so that its longer side
  is ``image_size`` when one is given, else at most ``max_side`` (never enlarged).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from automodel.data.images import IMAGE_EXTENSIONS, is_grey_mode, read_header
from automodel.errors import DatasetError

AUTO_MAX_SIDE = 64  # the longer side folder images are scaled down to when no size is given
NAMES_KEPT = 5  # skipped and ignored files named in a scan's description


@dataclass(frozen=True)
class Header:
    """One readable image file: its class, split, upright (W, H) and PIL mode."""

    path: Path
    label: str
    is_test: bool
    size: tuple[int, int]
    mode: str

    @property
    def grey(self) -> bool:
        return is_grey_mode(self.mode)

    @property
    def palette(self) -> bool:
        return self.mode in ("P", "PA")


@dataclass
class FolderScan:
    """A folder's images by header only (``headers``: training images first, then test images)."""

    root: Path
    layout: str  # "flat" or "split"
    headers: list[Header]
    skipped: list[Path] = field(default_factory=list)  # image files whose header cannot be read
    ignored: int = 0
    ignored_names: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted({h.label for h in self.headers if not h.is_test})

    def class_counts(self) -> dict[str, int]:
        """Readable images per class, training and test together."""
        counts = Counter(h.label for h in self.headers)
        return {c: counts[c] for c in sorted(counts)}

    def imbalance(self) -> float:
        """The largest class's count over the smallest's (1.0 for a balanced folder)."""
        counts = [n for n in self.class_counts().values() if n]
        return max(counts) / min(counts) if counts else 1.0

    def size(self, image_size: int | None = None, max_side: int = AUTO_MAX_SIDE) -> tuple[int, int]:
        """The (W, H) every image is trained at."""
        return target_size([h.size for h in self.headers], image_size, max_side)

    def channels(self) -> int | None:
        """1 when every header's mode is grey, 3 when any is a colour mode, None when only palette
        images could hold colour (they tell once decoded)."""
        if all(h.grey for h in self.headers):
            return 1
        return None if all(h.grey or h.palette for h in self.headers) else 3

    def bytes_needed(self, image_size: int | None = None, max_side: int = AUTO_MAX_SIDE) -> int:
        """Bytes of the decoded uint8 tensors, all splits together."""
        w, h = self.size(image_size, max_side)
        return len(self.headers) * (self.channels() or 3) * w * h

    def describe(self, image_size: int | None = None, max_side: int = AUTO_MAX_SIDE) -> dict:
        """What a person should know before a search starts on this folder (JSON-ready)."""
        w, h = self.size(image_size, max_side)
        return {
            "layout": self.layout,
            "images": len(self.headers),
            "classes": self.class_counts(),
            "imbalance": round(self.imbalance(), 2),
            "image_size": [w, h],
            "channels": self.channels() or 3,
            "bytes": self.bytes_needed(image_size, max_side),
            "skipped": len(self.skipped),
            "skipped_names": [p.name for p in self.skipped[:NAMES_KEPT]],
            "ignored": self.ignored,
            "ignored_names": self.ignored_names[:NAMES_KEPT],
        }


def target_size(sizes: list[tuple[int, int]], image_size: int | None, max_side: int = AUTO_MAX_SIDE) -> tuple[int, int]:
    """The most common (W, H), scaled (aspect kept) so its longer side is ``image_size``, or when
    that is None, so its longer side is at most ``max_side``."""
    w, h = Counter(sizes).most_common(1)[0][0]
    longer = max(w, h)
    side = image_size if image_size is not None else min(longer, max_side)
    if side != longer:
        w, h = max(1, round(w * side / longer)), max(1, round(h * side / longer))
    return w, h


def scan_folder(root: Path, name: str, *, threads: int | None = None) -> FolderScan:
    """The folder's layout, files and headers (read in ``threads`` threads: they wait on the disk)."""
    root = _unwrap(root)
    train_dir, test_dir = _split_dirs(root)
    ignored: list[str] = []
    if train_dir is None:
        train_files = _scan_classes(root, ignored)
        test_files: dict[str, list[Path]] = {}
    else:
        train_files = _scan_classes(train_dir, ignored)
        test_files = _scan_classes(test_dir, ignored) if test_dir else {}
        _list_outside(root, {train_dir, test_dir}, ignored)
    entries = [
        (path, label, is_test)
        for is_test, files in ((False, train_files), (True, test_files))
        for label, paths in files.items()
        for path in paths
    ]
    with ThreadPoolExecutor(max_workers=threads or min(16, 2 * (os.cpu_count() or 1))) as pool:
        infos = list(pool.map(lambda entry: read_header(entry[0]), entries))
    headers, skipped = [], []
    for (path, label, is_test), info in zip(entries, infos):
        if info is None:
            skipped.append(path)
        else:
            headers.append(Header(path, label, is_test, info[0], info[1]))
    if not headers:
        raise DatasetError(
            f"dataset {name} has no readable images; give class folders of "
            f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))} files."
        )
    scan = FolderScan(root, "flat" if train_dir is None else "split", headers, skipped, len(ignored), ignored)
    if len(scan.classes) < 2:
        raise DatasetError(
            f"dataset {name} needs at least two class folders with readable images; "
            f"found {len(scan.classes)} in {train_dir or root}."
        )
    extra = sorted({h.label for h in headers if h.is_test} - set(scan.classes))
    if extra:
        raise DatasetError(
            f"dataset {name} has test classes without training images ({', '.join(extra)}); "
            "every test class folder needs a training class folder of the same name."
        )
    return scan


def image_files(root: Path) -> list[Path]:
    """Every file a scan of ``root`` would read, without reading any (for a cache's signature)."""
    root = _unwrap(root)
    train_dir, test_dir = _split_dirs(root)
    folders = [root] if train_dir is None else [d for d in (train_dir, test_dir) if d is not None]
    ignored: list[str] = []
    return [p for folder in folders for paths in _scan_classes(folder, ignored).values() for p in paths]


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


def _scan_classes(folder: Path, ignored: list[str]) -> dict[str, list[Path]]:
    """Sorted image files under each class folder; the names of files that are not images are
    added to ``ignored``."""
    files: dict[str, list[Path]] = {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not _is_hidden(child.name):
            files.setdefault(_class_name(child.name), []).extend(_walk_images(child, ignored))
        else:
            _list_files(child, ignored)
    return files


def _class_name(folder_name: str) -> str:
    """A folder name as printable text: undecodable bytes become U+FFFD, so class names can
    always be written to JSON and shown on the page."""
    return os.fsencode(folder_name).decode("utf-8", "replace")


def _walk_images(folder: Path, ignored: list[str]) -> list[Path]:
    images = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for hidden in [d for d in dirnames if _is_hidden(d)]:
            _list_files(here / hidden, ignored)
            dirnames.remove(hidden)
        for fname in filenames:
            if not _is_hidden(fname) and Path(fname).suffix.lower() in IMAGE_EXTENSIONS:
                images.append(here / fname)
            else:
                ignored.append(_class_name(fname))
    return sorted(images)


def _list_files(path: Path, ignored: list[str]) -> None:
    if not path.is_dir():
        ignored.append(_class_name(path.name))
        return
    for _, _, files in os.walk(path):
        ignored.extend(_class_name(f) for f in files)


def _list_outside(root: Path, used: set[Path | None], ignored: list[str]) -> None:
    """Files in a split-layout root that are not under its train/ or test/ folders."""
    for child in sorted(root.iterdir()):
        if child not in used:
            _list_files(child, ignored)
