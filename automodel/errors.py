"""Every error a person can cause, in one torch-free module.

Each carries one sentence that names what was wrong and what is accepted; the command line prints
it (exit code 2) and the page shows it, both without a traceback. Catching :class:`UserFacingError`
catches all of them.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's first line of text, at most ``limit`` characters; its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def no_run_message(run_id: str, db: object) -> str:
    """The sentence for a run ID that is not in the store ``db``."""
    return f"no run {run_id!r} in {db}; `automodel list` shows the runs there."


class UserFacingError(Exception):
    """Base of the errors whose message is one sentence for a person."""


class ConfigError(UserFacingError, ValueError):
    """A setting a person gave is not acceptable."""


class DatasetError(UserFacingError, ValueError):
    """A dataset cannot be loaded: a missing path, a refused archive, no readable images."""


class StoreError(UserFacingError, RuntimeError):
    """The database cannot be used (a corrupt file, an unwritable folder)."""


class RunActiveError(StoreError):
    """Another run is still active, so a new one may not start."""

    def __init__(self, message: str, run_id: str):
        super().__init__(message)
        self.run_id = run_id


class CheckpointError(UserFacingError, ValueError):
    """A model file cannot be used."""


class FinalizeError(UserFacingError, ValueError):
    """A candidate cannot be finalized (unknown key, not fully trained, its training failed)."""


class ImageInputError(UserFacingError, ValueError):
    """An uploaded file is not an image the model can take."""
