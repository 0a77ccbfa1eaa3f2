"""``python -m automodel`` as a real process, for the tests that need one (one definition)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_thread_env(**extra: str) -> dict[str, str]:
    """The environment for a search process: one torch thread, so that processes running side by side on a
    small machine do not slow each other down many times over."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """Run ``automodel ARGS`` to its end; with ``check`` a failure is an AssertionError with its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "automodel", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or one_thread_env(),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"automodel {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result


def spawn_cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """Start ``automodel ARGS`` and return at once, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "automodel", *args],
        cwd=ROOT,
        env=env or one_thread_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def process_state(pid: int) -> tuple[str, int] | None:
    """``(state, parent pid)`` of a process from ``/proc``; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def live_processes(matches: Callable[[bytes], bool]) -> set[int]:
    """Live (not zombie) processes on this machine whose command line ``matches``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state = process_state(int(entry.name))
        if state is not None and state[0] != "Z" and matches(cmdline):
            found.add(int(entry.name))
    return found
