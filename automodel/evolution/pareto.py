"""Several objectives at once: dominance, non-dominated sorting, crowding distance, the Pareto front
of a run's records and the hypervolume of a front. Plain functions on tuples; torch-free.

Objectives are named as in the config: ``accuracy`` (maximised) and any of ``params``, ``macs``
and ``latency`` (minimised). Internally every point is a tuple to *minimise* (accuracy negated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

OBJECTIVES = ("accuracy", "params", "macs", "latency")
COST_FIELDS = {"params": "params", "macs": "macs", "latency": "latency_ms"}  # objective → record field

Point = tuple[float, ...]


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Fast non-dominated sorting (Deb et al. 2002): indices grouped into fronts, best front first."""
    dominated_by: list[list[int]] = [[] for _ in points]  # i → the points i dominates
    counts = [0] * len(points)  # how many points dominate i
    for i, p in enumerate(points):
        for j in range(i + 1, len(points)):
            q = points[j]
            if dominates(p, q):
                dominated_by[i].append(j)
                counts[j] += 1
            elif dominates(q, p):
                dominated_by[j].append(i)
                counts[i] += 1
    fronts, current = [], [i for i, c in enumerate(counts) if c == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def first_front(points: Sequence[Point]) -> list[int]:
    """The indices of the non-dominated points (``nondominated_sort``'s first front), in order.

    A sweep in lexicographic order: only an earlier point can dominate a later one, and a point
    dominated by anything is dominated by a member of the front found so far, so each point is
    checked against the front alone (fast for the tens of thousands of candidates of a long run).
    """
    front: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: tuple(points[i])):
        if not any(dominates(points[j], points[i]) for j in front):
            front.append(i)
    return sorted(front)


def crowding_distance(points: Sequence[Point]) -> list[float]:
    """Crowding distance of each point within its front (Deb et al. 2002): the sum over objectives of
    the normalised gap between its neighbours; the extremes of every objective get infinity."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    distance = [0.0] * n
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: (points[i][m], i))
        low, high = points[order[0]][m], points[order[-1]][m]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for k in range(1, n - 1):
            distance[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (high - low)
    return distance


def nsga2_ranks(points: Sequence[Point]) -> list[tuple[int, float]]:
    """(front number, -crowding distance) per point: smaller is better, as NSGA-II compares them."""
    ranks: list[tuple[int, float]] = [(0, 0.0)] * len(points)
    for number, front in enumerate(nondominated_sort(points)):
        for i, d in zip(front, crowding_distance([points[i] for i in front])):
            ranks[i] = (number, -d)
    return ranks


def objective_point(record: Mapping[str, Any], objectives: Sequence[str], accuracy: float | None = None) -> Point:
    """A record as a point to minimise; ``accuracy`` overrides the record's fitness (equal fidelity)."""
    values = []
    for name in objectives:
        if name == "accuracy":
            values.append(-(record["fitness"] if accuracy is None else accuracy))
        else:
            cost = record.get(COST_FIELDS[name])
            values.append(math.inf if cost is None else float(cost))
    return tuple(values)


def pareto_front(records: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> list[Mapping[str, Any]]:
    """The non-dominated records among the fully trained ones (status ok), one per genome, best
    accuracy first. Copies of a genome (elites, repeats) appear once."""
    unique: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if record.get("status") == "ok" and not record.get("cached"):
            unique.setdefault(record["key"], record)
    rows = list(unique.values())
    points = [objective_point(r, objectives) for r in rows]
    members = [rows[i] for i in first_front(points)]
    return sorted(members, key=lambda r: (-r["fitness"], r["key"]))


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area dominated by ``points`` (both coordinates minimised) up to ``reference``."""
    inside = sorted({p for p in points if p[0] < reference[0] and p[1] < reference[1]})
    area, best_y = 0.0, reference[1]
    for x, y in inside:
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area
