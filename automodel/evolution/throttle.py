"""Rate limits for progress reports: training reports many batches a second, the store and the
page want a few records a second."""

from __future__ import annotations

import time


class Throttle:
    """``ready(key)`` is true at most once every ``every_s`` per key (always with ``force``)."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last: dict[object, float] = {}

    def ready(self, key: object = None, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self._last.get(key, -float("inf")) >= self.every_s:
            self._last[key] = now
            return True
        return False

    def forget(self, key: object = None) -> bool:
        """Drop a key (a finished candidate); true if it had reported."""
        return self._last.pop(key, None) is not None
