"""Successive halving inside a generation (Jamieson & Talwalkar 2016; Ray Tune's schedulers do the
same across trials): every candidate trains to the first rung, the best 1 in ``reduction_factor``
at that rung go on to the next, and so on up to the full budget. The rungs themselves come from
:meth:`automodel.config.Config.fidelities`. These are the decisions, as plain functions of the
records; the loop trains and records."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from automodel.store.records import SCORED_STATUSES, CandidateStatus

CONTINUABLE = SCORED_STATUSES  # statuses whose score at a rung means something (failures score 0)


def score_at(record: Mapping, epochs: int) -> float | None:
    """The candidate's validation accuracy after ``epochs`` epochs, if it is known; 0 for a candidate
    that failed (it never gets better by training more)."""
    if record["status"] not in CONTINUABLE:
        return 0.0
    for point in record.get("history") or ():
        if point.get("epoch") == epochs and point.get("val_accuracy") is not None:
            return point["val_accuracy"]
    trained = record.get("epochs") or 0
    if trained == epochs or (trained > epochs and not record.get("history")):
        return record["fitness"]  # a record without a learning curve (older versions): its final score
    return None


def survivors(
    keys: Sequence[str], records: Mapping[int, Mapping], contenders: Sequence[int], fidelity: int, reduction_factor: int
) -> tuple[list[int], int, int]:
    """Which contenders go on from the rung at ``fidelity`` epochs: the best ceil(n / reduction_factor)
    distinct genomes by their score at that rung (the earlier index wins a tie; a copy of a genome
    goes with it). ``keys[i]`` is the genome of index ``i``, ``records[i]`` its record at this rung.
    Returns (the indices that go on, how many genomes were kept, how many distinct ones competed)."""
    first_index: dict[str, int] = {}
    for index in contenders:
        first_index.setdefault(keys[index], index)
    scores = {key: score_at(records[i], fidelity) for key, i in first_index.items()}
    keep = math.ceil(len(first_index) / reduction_factor)
    ranked = sorted(
        (
            key
            for key, i in first_index.items()
            if records[i]["status"] in (CandidateStatus.OK, CandidateStatus.PARTIAL)
        ),
        key=lambda key: (-(scores[key] or 0.0), first_index[key]),
    )
    promoted = set(ranked[:keep])
    return [index for index in contenders if keys[index] in promoted], keep, len(first_index)
