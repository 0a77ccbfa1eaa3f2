"""Unpacking a .zip a person supplied, safely: nothing is written outside the destination, and zip
bombs, runaway archives, links and encrypted entries are refused with one sentence, before
anything is written where possible. Torch-free: the page unpacks uploads with it.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from automodel.errors import DatasetError

_RATIO_MIN_BYTES = 1 << 20  # smaller entries cannot bomb anything, whatever their ratio


@dataclass(frozen=True)
class ExtractLimits:
    """Guards for unpacking a zip a person supplied (zip bombs, runaway archives)."""

    max_total_bytes: int = 2 * 1024**3
    max_files: int = 200_000
    max_ratio: float = 200.0  # uncompressed / compressed size, per entry


def safe_extract_zip(zip_path: str | Path, dest: str | Path, limits: ExtractLimits | None = None) -> Path:
    """Unpack ``zip_path`` into ``dest`` and return ``dest``; never writes outside ``dest``.

    Every entry is checked before anything is written: absolute names, drive letters, ``..``
    parts, symbolic links and encrypted entries are refused, as are archives over the file
    count or total size of ``limits`` or with an entry compressed more than ``max_ratio``
    (zip bomb). While writing, the bytes actually produced are counted too, since headers can
    lie. Nested archives are written as plain files, never unpacked. On any refusal the
    files written so far are removed and ``DatasetError`` says why.
    """
    limits = limits or ExtractLimits()
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(
            f"{zip_path} is not a readable zip archive ({exc}); give a .zip of an image folder."
        ) from None
    with archive:
        plan = _plan_extraction(archive, zip_path, limits)
        _write_entries(archive, plan, zip_path, dest, limits)
    return dest


def _plan_extraction(
    archive: zipfile.ZipFile, zip_path: Path, limits: ExtractLimits
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Check every entry; return (entry, safe relative path parts) for those to write."""
    try:
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DatasetError(f"{zip_path} is a corrupt zip archive ({exc}); give a .zip of an image folder.") from None
    file_count = sum(1 for i in infos if not i.is_dir())
    if file_count > limits.max_files:
        raise DatasetError(f"{zip_path} holds {file_count} files, more than the limit of {limits.max_files}.")
    plan, total = [], 0
    for info in infos:
        parts = _safe_parts(info.filename, zip_path)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(
                f"{zip_path} contains a symbolic link ({info.filename}), which is refused; give a zip of plain files."
            )
        if info.flag_bits & 0x1:
            raise DatasetError(f"{zip_path} contains an encrypted entry ({info.filename}); give an unencrypted zip.")
        if not info.is_dir():
            total += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > _RATIO_MIN_BYTES and ratio > limits.max_ratio:
                raise DatasetError(
                    f"{zip_path} entry {info.filename} expands {ratio:.0f}-fold, more than the limit "
                    f"of {limits.max_ratio:g} (a possible zip bomb)."
                )
        if parts:
            plan.append((info, parts))
    if total > limits.max_total_bytes:
        raise DatasetError(
            f"{zip_path} would unpack to {total} bytes, more than the limit of {limits.max_total_bytes} bytes."
        )
    return plan


def _safe_parts(name: str, zip_path: Path) -> tuple[str, ...]:
    """The path parts of an entry name, refusing any that could point outside the destination."""
    norm = name.replace("\\", "/")  # Windows-made zips may use backslashes
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if "\x00" in name or norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in parts:
        raise DatasetError(
            f"{zip_path} contains an unsafe entry name {name!r} (absolute or with '..'); "
            "give a zip whose entries are relative paths."
        )
    return parts


def _write_entries(
    archive: zipfile.ZipFile,
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]],
    zip_path: Path,
    dest: Path,
    limits: ExtractLimits,
) -> None:
    created: list[Path] = []  # files and folders this call made, removed again on failure
    written = 0
    try:
        _make_dirs(dest, created)
        root = dest.resolve()
        for info, parts in plan:
            target = root.joinpath(*parts)
            folder = target if info.is_dir() else target.parent
            _make_dirs(folder, created)
            if not folder.resolve().is_relative_to(root):
                raise DatasetError(f"{zip_path} entry {info.filename} would be written outside {dest}.")
            if not info.is_dir():
                written = _copy_entry(archive, info, target, written, limits, zip_path, created)
    except BaseException as exc:
        _remove(created)
        if isinstance(exc, DatasetError):
            raise
        if isinstance(exc, (OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)):
            raise DatasetError(f"{zip_path} could not be unpacked into {dest} ({exc}).") from None
        raise


def _make_dirs(folder: Path, created: list[Path]) -> None:
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        p.mkdir()
        created.append(p)


def _copy_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    written: int,
    limits: ExtractLimits,
    zip_path: Path,
    created: list[Path],
) -> int:
    """Stream one entry to ``target``, counting real bytes; returns the running total."""
    entry_bytes = 0
    # O_NOFOLLOW: never write through a symbolic link that already sits at the target.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    created.append(target)
    with os.fdopen(fd, "wb") as out, archive.open(info) as src:
        while chunk := src.read(1 << 20):
            entry_bytes += len(chunk)
            written += len(chunk)
            if entry_bytes > info.file_size or written > limits.max_total_bytes:
                raise DatasetError(
                    f"{zip_path} unpacks to more bytes than its headers or the limit of "
                    f"{limits.max_total_bytes} bytes allow (a possible zip bomb)."
                )
            out.write(chunk)
    return written


def _remove(created: list[Path]) -> None:
    for path in reversed(created):
        try:
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError:
            pass
