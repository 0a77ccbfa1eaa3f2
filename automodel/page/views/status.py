"""The status line of a run: what it is doing, how far, and how long it has left."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from automodel.page.views.form_model import NO_SEARCH, _no_search
from automodel.page.views.labels import RUN_BADGES, fmt_duration, gen_label
from automodel.store import ACTIVE_STATUSES


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
