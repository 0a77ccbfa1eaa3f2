"""The population, failures and layer tables; captions of the dataset and the folder preview."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from automodel.page.views.charts import MAX_CHART_POINTS
from automodel.page.views.labels import NOT_FAILED, STATUS_TEXT

INDIVIDUAL_COLUMNS = [
    "generation",
    "index",
    "summary",
    "fitness",
    "status",
    "reason",
    "params",
    "macs",
    "seconds",
    "epochs",
    "train_loss",
    "cached",
    "key",
    "parent",
    "inherited",
    "node",
]


def individuals_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """All candidates of a run as one frame, plus the display generation ``gen``."""
    frame = pd.DataFrame.from_records(
        [{c: r.get(c) for c in INDIVIDUAL_COLUMNS} for r in records], columns=INDIVIDUAL_COLUMNS
    )
    if frame.empty:
        frame["gen"] = pd.Series(dtype="int64")
        return frame
    frame["fitness"] = pd.to_numeric(frame["fitness"], errors="coerce").fillna(0.0)
    frame["params"] = pd.to_numeric(frame["params"], errors="coerce").fillna(0).astype("int64")
    frame["macs"] = pd.to_numeric(frame["macs"], errors="coerce").fillna(0).astype("int64")
    frame["epochs"] = pd.to_numeric(frame["epochs"], errors="coerce").fillna(0).astype("int64")
    frame["seconds"] = pd.to_numeric(frame["seconds"], errors="coerce").fillna(0.0)
    frame["status"] = frame["status"].fillna("error").astype(str)
    frame["reason"] = frame["reason"].fillna("").astype(str)
    frame["cached"] = frame["cached"].fillna(False).astype(bool)
    frame["gen"] = frame["generation"].astype("int64") + 1
    return frame


def population_table(frame: pd.DataFrame, generation: int | None = None) -> pd.DataFrame:
    """One generation's candidates for people: best first, with readable status words.

    ``generation`` is the stored number (from 0); None means the latest present.
    """
    columns = [
        "Candidate",
        "Fitness",
        "Epochs",
        "Status",
        "Architecture",
        "Parameters",
        "MMACs",
        "Seconds",
        "Started from",
        "Reason",
        "Reused",
    ]
    if "node" in frame and frame["node"].notna().any():
        columns.insert(columns.index("Seconds") + 1, "Node")  # a cluster run: where each trained
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if generation is None:
        generation = int(frame["generation"].max())
    rows = frame[frame["generation"] == generation]
    previous = frame[frame["generation"] == generation - 1]
    number_of = dict(zip(previous["key"], previous["index"].astype("int64") + 1))
    table = pd.DataFrame(
        {
            "Candidate": rows["index"].astype("int64") + 1,
            "Fitness": rows["fitness"],
            "Epochs": rows["epochs"],
            "Status": rows["status"].map(lambda s: STATUS_TEXT.get(s, s)),
            "Architecture": rows["summary"],
            "Parameters": rows["params"],
            "MMACs": (rows["macs"] / 1e6).round(2),
            "Seconds": rows["seconds"].round(2),
            "Started from": [started_from(r, number_of) for r in rows.to_dict("records")],
            "Reason": rows["reason"],
            "Reused": rows["cached"],
            "Node": rows["node"] if "node" in rows else None,
        },
        columns=columns,
    )
    # Candidates are compared at equal fidelity: those trained for more epochs first.
    return table.sort_values(["Epochs", "Fitness", "Candidate"], ascending=[False, False, True]).reset_index(drop=True)


def started_from(record: Mapping[str, Any], number_of: Mapping[str, int]) -> str:
    """Where a candidate's weights started: "fresh", or the share it inherited and from which of the
    previous generation's candidates (Lamarckian inheritance)."""
    parent, share = record.get("parent"), record.get("inherited")
    if not isinstance(parent, str) or share is None or share != share:  # missing, None or NaN
        return "fresh"
    where = f"candidate {number_of[parent]}" if parent in number_of else "its parent"
    return f"{share:.0%} from {where}"


def failures_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every candidate that did not train to the end, across the run."""
    columns = ["Generation", "Candidate", "Status", "Reason", "Architecture", "Parameters"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    bad = frame[~frame["status"].isin(NOT_FAILED)]
    return pd.DataFrame(
        {
            "Generation": bad["gen"],
            "Candidate": bad["index"].astype("int64") + 1,
            "Status": bad["status"].map(lambda s: STATUS_TEXT.get(s, s)),
            "Reason": bad["reason"],
            "Architecture": bad["summary"],
            "Parameters": bad["params"],
        }
    ).reset_index(drop=True)


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Candidates per status, e.g. {"ok": 38, "oom": 2}."""
    if frame.empty:
        return {}
    counts = frame["status"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def chart_caption(frame: pd.DataFrame) -> str:
    """What the chart shows, in words: how many candidates, pruned and failed (by cause)."""
    counts = status_counts(frame)
    pruned = counts.get("pruned", 0)
    failed = {k: v for k, v in counts.items() if k not in NOT_FAILED}
    text = f"{len(frame)} candidates evaluated"
    if len(frame) > MAX_CHART_POINTS:
        text += f" (the chart shows {MAX_CHART_POINTS:,} of them: each generation's best and worst, and an even sample)"
    if pruned:
        text += f" · {pruned} stopped early by successive halving or pruning"
    text += f" · {sum(failed.values())} failed"
    if failed:
        text += " (" + ", ".join(f"{v} {STATUS_TEXT.get(k, '✗ ' + k)[2:]}" for k, v in failed.items()) + ")"
    return text + (
        ". Each dot is one candidate (hover for its architecture); lines are each generation's best, mean and worst."
    )


def layer_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``automodel.training.model.layer_table`` rows → a table with a total row at the end."""
    frame = pd.DataFrame.from_records(
        [{"Layer": r["layer"], "Output shape": r["output_shape"], "Parameters": int(r["parameters"])} for r in rows],
        columns=["Layer", "Output shape", "Parameters"],
    )
    if not frame.empty:
        total = pd.DataFrame([{"Layer": "Total", "Output shape": "", "Parameters": int(frame["Parameters"].sum())}])
        frame = pd.concat([frame, total], ignore_index=True)
    return frame


def dataset_caption(run: Mapping[str, Any]) -> str:
    """ "10 classes · 1×8×8 · train 1222 / validation 216 / test 359", with skipped files."""
    if not run.get("input_shape"):
        return ""
    classes = run.get("classes") or []
    shown = ", ".join(map(str, classes[:10])) + (" …" if len(classes) > 10 else "")
    text = (
        f"{len(classes)} classes ({shown}) · images {'×'.join(map(str, run['input_shape']))} · "
        f"train {run.get('train_size', 0):,} / validation {run.get('val_size', 0):,} / "
        f"test {run.get('test_size', 0):,}"
    )
    data = run.get("data") or {}
    extra = []
    if run.get("skipped_images"):
        n = int(run["skipped_images"])
        extra.append(
            f"{n} image{' could' if n == 1 else 's could'} not be decoded and {'was' if n == 1 else 'were'} "
            f"skipped" + _named(data.get("skipped_names"))
        )
    if run.get("ignored_files"):
        n = int(run["ignored_files"])
        extra.append(
            f"{n} file{' that is not an image was' if n == 1 else 's that are not images were'} ignored"
            + _named(data.get("ignored_names"))
        )
    return text + ("; " + "; ".join(extra) if extra else "")


IMBALANCE_WARNING = 5.0  # the largest class this many times the smallest is worth a warning


def folder_preview(described: Mapping[str, Any]) -> tuple[str, str | None]:
    """What the form says about a folder before Start (from ``FolderScan.describe``): the caption,
    and a warning when one class is more than ``IMBALANCE_WARNING`` times another."""
    counts = described.get("classes") or {}
    w, h = described.get("image_size") or (0, 0)
    shown = ", ".join(f"{name} {n:,}" for name, n in list(counts.items())[:8]) + (" …" if len(counts) > 8 else "")
    parts = [
        f"{int(described.get('images') or 0):,} images in {len(counts)} classes ({shown})",
        f"trained at {w}×{h}, {described.get('channels', 3)} channel{'s' if described.get('channels', 3) != 1 else ''}",
        f"{fmt_bytes(described.get('bytes') or 0)} in memory",
    ]
    if described.get("skipped"):
        parts.append(f"{described['skipped']} unreadable, skipped" + _named(described.get("skipped_names")))
    if described.get("ignored"):
        parts.append(f"{described['ignored']} not images, ignored" + _named(described.get("ignored_names")))
    warning = None
    if counts and described.get("imbalance", 1.0) > IMBALANCE_WARNING:
        largest, smallest = max(counts, key=lambda c: counts[c]), min(counts, key=lambda c: counts[c])
        warning = (
            f"The classes are unbalanced: {largest} has {counts[largest]:,} images, {smallest} only "
            f"{counts[smallest]:,} ({described['imbalance']:.0f}×); accuracy will favour the large classes."
        )
    return " · ".join(parts), warning


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _named(names: Sequence[str] | None) -> str:
    return f" ({', '.join(names)}{', …' if len(names) >= 5 else ''})" if names else ""
