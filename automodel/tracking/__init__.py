"""Experiment trackers: a run's records mirrored, as they are written, to where ML people compare runs.

One interface (:class:`Tracker`) and small back ends (MLflow, in :mod:`.mlflow_tracker`). The store
stays the search's only memory: a tracker is told about records after they are stored, may be
behind or down, and is brought up to date from the records when a run resumes.
:class:`BackgroundTracker` runs a back end in its own thread, so that a slow or unreachable
tracker never slows or stops a search.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from automodel.errors import first_line

Record = Mapping[str, Any]  # a run, candidate or generation record (automodel.store.records), read only


class Tracker(Protocol):
    """What a search tells a tracker. Every method may be called again for a record already sent
    (a resume replays the records): a back end logs each thing once."""

    def start(self, run: Record, individuals: Sequence[Record], generations: Sequence[Record]) -> dict: ...
    def candidate(self, record: Record) -> None: ...
    def generation(self, record: Record) -> None: ...
    def finish(self, run: Record, run_dir: Path) -> None: ...


class BackgroundTracker:
    """A back end driven from a queue by one thread: the search only enqueues. When the run cannot
    be opened (``start`` fails) nothing more is sent; the next resume tries again. The first failure is
    reported once through ``report`` (later ones are counted); ``close`` waits a bounded time for
    the queue to drain and says what was not logged."""

    def __init__(self, make_backend: Callable[[], Tracker], report: Callable[[str], None], name: str = "tracker"):
        self.make_backend, self.report, self.name = make_backend, report, name
        self.backend: Tracker | None = None  # made in the thread: importing a tracker's client takes seconds
        self.errors = 0
        self.first_error: str | None = None
        self.where: dict[str, Any] = {}  # what the back end says about where the run is logged
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._drain, name=f"automodel-{name}", daemon=True)
        self._thread.start()

    def start(self, run: Record, individuals: Sequence[Record], generations: Sequence[Record]) -> None:
        self._queue.put(("start", (run, individuals, generations)))

    def candidate(self, record: Record) -> None:
        self._queue.put(("candidate", (record,)))

    def generation(self, record: Record) -> None:
        self._queue.put(("generation", (record,)))

    def finish(self, run: Record, run_dir: Path) -> None:
        self._queue.put(("finish", (run, run_dir)))

    def close(self, timeout_s: float = 60.0) -> bool:
        """Wait up to ``timeout_s`` for everything queued to be logged; True when it was."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._fail(
                f"{self.name} did not finish logging within {timeout_s:g} s; the rest was not logged "
                f"(the run's records are complete)"
            )
            return False
        return True

    def _drain(self) -> None:
        started = False
        while True:
            item = self._queue.get()
            if item is None:
                return
            method, args = item
            if method != "start" and not started:
                continue  # nothing can be logged where the run could not be opened
            try:
                if method == "start":
                    self.backend = self.make_backend()
                result = getattr(self.backend, method)(*args)
            except Exception as exc:  # a tracker's failure is never the search's
                self._fail(
                    f"{self.name} logging failed ({type(exc).__name__}: {first_line(exc, 300)}); the search goes "
                    f"on without it"
                )
                continue
            if method == "start":
                started, self.where = True, dict(result or {})

    def _fail(self, text: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = text
            self.report(text)
