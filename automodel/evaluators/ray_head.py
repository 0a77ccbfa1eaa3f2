"""The helper process that runs a private Ray instance for one search (``--backend ray`` without
``--ray-address``); see ``automodel.evaluators.ray_cluster``'s notes on the local instance.

    python -m automodel.evaluators.ray_head PARENT_PID OPTIONS_JSON

It starts Ray with the options, prints ``AUTOMODEL-RAY-HEAD {"address": …}`` on one line, and shuts
Ray down when its standard input closes, when it gets SIGTERM, SIGINT or SIGHUP, or when its parent
(the search) is gone — on Linux even when the search is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

MARKER = "AUTOMODEL-RAY-HEAD "


def main(argv: list[str]) -> int:
    parent, options = int(argv[0]), json.loads(argv[1])
    try:  # Linux: end with the search even if it is SIGKILLed
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        return 0
    # Set from signal handlers and a thread: a plain list, never a lock (a handler that waits for a
    # lock its own thread holds would hang for ever).
    ending: list = []

    def wait_for_eof() -> None:  # the search closes our stdin (or dies) when the run ends
        try:
            sys.stdin.buffer.read()
        finally:
            ending.append("eof")

    threading.Thread(target=wait_for_eof, daemon=True).start()
    import ray

    ray.init(**options)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: ending.append(signum))
    print(
        MARKER
        + json.dumps({"address": ray.get_runtime_context().gcs_address, "auth_mode": os.environ.get("RAY_AUTH_MODE")}),
        flush=True,
    )
    while not ending and os.getppid() == parent:
        time.sleep(0.2)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
