"""A run's candidate records as CSV, for spreadsheets and pandas (``export --format csv``, the page's
download, ``Run.records()``). The standard library's csv writer: exporting needs neither pandas nor
the page's chart code."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

COLUMNS = (
    "run_id", "generation", "index", "key", "summary", "fitness", "status", "reason", "params", "macs",
    "latency_ms", "seconds", "epochs", "trained_epochs", "train_loss", "parent", "inherited", "cached",
    "recorded_at", "genome",
)  # fmt: skip


def records_csv(records: Iterable[Mapping[str, Any]]) -> bytes:
    """The candidate records as CSV (the genome as a JSON column), generation from 0; a missing value
    is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in records:
        genome = json.dumps(r.get("genome"), sort_keys=True, separators=(",", ":"))
        writer.writerow([genome if c == "genome" else r.get(c) for c in COLUMNS])
    return buffer.getvalue().encode("utf-8")
