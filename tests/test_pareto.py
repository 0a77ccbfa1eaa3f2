"""Several objectives: non-dominated sorting, crowding, NSGA-II selection, the front in `show --json`,
and finalizing and exporting a chosen member."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from processes import run_cli

from automodel import load_model
from automodel.config import Config, ConfigError
from automodel.evolution.operators import select_nsga2, select_nsga2_elite
from automodel.evolution.pareto import (
    crowding_distance,
    dominates,
    first_front,
    hypervolume_2d,
    nondominated_sort,
    nsga2_ranks,
    pareto_front,
)
from automodel.store import Store

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ pure functions


def test_dominance():
    assert dominates((1, 1), (2, 2)) and dominates((1, 2), (1, 3))
    assert not dominates((1, 1), (1, 1)) and not dominates((1, 3), (2, 2)) and not dominates((2, 2), (1, 3))


def test_nondominated_sort_by_hand():
    #      0        1        2        3        4        5
    pts = [(1, 5), (2, 3), (4, 1), (3, 4), (5, 5), (2, 3)]
    assert nondominated_sort(pts) == [[0, 1, 2, 5], [3], [4]]
    assert nondominated_sort([]) == []


def test_nondominated_sort_agrees_with_brute_force():
    rng = random.Random(1)
    for _ in range(200):
        pts = [(rng.randint(0, 6), rng.randint(0, 6), rng.randint(0, 3)) for _ in range(rng.randint(1, 12))]
        fronts = nondominated_sort(pts)
        assert sorted(i for f in fronts for i in f) == list(range(len(pts)))
        first = {i for i in range(len(pts)) if not any(dominates(q, pts[i]) for q in pts)}
        assert set(fronts[0]) == first
        assert first_front(pts) == sorted(first)
        for a, b in zip(fronts, fronts[1:]):  # every later member is dominated by some earlier one
            assert all(any(dominates(pts[i], pts[j]) for i in a) for j in b)


def test_crowding_distance_by_hand():
    d = crowding_distance([(0, 4), (1, 2), (3, 1), (4, 0)])
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)
    assert crowding_distance([(0, 0), (1, 1)]) == [math.inf, math.inf]


def test_nsga2_selection_prefers_the_front_then_the_sparse_region():
    pts = [(0, 4), (1, 2), (1.1, 1.9), (4, 0), (5, 5)]
    ranks = nsga2_ranks(pts)
    assert ranks[4][0] == 1 and all(r[0] == 0 for r in ranks[:4])
    assert select_nsga2_elite(ranks, 3)[:2] == [0, 3]  # the extremes (infinite crowding) first
    picks = select_nsga2(ranks, 2000, random.Random(2))
    assert picks.count(4) < picks.count(0)  # the dominated one wins no tournament it enters
    assert all(p != 4 for p in select_nsga2(ranks, 200, random.Random(3), tournament_size=5))


def test_hypervolume_by_hand():
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(3 + 2 + 1)
    assert hypervolume_2d([(1, 1)], (2, 2)) == pytest.approx(1)
    assert hypervolume_2d([(5, 5)], (2, 2)) == 0
    assert hypervolume_2d([(1, 3), (1, 3), (2, 4)], (4, 4)) == pytest.approx(3)


def test_pareto_front_of_records():
    def rec(key, fitness, params, status="ok", cached=False):
        return {
            "key": key,
            "fitness": fitness,
            "params": params,
            "macs": params * 10,
            "status": status,
            "cached": cached,
            "generation": 0,
            "index": 0,
        }

    records = [
        rec("a", 0.9, 1000),
        rec("b", 0.8, 100),
        rec("c", 0.7, 500),
        rec("d", 0.95, 50, status="pruned"),
        rec("a", 0.9, 1000, cached=True),
        rec("e", 0.6, 10),
    ]
    assert [r["key"] for r in pareto_front(records, ["accuracy", "params"])] == ["a", "b", "e"]
    assert [r["key"] for r in pareto_front(records, ["accuracy"])] == ["a"]


@pytest.mark.parametrize(
    "objectives, fragment",
    [
        (["params"], "accuracy first"),
        (["accuracy", "speed"], "accuracy first"),
        (["accuracy", "params", "params"], "once each"),
        ("accuracy", "accuracy first"),
    ],
)
def test_bad_objectives_are_one_sentence(objectives, fragment):
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"objectives": objectives})
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------ end to end

automodel = run_cli


@pytest.fixture(scope="module")
def front_run(tmp_path_factory):
    db = tmp_path_factory.mktemp("pareto") / "db.json"
    done = automodel(
        "run",
        "--dataset",
        "digits",
        "--population",
        "6",
        "--generations",
        "2",
        "--epochs",
        "1",
        "--final-epochs",
        "1",
        "--seed",
        "3",
        "--objectives",
        "accuracy,params",
        "--run-id",
        "p",
        "--db",
        str(db),
        "--quiet",
        "--workers",
        "1",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    show = json.loads(automodel("show", "p", "--json", "--db", str(db)).stdout)
    return db, show


@pytest.mark.slow
def test_show_gives_exactly_the_non_dominated_fully_trained_candidates(front_run):
    db, show = front_run
    rows = [r for r in Store(db).individuals("p") if r["status"] == "ok"]

    def beaten(r):
        return any(
            o["fitness"] >= r["fitness"]
            and o["params"] <= r["params"]
            and (o["fitness"] > r["fitness"] or o["params"] < r["params"])
            for o in rows
        )

    expected = {r["key"] for r in rows if not beaten(r)}
    assert {m["key"] for m in show["pareto"]} == expected and expected
    assert len(show["pareto"]) == len(expected)
    for member in show["pareto"]:
        assert {"key", "fitness", "params", "macs", "latency_ms", "summary"} <= set(member)
    assert show["objectives"] == ["accuracy", "params"]


@pytest.mark.slow
def test_any_member_can_be_finalized_exported_and_loaded(front_run, tmp_path):
    db, show = front_run
    member = min(show["pareto"], key=lambda m: m["params"])  # the smallest, usually not the best
    first = automodel("finalize", "p", "--candidate", member["key"], "--db", str(db))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "test accuracy" in first.stdout and "finalized" in first.stdout
    run = Store(db).get_run("p")
    entry = run["finalized"][member["key"]]
    model = load_model(entry["path"])
    assert model.metrics["candidate"] == member["key"] and model.metrics["test_accuracy"] == entry["test_accuracy"]
    again = automodel("finalize", "p", "--candidate", member["key"], "--db", str(db))
    assert again.returncode == 0 and "already finalized" in again.stdout
    onnx = automodel(
        "export",
        "p",
        "--candidate",
        member["key"],
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "m.onnx"),
        "--db",
        str(db),
    )
    assert onnx.returncode == 0 and (tmp_path / "m.onnx").stat().st_size > 0
    csv = automodel("export", "p", "--format", "csv", "--db", str(db)).stdout.splitlines()
    assert {"params", "macs", "latency_ms", "fitness"} <= set(csv[0].split(","))


@pytest.mark.slow
def test_two_requests_for_one_member_train_it_once(front_run):
    db, show = front_run
    member = max(show["pareto"], key=lambda m: m["params"])
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "automodel", "finalize", "p", "--candidate", member["key"], "--db", str(db)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes)
    trained = sum(": finalized;" in out for out in outputs)
    assert trained == 1, outputs
    assert Store(db).get_run("p")["finalizing"] == {}


@pytest.mark.slow
def test_export_or_finalize_of_a_wrong_candidate_is_one_sentence(front_run):
    db, _ = front_run
    missing = automodel("finalize", "p", "--candidate", "0123456789abcdef", "--db", str(db))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "no fully trained candidate" in missing.stderr
    rows = Store(db).individuals("p")
    key = next(r["key"] for r in rows if r["key"] not in (Store(db).get_run("p").get("finalized") or {}))
    not_yet = automodel("export", "p", "--candidate", key, "--db", str(db))
    assert not_yet.returncode == 2 and "not finalized yet" in not_yet.stderr


@pytest.mark.slow
def test_a_latency_limit_refuses_candidates_before_they_train(tmp_path):
    db = tmp_path / "db.json"
    done = automodel(
        "run",
        "--dataset",
        "digits",
        "--population",
        "3",
        "--generations",
        "1",
        "--epochs",
        "1",
        "--final-epochs",
        "1",
        "--objectives",
        "accuracy,latency",
        "--max-latency-ms",
        "0.0001",
        "--run-id",
        "l",
        "--db",
        str(db),
        "--quiet",
        "--workers",
        "1",
    )
    assert done.returncode == 1
    rows = Store(db).individuals("l")
    assert [r["status"] for r in rows] == ["too_slow"] * 3
    assert all(r["latency_ms"] > 0.0001 and r["epochs"] == 0 and "over the limit" in r["reason"] for r in rows)
