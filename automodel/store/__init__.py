"""The store: runs, generations, candidates and live progress in TinyDB files (``tinydb_store``),
written atomically under inter-process locks (``files``). Safe for one writer and many readers."""

from automodel.errors import RunActiveError, StoreError
from automodel.store.tinydb_store import ACTIVE_STATUSES, RUN_STATUSES, Store, default_db_path

__all__ = ["ACTIVE_STATUSES", "RUN_STATUSES", "RunActiveError", "Store", "StoreError", "default_db_path"]
