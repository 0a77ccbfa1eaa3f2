"""Files written whole or not at all, and locks between processes: the one place for both.

A file that readers poll (the database, a model checkpoint, an ONNX export) is written to a
temporary file in the same folder, flushed to disk and renamed over the old one, so a reader, a
crash or a full disk never sees half of it. Locks are the ``filelock`` package's OS-level locks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


@contextmanager
def replacing(path: str | Path, *, suffix: str = ".tmp", mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path``: write it inside the block; when the block ends without an
    error it is flushed to disk and renamed over ``path`` (else removed, and ``path`` is untouched).
    ``mode``: the new file's permissions (default: the old file's, or rw-r--r--)."""
    path = Path(path)
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o644
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_atomically(path: str | Path, data: bytes, *, mode: int | None = None) -> Path:
    """``path`` holds exactly ``data`` afterwards, or is unchanged if anything failed."""
    with replacing(path, mode=mode) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def fsync_folder(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable; best effort where directories can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def process_lock(path: str | Path) -> FileLock:
    """An exclusive lock shared by every process that opens ``path``; re-entrant within a thread.
    The lock file is never deleted (deleting it would let two processes hold "the" lock)."""
    return FileLock(str(path), preserve_lock_file=True)
