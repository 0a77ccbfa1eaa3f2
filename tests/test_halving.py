"""Successive halving's decisions as plain functions: the score at a rung, and who goes on."""

from __future__ import annotations

from automodel.evolution.halving import score_at, survivors


def record(status: str, curve: list[float], epochs: int | None = None) -> dict:
    history = [{"epoch": e + 1, "val_accuracy": v} for e, v in enumerate(curve)]
    return {"status": status, "history": history, "epochs": epochs or len(curve), "fitness": curve[-1] if curve else 0}


def test_the_score_at_a_rung_is_read_from_the_learning_curve():
    r = record("ok", [0.3, 0.5, 0.7])
    assert score_at(r, 1) == 0.3 and score_at(r, 3) == 0.7
    assert score_at(r, 9) is None  # not trained that far
    assert score_at(record("oom", []), 1) == 0.0  # a failure never gets better
    old = {"status": "ok", "history": [], "epochs": 3, "fitness": 0.6}  # no curve: its final score
    assert score_at(old, 3) == 0.6 and score_at(old, 1) == 0.6


def test_the_best_third_go_on_copies_with_their_genome_failures_never():
    keys = ["a", "b", "c", "d", "e", "a"]  # index 5 is a copy of a
    rows = {
        0: record("partial", [0.5]),
        1: record("partial", [0.9]),
        2: record("oom", []),
        3: record("partial", [0.2]),
        4: record("partial", [0.6]),
        5: record("partial", [0.5]),
    }
    going_on, keep, distinct = survivors(keys, rows, list(range(6)), 1, 3)
    assert (keep, distinct) == (2, 5)
    assert going_on == [1, 4]
    going_on, keep, _ = survivors(keys, rows, list(range(6)), 1, 2)
    assert keep == 3 and going_on == [0, 1, 4, 5]  # a goes on, and its copy with it


def test_a_tie_goes_to_the_earlier_index():
    keys = ["a", "b", "c"]
    rows = {i: record("partial", [0.5]) for i in range(3)}
    assert survivors(keys, rows, [0, 1, 2], 1, 3)[0] == [0]
    assert survivors(keys, rows, [2, 1], 1, 2)[0] == [1]
