"""Data shaping for the Streamlit page: tables, charts, status lines and form settings.

Everything here is plain Python, pandas and Altair, so it can be tested and timed without
Streamlit and without torch. ``app.py`` only lays these out. Generations are stored from 0;
the page shows them from 1 ("generation 1 of 5"), and this module does that shift in one place
(:func:`gen_label`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

import altair as alt
import pandas as pd

from automodel.config import Config, SearchSpace
from automodel.store import ACTIVE_STATUSES
from automodel.store.records import CandidateStatus

# ----------------------------------------------------------------------------- colours, labels

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


# ----------------------------------------------------------------------------- status line


@dataclass
class StatusView:
    """What the page's status area shows for one run."""

    state: str  # the run status, or "starting"
    badge: str  # Streamlit markdown badge
    headline: str  # one markdown line
    bars: list[tuple[float, str]] = field(default_factory=list)  # (fraction 0..1, text) progress bars
    note: str = ""  # reason / hint shown under the line
    note_kind: str = "info"  # info | warning | error | success

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATUSES or self.state == "starting"


def _badge(state: str) -> str:
    colour, text = RUN_BADGES.get(state, ("gray", state))
    return f":{colour}-badge[{text}]"


def run_elapsed(run: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds the search has run over all its sessions, counting the current one while active.

    The engine adds a session's time to ``elapsed_s`` when the session ends, so while a process
    runs, ``elapsed_s`` holds the earlier sessions and ``resumed_at`` the start of this one.
    """
    now = time.time() if now is None else now
    before = float(run.get("elapsed_s") or 0.0)
    since = run.get("resumed_at") or run.get("started_at")
    if run.get("status") in ACTIVE_STATUSES and run.get("pid") is not None and since:
        return before + max(0.0, now - float(since))
    return before or None


def estimate_eta(
    run: Mapping[str, Any],
    generations: Sequence[Mapping[str, Any]],
    progress: Sequence[Mapping[str, Any]],
    now: float | None = None,
) -> float | None:
    """Rough seconds left for the whole run, from the generations timed so far."""
    now = time.time() if now is None else now
    config = run.get("config") or {}
    total = int(run.get("total_generations") or config.get("generations") or 0)
    done = len(generations)
    timed = [float(g.get("seconds") or 0.0) for g in generations if g.get("trained")]
    if not timed:
        # Nothing timed yet: extrapolate from the running candidate, if there is one.
        live = [p for p in progress if not p.get("final") and p.get("eta_s") is not None]
        if not live:
            return None
        p = live[0]
        per_candidate = float(p.get("elapsed_s") or 0.0) + float(p.get("eta_s") or 0.0)
        population = int(p.get("population") or config.get("population") or 1)
        left_now = (population - int(p.get("index") or 0)) * per_candidate
        return left_now + max(0, total - 1) * population * per_candidate
    per_generation = statistics.fmean(timed)
    trained = [g for g in generations if g.get("trained")]
    per_candidate = statistics.fmean(float(g["seconds"]) / max(1, int(g["trained"])) for g in trained)
    epochs = max(1, int(config.get("epochs") or 1))
    final_s = per_candidate / epochs * int(config.get("final_epochs") or 0)
    if run.get("stage") == "final" or any(p.get("final") for p in progress):
        finals = [p for p in progress if p.get("final") and p.get("eta_s") is not None]
        return float(finals[0]["eta_s"]) if finals else final_s
    in_generation = 0.0
    if generations and run.get("status") in ACTIVE_STATUSES:
        last = max(float(g.get("recorded_at") or 0.0) for g in generations)
        since = max(last, float(run.get("resumed_at") or 0.0))
        in_generation = max(0.0, now - since) if since else 0.0
    left = max(0.0, (total - done) * per_generation - min(in_generation, per_generation))
    return left + final_s


def status_view(
    run: Mapping[str, Any],
    progress: Sequence[Mapping[str, Any]],
    generations: Sequence[Mapping[str, Any]],
    now: float | None = None,
    starting: bool = False,
) -> StatusView:
    """The status line for a run: state, generation g/G, candidate i/P, epoch, bars, times."""
    now = time.time() if now is None else now
    status = run.get("status") or "?"
    config = run.get("config") or {}
    total = int(run.get("total_generations") or config.get("generations") or 0)
    population = int(config.get("population") or 0)
    done = int(run.get("generations_done") or len(generations))
    device = run.get("device") or config.get("device") or "?"
    elapsed = run_elapsed(run, now)

    if starting and status not in ACTIVE_STATUSES:
        return StatusView(
            "starting",
            _badge("starting"),
            f"{_badge('starting')} Starting the search process for **{run['run_id']}**…",
            bars=[(0.0, "waiting for the search process")],
        )

    if status in ACTIVE_STATUSES:
        eta = estimate_eta(run, generations, progress, now)
        parts = [_badge(status), f"**{run['run_id']}**"]
        bars: list[tuple[float, str]] = []
        finals = [p for p in progress if p.get("final")]
        searching = [p for p in progress if not p.get("final")]
        loading = run.get("loading") or {}
        if run.get("pid") is None and not progress:  # claimed by Start or Resume, process not up yet
            parts.append("starting: loading the dataset")
        elif run.get("stage") == "data":
            done_images, all_images = int(loading.get("done") or 0), int(loading.get("total") or 0)
            if all_images:
                parts.append(f"loading the dataset: {done_images:,} of {all_images:,} images decoded")
                bars.append((_clip(done_images / all_images), f"decoding images: {done_images:,}/{all_images:,}"))
            else:
                parts.append("loading the dataset")
        elif (finals or run.get("stage") == "final") and _no_search(run):
            parts.append("training one plain CNN with the whole budget (too short to search)")
            for p in finals:
                bars.append(_batch_bar(p, prefix="final training"))
        elif finals or run.get("stage") == "final":
            parts.append(f"final training of the best architecture (searched {done}/{total} generations)")
            for p in finals:
                bars.append(_batch_bar(p, prefix="final training"))
        else:
            searching.sort(key=lambda p: (int(p.get("generation", 0)), int(p.get("index", 0))))
            current = searching[0] if searching else None
            generation = int(current["generation"]) if current else min(done, max(total - 1, 0))
            parts.append(f"generation {gen_label(generation)}/{total}")
            size = (current or {}).get("population") or population
            if len(searching) > 1:  # several candidates train at once (the Ray back end)
                indexes = ", ".join(str(int(p.get("index", 0)) + 1) for p in searching)
                parts.append(f"candidates {indexes} of {size} training")
            elif current:
                parts.append(f"candidate {int(current.get('index', 0)) + 1}/{size}")
                if current.get("epochs"):
                    parts.append(f"epoch {current.get('epoch', 0)}/{current['epochs']}")
            if total and population:
                finished = done * population + (int(current.get("index", 0)) if current else 0)
                bars.append((_clip(finished / (total * population)), f"search: {done} of {total} generations done"))
            for p in searching:
                label = f"candidate {int(p.get('index', 0)) + 1}" + (f" ({p['worker']})" if len(searching) > 1 else "")
                bars.append(_batch_bar(p, prefix=label))
        parts.append(f"elapsed {fmt_duration(elapsed)}")
        parts.append(f"ETA ≈ {fmt_duration(eta)}" if eta is not None else "ETA —")
        parts.append(str(device))
        note = (
            "Stopping: the current candidate is being abandoned; the run will be marked stopped."
            if status == "stopping"
            else ""
        )
        return StatusView(
            status,
            _badge(status),
            " ".join(parts[:2]) + " — " + " · ".join(parts[2:]),
            bars,
            note,
            "warning" if note else "info",
        )

    best, test = run.get("best_fitness"), run.get("test_accuracy")
    evaluated = int(run.get("evaluated") or 0)
    base = [_badge(status), f"**{run['run_id']}**"]
    facts = [NO_SEARCH] if _no_search(run) else [f"{done}/{total} generations", f"{evaluated} candidates"]
    if best is not None:
        facts.append(f"best validation {best:.4f}")
    if test is not None:
        facts.append(f"test {test:.4f}")
    if elapsed:
        facts.append(f"took {fmt_duration(elapsed)}")
    facts.append(str(device))
    headline = " ".join(base) + " — " + " · ".join(facts)
    reason = run.get("reason") or ""
    if status == "completed":
        return StatusView(status, _badge(status), headline, [(1.0, "search and final training done")], reason, "info")
    if status == "stopped":
        return StatusView(
            status,
            _badge(status),
            headline,
            [(_clip(done / total) if total else 0.0, f"stopped after {done} of {total} generations")],
            reason or "Stopped. **Resume** continues from the last recorded candidate.",
            "info",
        )
    if status == "interrupted":
        return StatusView(
            status,
            _badge(status),
            headline,
            [(_clip(done / total) if total else 0.0, f"interrupted after {done} of {total} generations")],
            f"Interrupted: {reason or 'the search process ended without recording a result'}. "
            "**Resume** continues from the last recorded candidate.",
            "warning",
        )
    if status == "failed":
        return StatusView(
            status,
            _badge(status),
            headline,
            [],
            f"Failed: {reason or 'the search process ended with an error'}.",
            "error",
        )
    return StatusView(status, _badge(status), headline, [], reason, "info")


def _batch_bar(p: Mapping[str, Any], prefix: str) -> tuple[float, str]:
    batches = int(p.get("batches") or 0)
    batch = int(p.get("batch") or 0)
    epochs = int(p.get("epochs") or 0)
    epoch = int(p.get("epoch") or 0)
    # Progress over all of this candidate's batches, so the bar does not restart every epoch.
    fraction = ((max(epoch - 1, 0) * batches + batch) / (epochs * batches)) if batches and epochs else 0.0
    text = f"{prefix} · epoch {epoch}/{epochs} · batch {batch}/{batches}"
    if p.get("loss") is not None and math.isfinite(float(p["loss"])):
        text += f" · loss {float(p['loss']):.3f}"
    if p.get("eta_s") is not None:
        text += f" · {fmt_duration(float(p['eta_s']))} left"
    return _clip(fraction), text


def _clip(x: float) -> float:
    return 0.0 if not math.isfinite(x) else min(1.0, max(0.0, x))


# ----------------------------------------------------------------------------- tables

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
        largest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
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


# ----------------------------------------------------------------------------- charts


def generations_long(generations: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Generation records → long rows (Generation, Statistic, Fitness) for line charts."""
    rows = [
        {"Generation": gen_label(g["generation"]), "Statistic": stat, "Fitness": float(g[stat])}
        for g in generations
        for stat in ("best", "mean", "worst")
        if g.get(stat) is not None
    ]
    return pd.DataFrame.from_records(rows, columns=["Generation", "Statistic", "Fitness"])


MAX_CHART_POINTS = 2_000  # a browser draws more points slowly; the lines keep every generation's statistics


def thin_points(
    frame: pd.DataFrame,
    limit: int = MAX_CHART_POINTS,
    by: str = "generation",
    value: str = "fitness",
    always: pd.Series | None = None,
) -> pd.DataFrame:
    """At most about ``limit`` rows for a chart: every group's (``by``) best and worst ``value``, the
    rows marked in ``always``, and an even sample of the rest (the same sample on every redraw)."""
    if len(frame) <= limit:
        return frame
    groups = frame.groupby(by)[value]
    keep = frame.index.isin(groups.idxmax()) | frame.index.isin(groups.idxmin())
    if always is not None:
        keep |= always.to_numpy(dtype=bool)
    rest = frame[~keep]
    room = max(0, limit - int(keep.sum()))
    step = max(1, -(-len(rest) // max(1, room)))
    return pd.concat([frame[keep], rest.iloc[::step]]).sort_index()


def candidate_points(frame: pd.DataFrame, population: int | None = None) -> pd.DataFrame:
    """One row per candidate, spread a little sideways within its generation so none hide."""
    columns = [
        "x",
        "Generation",
        "Candidate",
        "Fitness",
        "Status",
        "Architecture",
        "Parameters",
        "Seconds",
        "Reason",
        "Reused",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if len(frame) > MAX_CHART_POINTS:
        frame = thin_points(frame)
    size = max(int(population or 0), int(frame["index"].max()) + 1, 1)
    offset = (frame["index"].astype(float) + 0.5) / size * 0.5 - 0.25
    return pd.DataFrame(
        {
            "x": frame["gen"] + offset,
            "Generation": frame["gen"],
            "Candidate": frame["index"].astype("int64") + 1,
            "Fitness": frame["fitness"],
            "Status": frame["status"],
            "Architecture": frame["summary"],
            "Parameters": frame["params"],
            "Seconds": frame["seconds"],
            "Reason": frame["reason"],
            "Reused": frame["cached"],
        }
    )


def _x_axis(max_generation: int) -> alt.X:
    return alt.X(
        "x:Q",
        title="Generation",
        scale=alt.Scale(domain=[0.5, max(max_generation, 1) + 0.5], nice=False),
        axis=alt.Axis(
            tickMinStep=1,
            format="d",
            values=list(range(1, max(max_generation, 1) + 1)) if max_generation <= 30 else alt.Undefined,
        ),
    )


def fitness_chart(
    generations: Sequence[Mapping[str, Any]],
    frame: pd.DataFrame,
    total_generations: int | None = None,
    population: int | None = None,
    height: int = 340,
) -> alt.LayerChart:
    """Best / mean / worst validation accuracy per generation, with every candidate as a point."""
    lines = generations_long(generations).rename(columns={"Generation": "x"})
    points = candidate_points(frame, population)
    max_gen = max(
        [int(total_generations or 0)] + [int(v) for v in points["Generation"]] + [int(v) for v in lines["x"]] + [1]
    )
    y = alt.Y("Fitness:Q", title="Validation accuracy", scale=alt.Scale(zero=False, nice=True))
    # The legend lists the statuses present ("ok" always), in a fixed order with fixed colours.
    present = set(points["Status"]) | {"ok"}
    statuses = [s for s in CANDIDATE_STATUSES if s in present] + sorted(present - set(CANDIDATE_STATUSES))
    status_scale = alt.Scale(domain=statuses, range=[STATUS_COLORS.get(s, "#888888") for s in statuses])
    point_layer = (
        alt.Chart(points)
        .mark_circle(size=46, opacity=0.6)
        .encode(
            x=_x_axis(max_gen),
            y=y,
            color=alt.Color(
                "Status:N", scale=status_scale, title="Candidate", legend=alt.Legend(orient="right", symbolOpacity=0.8)
            ),
            tooltip=[
                alt.Tooltip("Generation:Q"),
                alt.Tooltip("Candidate:Q"),
                alt.Tooltip("Fitness:Q", format=".4f"),
                alt.Tooltip("Status:N"),
                alt.Tooltip("Architecture:N"),
                alt.Tooltip("Parameters:Q", format=","),
                alt.Tooltip("Seconds:Q", format=".1f"),
                alt.Tooltip("Reused:N"),
                alt.Tooltip("Reason:N"),
            ],
        )
    )
    stats = ["best", "mean", "worst"]
    line_layer = (
        alt.Chart(lines)
        .mark_line(point=alt.OverlayMarkDef(size=36, filled=True), strokeWidth=2.5)
        .encode(
            x=_x_axis(max_gen),
            y=y,
            color=alt.Color(
                "Statistic:N",
                scale=alt.Scale(domain=stats, range=[STAT_COLORS[s] for s in stats]),
                sort=stats,
                title="Per generation",
                legend=alt.Legend(orient="right", symbolType="stroke", symbolStrokeWidth=3),
            ),
            tooltip=[
                alt.Tooltip("x:Q", title="Generation"),
                alt.Tooltip("Statistic:N"),
                alt.Tooltip("Fitness:Q", format=".4f"),
            ],
        )
    )
    return alt.layer(point_layer, line_layer).resolve_scale(color="independent").properties(height=height)


COST_LABELS = {
    "params": ("params", "Parameters"),
    "macs": ("macs", "Multiply-accumulates per image"),
    "latency": ("latency_ms", "Latency per image (ms)"),
}


def pareto_frame(records: Iterable[Mapping[str, Any]], objectives: Sequence[str]) -> pd.DataFrame:
    """The fully trained candidates (one per genome) with their costs and whether they are on the
    run's Pareto front."""
    from automodel.evolution.pareto import pareto_front

    records = list(records)
    front = {r["key"] for r in pareto_front(records, objectives)}
    seen, rows = set(), []
    for r in records:
        if r.get("status") != "ok" or r.get("cached") or r["key"] in seen:
            continue
        seen.add(r["key"])
        rows.append(
            {
                "key": r["key"],
                "Accuracy": float(r["fitness"]),
                "params": r.get("params"),
                "macs": r.get("macs"),
                "latency_ms": r.get("latency_ms"),
                "Architecture": r.get("summary", ""),
                "Generation": gen_label(r["generation"]),
                "Candidate": int(r["index"]) + 1,
                "On the front": r["key"] in front,
            }
        )
    return pd.DataFrame.from_records(
        rows,
        columns=[
            "key",
            "Accuracy",
            "params",
            "macs",
            "latency_ms",
            "Architecture",
            "Generation",
            "Candidate",
            "On the front",
        ],
    )


def pareto_chart(frame: pd.DataFrame, cost: str, height: int = 320) -> alt.LayerChart:
    """Validation accuracy against a cost (log scale), every fully trained candidate a point, the
    Pareto front highlighted and joined as a staircase."""
    field, title = COST_LABELS[cost]
    data = frame[frame[field].notna() & (frame[field] > 0)] if not frame.empty else frame
    x = alt.X(f"{field}:Q", title=title, scale=alt.Scale(type="log"))
    y = alt.Y("Accuracy:Q", title="Validation accuracy", scale=alt.Scale(zero=False))
    tooltip = [
        alt.Tooltip("Architecture:N"),
        alt.Tooltip("Accuracy:Q", format=".4f"),
        alt.Tooltip("params:Q", title="Parameters", format=","),
        alt.Tooltip("macs:Q", title="MACs", format=","),
        alt.Tooltip("latency_ms:Q", title="ms", format=".3f"),
        alt.Tooltip("Generation:Q"),
        alt.Tooltip("Candidate:Q"),
        alt.Tooltip("key:N"),
    ]
    # Every member of the front is drawn; on large runs the others are thinned.
    shown = data if data.empty else thin_points(data, by="Generation", value="Accuracy", always=data["On the front"])
    points = (
        alt.Chart(shown)
        .mark_circle(size=70)
        .encode(
            x=x,
            y=y,
            tooltip=tooltip,
            color=alt.Color(
                "On the front:N",
                scale=alt.Scale(domain=[True, False], range=["#e15759", "#9db4cf"]),
                legend=alt.Legend(title="Pareto front", orient="right"),
            ),
            opacity=alt.condition("datum['On the front']", alt.value(1.0), alt.value(0.5)),
        )
    )
    front = data[data["On the front"]].sort_values(field) if not data.empty else data
    line = alt.Chart(front).mark_line(interpolate="step-after", color="#e15759", strokeWidth=2).encode(x=x, y=y)
    return alt.layer(line, points).properties(height=height)


def compare_frame(curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """{run label: generation records} → long rows (Run, Generation, Statistic, Fitness)."""
    frames = []
    for label, generations in curves.items():
        long = generations_long(generations)
        long = long[long["Statistic"].isin(["best", "mean"])]
        long.insert(0, "Run", label)
        frames.append(long)
    if not frames:
        return pd.DataFrame(columns=["Run", "Generation", "Statistic", "Fitness"])
    return pd.concat(frames, ignore_index=True)


def compare_chart(curves: Mapping[str, Sequence[Mapping[str, Any]]], height: int = 300) -> alt.Chart:
    """Best (solid) and mean (dashed) fitness per generation of several runs on one chart."""
    data = compare_frame(curves)
    return (
        alt.Chart(data)
        .mark_line(point=True, strokeWidth=2.2)
        .encode(
            x=alt.X("Generation:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("Fitness:Q", title="Validation accuracy", scale=alt.Scale(zero=False, nice=True)),
            color=alt.Color(
                "Run:N", scale=alt.Scale(scheme="tableau10"), legend=alt.Legend(orient="right", labelLimit=320)
            ),
            strokeDash=alt.StrokeDash(
                "Statistic:N", scale=alt.Scale(domain=["best", "mean"], range=[[1, 0], [5, 4]]), legend=None
            ),  # the page says "solid: best, dashed: mean" beneath
            tooltip=["Run:N", "Generation:Q", "Statistic:N", alt.Tooltip("Fitness:Q", format=".4f")],
        )
        .properties(height=height)
    )


# ----------------------------------------------------------------------------- the form

DATASET_CHOICES = {
    "Digits (bundled, offline)": "digits",
    "CIFAR-10": "cifar10",
    "CIFAR-100": "cifar100",
    "MNIST": "mnist",
    "Fashion-MNIST": "fashion-mnist",
    "Image folder on this server": None,
    "Upload a .zip of an image folder": None,
}
FOLDER_CHOICE = "Image folder on this server"
UPLOAD_CHOICE = "Upload a .zip of an image folder"

# Settings the form edits, by Config field (the search space lives under "space"): every field but
# the dataset (chosen with its own widgets) and compile (a GPU setting for the config file).
FORM_FIELDS = tuple(f.name for f in dataclass_fields(Config) if f.name not in ("dataset", "space", "compile"))
SPACE_FIELDS = tuple(f for f in SearchSpace.__dataclass_fields__)

PRESETS: dict[str, dict[str, Any]] = {
    # Bundled data on the CPU: half a minute, planned from the budget.
    "Quick demo": {
        "dataset": "digits",
        "budget_s": 30.0,
        "overrides": [],
        "population": 8,
        "generations": 3,
        "epochs": 3,
        "min_epochs": 1,
        "final_epochs": 10,
        "device": "cpu",
        "batch_size": None,
    },
    # A folder or zip of a person's own images: ten minutes, planned from the budget.
    "Your own images": {
        "budget_s": 600.0,
        "overrides": [],
        "population": 8,
        "generations": 3,
        "epochs": 3,
        "min_epochs": 1,
        "reduction_factor": 3,
        "final_epochs": 15,
        "device": "auto",
        "batch_size": None,
    },
    # Sized for one GPU: 200 candidates with successive halving from 2 to 6 epochs, then 30 for the winner.
    # Global pooling heads learn slower in a few epochs, but pay off with the data and epochs here.
    "CIFAR-10": {
        "dataset": "cifar10",
        "budget_s": None,
        "overrides": [],
        "population": 10,
        "generations": 20,
        "epochs": 6,
        "min_epochs": 2,
        "reduction_factor": 3,
        "final_epochs": 30,
        "device": "auto",
        "batch_size": 256,
        "space": {"heads": ["flatten", "avgmax"]},
    },
}


# The page's answers to "How long may the search take?" (seconds; None: no budget, the settings as set).
BUDGET_CHOICES: dict[str, float | None] = {
    "30 seconds": 30.0,
    "1 minute": 60.0,
    "2 minutes": 120.0,
    "5 minutes": 300.0,
    "10 minutes": 600.0,
    "30 minutes": 1800.0,
    "1 hour": 3600.0,
    "2 hours": 7200.0,
    "4 hours": 14400.0,
    "8 hours": 28800.0,
    "no limit: the settings below": None,
}


def budget_choice_for(seconds: float | None) -> str:
    """The budget option that shows ``seconds`` (the nearest one for a value set elsewhere)."""
    if seconds is None:
        return next(label for label, value in BUDGET_CHOICES.items() if value is None)
    timed = {label: value for label, value in BUDGET_CHOICES.items() if value is not None}
    return min(timed, key=lambda label: abs(timed[label] - seconds))


NO_SEARCH = "no search: the budget was too short, so one plain CNN trained with all of it"


def _no_search(run: Mapping[str, Any]) -> bool:
    """Whether the run's budget made a direct plan (one network, no generations)."""
    return bool((run.get("plan") or {}).get("direct"))


def plan_caption(run: Mapping[str, Any]) -> str | None:
    """What a run's time budget became, for a person (None without a budget)."""
    plan = run.get("plan")
    if not plan:
        return None
    from automodel.evolution.budget import Plan, describe_duration

    text = f"Budget {Plan.from_dict(plan).summary()}"
    if run.get("elapsed_s") is not None and run.get("status") not in ACTIVE_STATUSES:
        text += f"; took {describe_duration(float(run['elapsed_s']))}"
    return text + "."


def preset_config(name: str) -> dict[str, Any]:
    """A full config dict (defaults + the preset's values, default search space)."""
    base = Config().to_dict()
    preset = dict(PRESETS[name])
    base["space"].update(preset.pop("space", {}))
    base.update(preset)
    return base


def dataset_choice_for(dataset: str) -> str:
    """The dataset selectbox option that shows ``dataset``."""
    for label, name in DATASET_CHOICES.items():
        if name == dataset:
            return label
    return FOLDER_CHOICE


def tracking_caption(run: Mapping[str, Any]) -> str | None:
    """Where the run is also logged (MLflow), how to see it there, and what failed, for the page."""
    tracking = run.get("tracking")
    if not tracking:
        return None
    where = f"MLflow experiment *{tracking.get('experiment')}* at `{tracking.get('uri')}`"
    text = f"Also logged to {where}; see it with `{tracking.get('ui')}`."
    if tracking.get("error"):
        text += f" {tracking['error']}."
    return text


def form_config(values: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Form values (keyed by Config field; search space under "space") → a Config dict to validate.

    Numbers arrive from number inputs as int or float already; whole floats for int fields are
    turned into ints so that validation judges the value, not its type.
    """
    template = Config()
    config: dict[str, Any] = {"dataset": dataset}
    for name in FORM_FIELDS:
        if name not in values:
            continue
        value = values[name]
        default = getattr(template, name)
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and isinstance(value, float)
            and value.is_integer()
        ):
            value = int(value)
        if name == "objectives":  # the form offers the costs; accuracy always comes first
            value = ["accuracy", *[v for v in (value or []) if v != "accuracy"]]
        if isinstance(value, str):
            value = value.strip()
            if not value and default is None:  # an empty optional text box means "not set"
                value = None
        config[name] = value
    space = dict(values.get("space") or {})
    config["space"] = {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in space.items()}
    if isinstance(space.get("learning_rates"), dict):
        config["space"]["learning_rates"] = {k: list(v) for k, v in space["learning_rates"].items()}
    return config


# ----------------------------------------------------------------------------- insight


def architecture_dot(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """``automodel.training.model.layer_table`` rows → a Graphviz DOT diagram: layers top to bottom with
    their output shapes and parameters; a residual block's skip is drawn as its own edge around it."""

    def esc(text: str) -> str:
        return str(text).replace("\\", "\\\\").replace('"', '\\"')

    lines = [
        "digraph architecture {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.25, '
        f'ranksep=0.25, label="{esc(title)}", labelloc=t];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, fillcolor="#eef3fa", '
        'color="#4e79a7"];',
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    colours = {"residual": "#fdebd3", "separable": "#e3f2e1", "plain": "#eef3fa"}
    for i, row in enumerate(rows):
        params = int(row.get("parameters") or 0)
        label = f"{row['layer']}\\n{row['output_shape']}" + (f" · {params:,} params" if params else "")
        fill = colours.get(row.get("kind"), "#f4f4f4" if i else "#ffffff")
        lines.append(f'  n{i} [label="{esc(label)}", fillcolor="{fill}"];')
        if i:
            lines.append(f"  n{i - 1} -> n{i};")
    for i, row in enumerate(rows):
        if row.get("skip") and i + 1 < len(rows):
            how = "skip (1×1 conv)" if "via 1×1" in str(row["layer"]) else "skip"
            lines.append(
                f'  n{i - 1} -> n{i + 1} [style=dashed, color="#f28e2b", label="{esc(how)}", '
                "fontsize=9, constraint=false];"
            )
    lines.append("}")
    return "\n".join(lines)


def learning_curves(records: Iterable[Mapping[str, Any]], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per epoch of each record with a learning curve: its label, epoch, validation accuracy and
    training loss (from the ``history`` every candidate records)."""
    rows = []
    for n, r in enumerate(records):
        label = labels[n] if labels else f"gen {gen_label(r['generation'])} · #{int(r['index']) + 1}"
        for point in r.get("history") or []:
            rows.append(
                {
                    "Candidate": label,
                    "Epoch": int(point["epoch"]),
                    "Validation accuracy": point.get("val_accuracy"),
                    "Training loss": point.get("train_loss"),
                }
            )
    return pd.DataFrame.from_records(rows, columns=["Candidate", "Epoch", "Validation accuracy", "Training loss"])


def learning_curve_charts(curves: pd.DataFrame, height: int = 200) -> tuple[alt.Chart, alt.Chart]:
    """Validation accuracy and training loss per epoch, one line per candidate (two charts)."""
    base = alt.Chart(curves).encode(
        x=alt.X("Epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("Candidate:N", legend=alt.Legend(orient="bottom", title=None)),
    )
    accuracy = (
        base.mark_line(point=True)
        .encode(
            y=alt.Y("Validation accuracy:Q", scale=alt.Scale(zero=False)),
            tooltip=["Candidate", "Epoch", alt.Tooltip("Validation accuracy:Q", format=".4f")],
        )
        .transform_filter("isValid(datum['Validation accuracy'])")
        .properties(height=height)
    )
    loss = (
        base.mark_line(point=True)
        .encode(
            y=alt.Y("Training loss:Q", scale=alt.Scale(zero=False)),
            tooltip=["Candidate", "Epoch", alt.Tooltip("Training loss:Q", format=".4f")],
        )
        .properties(height=height)
    )
    return accuracy, loss


GENES = {  # name → (label, how to read it from a genome dict)
    "blocks": ("Convolution blocks", lambda g: len(g.get("conv") or [])),
    "head": ("Head", lambda g: g.get("head", "flatten")),
    "optimizer": ("Optimizer", lambda g: g.get("optimizer")),
    "learning_rate": (
        "Learning rate (log₁₀, rounded to ½)",
        lambda g: round(2 * math.log10(g["learning_rate"])) / 2 if g.get("learning_rate") else None,
    ),
    "kind": ("Kind of the first block", lambda g: (g.get("conv") or [{}])[0].get("kind", "plain")),
    "residual_share": (
        "Share of residual blocks",
        lambda g: round(
            sum(b.get("kind") == "residual" for b in g.get("conv") or []) / max(1, len(g.get("conv") or [])), 1
        ),
    ),
    "downsamples": (
        "Downsampling blocks",
        lambda g: sum(b.get("downsample", b.get("pooling", "none")) != "none" for b in g.get("conv") or []),
    ),
    "widest": ("Widest block (filters)", lambda g: max([b.get("filters", 0) for b in g.get("conv") or []] or [0])),
    "kernel": ("Kernel of the first block", lambda g: (g.get("conv") or [{}])[0].get("kernel")),
    "dense_layers": ("Hidden dense layers", lambda g: len(g.get("dense") or [])),
    "dropout": ("Dropout", lambda g: g.get("dropout")),
}


def gene_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trained candidate (fully or in part): its fitness, epochs and every gene of GENES."""
    rows = []
    for r in records:
        if r.get("cached") or not r.get("genome") or r.get("status") not in ("ok", "pruned", "partial"):
            continue
        row = {
            "Fitness": float(r["fitness"]),
            "Epochs": int(r.get("epochs") or 0),
            "Generation": gen_label(r["generation"]),
            "Architecture": r.get("summary", ""),
        }
        for name, (_, read) in GENES.items():
            try:
                row[name] = read(r["genome"])
            except (KeyError, TypeError, ValueError):
                row[name] = None
        rows.append(row)
    return pd.DataFrame.from_records(rows, columns=["Fitness", "Epochs", "Generation", "Architecture", *GENES])


def gene_chart(frame: pd.DataFrame, gene: str, height: int = 260) -> alt.LayerChart:
    """Validation accuracy by the values of one gene: every candidate a point, the median a tick.
    Only candidates at the run's highest fidelity are compared (equal epochs)."""
    label = GENES[gene][0]
    data = frame[frame["Epochs"] == frame["Epochs"].max()] if not frame.empty else frame
    data = data.assign(Value=data[gene].astype(str)) if not data.empty else data.assign(Value=[])
    # The medians come from every candidate; the points drawn are thinned on large runs.
    medians = data.groupby("Value")["Fitness"].agg(["median", "count"]).reset_index()
    medians.columns = ["Value", "Median", "Candidates"]
    x = alt.X("Value:N", title=label, sort="ascending")
    # Only the columns drawn travel to the browser (the frame holds every gene).
    shown = thin_points(data, by="Value", value="Fitness")[["Value", "Fitness", "Architecture", "Generation"]]
    points = (
        alt.Chart(shown)
        .mark_circle(size=40, opacity=0.5, color="#4e79a7")
        .encode(
            x=x,
            y=alt.Y("Fitness:Q", title="Validation accuracy", scale=alt.Scale(zero=False)),
            xOffset=alt.XOffset("jitter:Q"),
            tooltip=["Architecture", alt.Tooltip("Fitness:Q", format=".4f"), "Generation"],
        )
        .transform_calculate(jitter="random()")
    )
    median = (
        alt.Chart(medians)
        .mark_tick(color="#e15759", thickness=3, size=28)
        .encode(x=x, y="Median:Q", tooltip=[alt.Tooltip("Median:Q", title="median", format=".4f"), "Candidates:Q"])
    )
    return alt.layer(points, median).properties(height=height)


def diversity_chart(generations: Sequence[Mapping[str, Any]], height: int = 160) -> alt.Chart:
    """The population's diversity (mean share of differing genes between two candidates) per generation."""
    frame = pd.DataFrame(
        [
            {"Generation": gen_label(g["generation"]), "Diversity": g.get("diversity")}
            for g in generations
            if g.get("diversity") is not None
        ],
        columns=["Generation", "Diversity"],
    )
    return (
        alt.Chart(frame)
        .mark_line(point=True, color="#59a14f")
        .encode(
            x=alt.X("Generation:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("Diversity:Q", scale=alt.Scale(domain=[0, 1])),
            tooltip=["Generation", alt.Tooltip("Diversity:Q", format=".2f")],
        )
        .properties(height=height)
    )


def per_class_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"Class": c["class"], "Accuracy": c["accuracy"], "Test images": c["count"]}
            for c in report.get("per_class", [])
        ],
        columns=["Class", "Accuracy", "Test images"],
    )


def confusion_chart(report: Mapping[str, Any], size: int = 360) -> alt.LayerChart:
    """The confusion matrix as a heatmap: true class down, predicted class across, counts written in."""
    classes = report["classes"]
    rows = [
        {"True": classes[i], "Predicted": classes[j], "Count": int(n), "Share": n / max(1, sum(report["confusion"][i]))}
        for i, row in enumerate(report["confusion"])
        for j, n in enumerate(row)
    ]
    frame = pd.DataFrame(rows, columns=["True", "Predicted", "Count", "Share"])
    base = alt.Chart(frame).encode(x=alt.X("Predicted:N", sort=classes), y=alt.Y("True:N", sort=classes))
    cells = base.mark_rect().encode(
        color=alt.Color(
            "Share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), legend=alt.Legend(title="Share of the row")
        ),
        tooltip=["True", "Predicted", "Count", alt.Tooltip("Share:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=10).encode(
        text="Count:Q", color=alt.condition("datum.Share > 0.5", alt.value("white"), alt.value("#333333"))
    )
    return alt.layer(cells, text).properties(width=size, height=size)
