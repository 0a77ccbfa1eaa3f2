"""A search planned from the time a person gives it: "5m", "1h".

The budget covers the whole run, from the moment the search starts (after the process has
imported its libraries) until the final model is saved, final training included. A plan is made
once, from the budget and two short timings, and recorded with the run, so that a resumed run keeps
it: generation 0's first genomes trained for a few steps side by side, two per worker, as the search
trains them (their mean is what a candidate costs), and the reference CNN trained as a final
training is, alone on all threads (two to three times a candidate's speed on one worker's share):

- ``FINAL_SHARE`` of the budget is kept for the final training, whose epochs follow from the
  timing (between 1 and ``MAX_FINAL_EPOCHS``);
- the rest is the search's: it buys a number of candidate-epochs (its seconds × workers ÷ the
  seconds of one epoch), which sets the epochs per candidate (9, with successive halving's rungs,
  once one generation of eight fits them; else 3), the population and the generations that fit;
- a budget too short for one generation of ``DIRECT_POPULATION`` candidates at nine epochs (with
  successive halving's rungs) is too short to search: candidates trained for one or three epochs
  are ranked little better than by drawing lots, and the short final training left after them
  loses to one plain CNN trained with all of the time (bench/RESULTS.md §11 and §12). Such a
  budget trains that network, :func:`~automodel.evolution.genome.reference_genome` (a ``direct`` plan);
- with ``batch_by_time`` the timing is made twice, at the automatic batch size and at batch 64; when
  64 trains more images a second the plan takes it, and a candidate gets as many more epochs (and a
  first rung as much longer) as make the same time as the automatic size's.

Settings a person gave (``Config.overrides``) are kept as given. While the run goes on the
timing is replaced by what candidates really cost: a generation is not started when the
generations so far say it would not end before the search's share is spent, one past the planned
generations is started when they say it would (the search's loop, ``Search._one_more_generation``);
after each generation the final's reserve is re-sized to its epochs at the best candidate's speed
(``Search._resize_search_share``), which moves the search's end; and the final training's epochs are
chosen again, just before it starts, from the time left and a timing of the best candidate itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from automodel.config import PLANNED  # noqa: F401  (the settings a plan sets)
from automodel.errors import ConfigError

FINAL_SHARE = 0.3  # of the budget, kept for the final training
MAX_FINAL_EPOCHS = 30
START_UP_S = 3.0  # the last records, the test report and the checkpoint
DEFAULT_BUDGET = "5m"  # the command line's budget when none of PLANNED and no budget is given
DIRECT_POPULATION = 8  # a search needs at least one generation of this many at nine epochs, else one network

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str | float | int) -> float:
    """``90``, ``90s``, ``5m``, ``1h``, ``1h30m`` → seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower().replace(" ", "")
        parts = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|min|m|sec|s)?)+)", value)
        pieces = re.findall(r"(\d+(?:\.\d+)?)(h|min|m|sec|s)?", value) if parts else []
        if not pieces or (len(pieces) > 1 and any(unit == "" for _, unit in pieces)):
            raise ConfigError(
                f"budget {text!r} is not a duration; give seconds or a number with s, m or h, "
                f"e.g. 90, 90s, 5m, 1h or 1h30m."
            )
        seconds = sum(float(number) * _UNITS[unit or "s"] for number, unit in pieces)
    if not math.isfinite(seconds) or seconds < 10:
        raise ConfigError(f"budget {text!r} is too short; give at least 10 seconds (e.g. 30s, 5m, 1h).")
    return seconds


def describe_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min" if seconds % 60 == 0 else f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Plan:
    """What a budget became. ``generations`` is what fits the estimate; the search ends sooner when
    the generations it has trained say the next one would not fit, and goes on past it while they
    say another would."""

    budget_s: float
    population: int
    generations: int
    epochs: int
    min_epochs: int
    final_epochs: int
    search_s: float  # seconds from the start by which the generations end
    final_s: float  # seconds kept for the final training
    epoch_s: float  # the timing: one epoch of the reference network on one worker
    final_epoch_s: float  # … and of the final training (train + validation, all threads)
    workers: int
    candidate_epochs: float  # what the search's share buys
    direct: bool = False  # too short to search: the whole budget trains the reference network
    batch_size: int | None = None  # a batch chosen by time (``batch_by_time``); None: the automatic size
    epoch_scale: float = 1.0  # its images a second over the automatic size's: epochs and rungs are scaled by it
    search_limit_s: float | None = None  # a search time a person set (``time_budget_s``): the share never passes it

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def summary(self) -> str:
        if self.direct:
            return (
                f"{describe_duration(self.budget_s)}: too short to search; one plain CNN trained for "
                f"{self.final_epochs} epochs" + (f" (batch {self.batch_size})" if self.batch_size else "")
            )
        return (
            f"{describe_duration(self.budget_s)}: {self.population} candidates × {self.generations} "
            f"generation{'s' if self.generations != 1 else ''} (more if they fit), {self.epochs} epoch"
            f"{'s' if self.epochs != 1 else ''} each at most, then {self.final_epochs} final epochs"
            + (f" (batch {self.batch_size})" if self.batch_size else "")
        )


def generation_epochs(population: int, fidelities: list[int], reduction_factor: int) -> int:
    """Candidate-epochs one generation trains under successive halving (all rungs)."""
    total, alive, done = 0, population, 0
    for rung in fidelities:
        total += alive * (rung - done)
        done, alive = rung, math.ceil(alive / reduction_factor)
    return total


def make_plan(
    budget_s: float,
    *,
    elapsed_s: float,
    epoch_s: float,
    final_epoch_s: float,
    workers: int,
    fidelities_for,
    reduction_factor: int,
    given: dict[str, int],
    batch_size: int | None = None,
    epoch_scale: float = 1.0,
) -> Plan:
    """The plan for ``budget_s`` seconds, ``elapsed_s`` of them already spent (loading the data).

    ``fidelities_for(epochs, min_epochs)`` gives the rungs the search would use; ``given`` holds the
    settings of PLANNED that the person set (kept as they are). ``batch_size`` is a batch chosen by
    time, ``epoch_scale`` times faster per image than the automatic size (``epoch_s`` and
    ``final_epoch_s`` timed at it): a candidate gets the epochs and rungs the automatic size's would
    get in the same time."""
    left = max(1.0, budget_s - elapsed_s - START_UP_S)
    final_epochs = given.get("final_epochs") or max(1, min(MAX_FINAL_EPOCHS, int(left * FINAL_SHARE / final_epoch_s)))
    final_s = final_epochs * final_epoch_s
    search_s = max(1.0, left - final_s)
    buys = search_s * workers / max(epoch_s, 1e-6)
    long, short = max(9, round(9 * epoch_scale)), max(3, round(3 * epoch_scale))
    # A batch chosen by time: its first rung takes the time of the automatic size's first.
    min_epochs = given.get("min_epochs") or (
        math.ceil(fidelities_for(9, 1)[0] * epoch_scale - 1e-9) if epoch_scale > 1 else 1
    )
    nine = generation_epochs(DIRECT_POPULATION, fidelities_for(long, min(min_epochs, long)), reduction_factor)
    if buys < nine and not set(given) & {"population", "generations", "epochs", "min_epochs"}:
        epochs_all = given.get("final_epochs") or max(1, min(MAX_FINAL_EPOCHS, int(left / final_epoch_s)))
        return Plan(
            budget_s=budget_s,
            population=2,
            generations=1,
            epochs=1,
            min_epochs=1,
            final_epochs=epochs_all,
            search_s=elapsed_s,
            final_s=epochs_all * final_epoch_s,
            epoch_s=epoch_s,
            final_epoch_s=final_epoch_s,
            workers=workers,
            candidate_epochs=buys,
            direct=True,
            batch_size=batch_size,
            epoch_scale=epoch_scale,
        )
    # Nine epochs a candidate: a rung that pauses a long schedule ranks better than a short training of
    # the same cost, and the survivors' later rungs rank nearly as a full training does (bench/RESULTS.md
    # §12). Three only when a person's settings leave no room for nine.
    epochs = given.get("epochs") or (long if nine <= buys else short)
    population = given.get("population") or (8 if buys < 300 else 16 if buys < 3000 else 24)
    rungs = fidelities_for(epochs, min_epochs)
    per_generation = generation_epochs(population, rungs, reduction_factor)
    if "population" not in given and per_generation > buys:
        # Not even one generation fits: fewer candidates, each still trained to its rungs.
        per_candidate = per_generation / population
        population = max(2, int(buys / per_candidate))
        per_generation = generation_epochs(population, rungs, reduction_factor)
    generations = given.get("generations") or max(1, int(buys / per_generation))
    if "population" not in given:
        # A whole number of generations leaves up to one generation's epochs unbought (a quarter of a
        # 10×T budget was left unused): more candidates in every generation spend them.
        while generations * generation_epochs(population + 1, rungs, reduction_factor) <= buys:
            population += 1
    return Plan(
        budget_s=budget_s,
        population=population,
        generations=generations,
        epochs=epochs,
        min_epochs=min(min_epochs, epochs),
        final_epochs=final_epochs,
        search_s=elapsed_s + START_UP_S / 2 + search_s,
        final_s=final_s,
        epoch_s=epoch_s,
        final_epoch_s=final_epoch_s,
        workers=workers,
        candidate_epochs=buys,
        batch_size=batch_size,
        epoch_scale=epoch_scale,
    )


def final_epochs_for(seconds_left: float, epoch_s: float) -> int:
    """The final training's epochs for the time left at ``epoch_s`` seconds each: as many as fit,
    at most MAX_FINAL_EPOCHS, never fewer than one."""
    fits = int(max(0.0, seconds_left - START_UP_S / 3) / max(epoch_s, 1e-6))
    return max(1, min(MAX_FINAL_EPOCHS, fits))
