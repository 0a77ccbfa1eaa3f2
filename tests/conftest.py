"""Fixtures shared by the test modules (no test module imports another).

- ``db``: a fresh database path, also handed to the page through ``AUTOMODEL_DB``;
- ``launched``: the page's search launches recorded instead of started;
- ``new_page``: a factory of Streamlit AppTest page sessions, already run once;
- ``wait_for``: bounded polling, ``wait_for(condition, timeout_s, what)`` returns the first truthy value.

``processes.py`` runs ``python -m automodel`` as a real process (``run_cli``, ``spawn_cli``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from automodel.process import jobs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "db" / "automodel.json"
    monkeypatch.setenv("AUTOMODEL_DB", str(path))
    return path


@pytest.fixture
def launched(monkeypatch) -> list[list[str]]:
    """Record search launches instead of starting processes."""
    calls: list[list[str]] = []

    class FakeProcess:
        pid = 2**22 + 17  # not a live process; never signalled

        def poll(self):
            return None

    def fake_launch(cmd, log_path, cwd=None):
        calls.append(list(cmd))
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        return FakeProcess()

    monkeypatch.setattr(jobs, "launch", fake_launch)
    return calls


@pytest.fixture
def new_page() -> Callable:
    from streamlit.testing.v1 import AppTest

    def make():
        return AppTest.from_file(str(REPO / "app.py"), default_timeout=30).run()

    return make


def _wait_for(condition: Callable, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def wait_for() -> Callable:
    return _wait_for
