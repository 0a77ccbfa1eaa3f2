"""The search as a process: start, stop and watch it, liveness by heartbeat (``jobs``), and the
final training of a chosen candidate in its own process (``finalize``)."""
