"""Labels, colours and number formats the page shows: statuses, badges, durations, run labels, the runs table."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from automodel.store.records import CandidateStatus

CANDIDATE_STATUSES = tuple(CandidateStatus)
# pruned: stopped early on purpose, with its partial score; partial: waiting for the rest of its rung
NOT_FAILED = ("ok", "partial", "pruned", "stopped")
STATUS_COLORS = {
    "ok": "#4e79a7",  # blue
    "partial": "#a0cbe8",  # light blue: trained to a lower rung, its generation not yet ranked
    "pruned": "#76b7b2",  # teal: successive halving (or pruning) stopped it early; its partial score is kept
    "stalled": "#ff9da7",  # pink: its loss did not fall below guessing
    "oom": "#e15759",  # red: out of memory
    "nan": "#b07aa1",  # purple: loss became NaN
    "timeout": "#f28e2b",  # orange: time limit
    "too_large": "#9c755f",  # brown: over the parameter limit
    "too_slow": "#d4a6c8",  # mauve: over the latency limit
    "stopped": "#edc948",  # yellow: the run was stopped while it trained
    "error": "#333333",  # near black: anything else
}
STATUS_TEXT = {
    "ok": "✓ ok",
    "partial": "… partial",
    "pruned": "✂ pruned",
    "stalled": "✗ not learning",
    "oom": "✗ out of memory",
    "nan": "✗ NaN loss",
    "timeout": "✗ time limit",
    "too_large": "✗ too large",
    "too_slow": "✗ too slow",
    "stopped": "■ stopped",
    "error": "✗ error",
}
STAT_COLORS = {"best": "#1a9850", "mean": "#555555", "worst": "#bbbbbb"}
RUN_BADGES = {
    "running": ("blue", "running"),
    "stopping": ("orange", "stopping"),
    "stopped": ("gray", "stopped"),
    "completed": ("green", "completed"),
    "failed": ("red", "failed"),
    "interrupted": ("orange", "interrupted"),
    "starting": ("blue", "starting"),
}
RESUMABLE = ("stopped", "interrupted", "failed")


def gen_label(generation: int) -> int:
    """Stored generation (from 0) → the number people see (from 1)."""
    return int(generation) + 1


def fmt_duration(seconds: float | None) -> str:
    """``75`` → ``1:15``; ``3725`` → ``1:02:05``; None or nonsense → ``—``."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return "—"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def sentence(text: str) -> str:
    """``text`` with its first letter upper-cased, to show a reason recorded in lower case."""
    return text[:1].upper() + text[1:]


def fmt_fitness(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def run_label(run: Mapping[str, Any]) -> str:
    """One line naming a run in pickers: its id and dataset.

    Nothing that changes while the run goes on: a browser keeps showing the label a picker had
    when its option was chosen, so status and progress are shown beside the picker instead.
    """
    dataset = dataset_name((run.get("config") or {}).get("dataset"))
    return f"{run['run_id']} · {dataset}"


def runs_table(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Every run, newest first: status, dataset, progress, best validation and test accuracy."""
    columns = ["Run", "Status", "Dataset", "Generations", "Candidates", "Best validation", "Test", "Started", "Took"]
    rows = []
    for run in reversed(list(runs)):
        config = run.get("config") or {}
        total = run.get("total_generations") or config.get("generations") or 0
        started = run.get("started_at") or run.get("created_at")
        rows.append(
            {
                "Run": run["run_id"],
                "Status": run.get("status", "?"),
                "Dataset": dataset_name(config.get("dataset")),
                "Generations": f"{run.get('generations_done', 0)}/{total}",
                "Candidates": int(run.get("evaluated") or 0),
                "Best validation": run.get("best_fitness"),
                "Test": run.get("test_accuracy"),
                "Started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else "",
                "Took": fmt_duration(run.get("elapsed_s")) if run.get("elapsed_s") else "",
            }
        )
    return pd.DataFrame.from_records(rows, columns=columns)


def dataset_name(dataset: Any) -> str:
    text = str(dataset or "?")
    if "/" in text:  # a folder or an extracted upload: the last part or two say enough
        parts = [p for p in text.replace("\\", "/").split("/") if p]
        if parts and parts[-1] == "upload" and len(parts) >= 2:
            return "uploaded zip"
        return "…/" + "/".join(parts[-2:]) if len(parts) > 2 else text
    return text
