"""``python -m automodel`` as a real process, for the tests that need one (one definition)."""

from __future__ import annotations

import os
import subprocess
import sys
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
