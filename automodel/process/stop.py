"""A stop request, as a search or a finalization sees it: SIGTERM or Ctrl-C (set in the main
thread), or a stop flag in the store (polled at most once a ``poll_every_s``)."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

from automodel.store import Store


@dataclass
class StopSignal:
    """Callable: True once a stop was asked. ``store`` None: signals only."""

    store: Store | None = None
    run_id: str = ""
    poll_every_s: float = 1.0

    def __post_init__(self) -> None:
        # A plain flag, not a threading.Event: set() runs in a signal handler, and an Event's
        # internal lock could already be held by the interrupted main thread (a deadlock).
        self._stopped = False
        self._last_poll = 0.0

    def set(self) -> None:
        self._stopped = True

    def install(self) -> StopSignal:
        """SIGTERM and SIGINT set this flag from now on (only the main thread can install handlers)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.set())
        return self

    def __call__(self) -> bool:
        if self._stopped or self.store is None:
            return self._stopped
        now = time.monotonic()
        if now - self._last_poll >= self.poll_every_s:
            self._last_poll = now
            if self.store.stop_requested(self.run_id):
                self._stopped = True
        return self._stopped
