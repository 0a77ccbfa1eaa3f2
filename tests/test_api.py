"""The Python API: a search in this process, a run read back, its best model, records, exports and
predictions; runs in the background stopped and resumed; errors in one sentence; the README's
example script run as a person runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import automodel
from automodel import api
from automodel.errors import ConfigError, UserFacingError
from automodel.evolution.budget import DEFAULT_BUDGET, parse_duration

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(population=4, generations=2, epochs=1, final_epochs=1, seed=0)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    db = tmp_path_factory.mktemp("api") / "db.json"
    return automodel.search("digits", db=db, run_id="tiny", progress=False, **TINY)


def test_a_search_returns_its_run_with_the_best_model(finished):
    assert isinstance(finished, automodel.Run) and finished.run_id == "tiny" and finished.status == "completed"
    best = finished.best
    assert 0.5 < best.fitness <= 1 and 0.5 < best.test_accuracy <= 1 and best.model_path.is_file()
    model = best.model()
    assert isinstance(model, torch.nn.Module) and not model.training and list(model.input_shape) == [1, 8, 8]
    assert best.genome.key() == finished.record["best_key"] and best.summary == finished.record["best_summary"]
    assert "tiny" in repr(finished) and "completed" in repr(finished)


def test_records_and_generations_are_data_frames(finished):
    records = finished.records()
    assert isinstance(records, pd.DataFrame) and len(records) == 8
    assert {"generation", "index", "key", "status", "fitness", "params", "macs", "seconds", "epochs"} <= set(records)
    generations = finished.generations()
    assert list(generations["generation"]) == [0, 1] and (generations["best"] >= generations["worst"]).all()


def test_exports_and_predictions(finished, tmp_path):
    assert finished.export(tmp_path / "m.pt").is_file()
    onnx = finished.export(tmp_path / "m.onnx", format="onnx")
    assert onnx.is_file() and onnx.stat().st_size > 1000
    table = pd.read_csv(finished.export(tmp_path / "c.csv", format="csv"))
    assert len(table) == 8
    with pytest.raises(ConfigError, match="use pt, onnx or csv"):
        finished.export(tmp_path / "x", format="h5")
    from PIL import Image

    Image.new("L", (8, 8), 200).save(tmp_path / "digit.png")
    (answer,) = finished.predict(tmp_path / "digit.png", top=2)
    assert answer.label in [str(d) for d in range(10)] and len(answer.top) == 2


def test_runs_and_open_run_read_the_store(finished):
    db = finished.store.path
    assert [r.run_id for r in automodel.runs(db)] == ["tiny"]
    assert automodel.open_run("tiny", db).best.fitness == finished.best.fitness
    with pytest.raises(UserFacingError) as caught:
        automodel.open_run("nope", db)
    assert str(caught.value) == f"no run 'nope' in {db}; `automodel list` shows the runs there."


def test_settings_are_checked_before_anything_starts(tmp_path):
    db = tmp_path / "db.json"
    with pytest.raises(ConfigError, match="population"):
        automodel.search("digits", db=db, population=1)
    with pytest.raises(ConfigError, match="not a duration"):
        automodel.search("digits", db=db, budget="soon")
    with pytest.raises(ConfigError, match="run id"):
        automodel.search("digits", db=db, run_id="../x")
    assert automodel.runs(db) == []


def test_the_plan_keeps_what_was_given_and_a_default_budget_comes_only_without_any():
    planned = api.configure({"dataset": "digits", "budget_s": "2m", "population": 6})
    assert planned.budget_s == 120 and planned.overrides == ["population"]
    assert api.configure({"dataset": "digits"}).budget_s == parse_duration(DEFAULT_BUDGET)
    assert api.configure({"dataset": "digits", "generations": 2}).budget_s is None
    assert api.configure({"dataset": "digits"}, default_budget=False).budget_s is None


def test_a_run_without_a_model_says_so_in_one_sentence(tmp_path):
    db = tmp_path / "db.json"
    from automodel.store import Store

    Store(db).create_run("empty", {"dataset": "digits"}, status="stopped")
    run = automodel.open_run("empty", db)
    assert run.best is None
    with pytest.raises(api.RunError, match="has no saved best model yet"):
        run.export(tmp_path / "m.pt")
    with pytest.raises(api.RunError, match="has no saved best model yet"):
        run.predict(tmp_path)


@pytest.mark.slow
def test_a_background_search_can_be_watched_stopped_and_resumed(tmp_path):
    db = tmp_path / "db.json"
    run = automodel.search("digits", db=db, background=True, **{**TINY, "generations": 12})
    assert run.status == "running"
    assert run.wait(timeout=3) == "running"
    assert run.stop(timeout=60) == "stopped"
    done = run.record.get("generations_done", 0)
    run.resume(background=True)
    assert run.status == "running"
    assert run.stop(timeout=60) == "stopped" and run.record.get("generations_done", 0) >= done
    run.resume(progress=False)  # here, to its end
    assert run.status == "completed" and run.record["generations_done"] == 12


@pytest.mark.slow
def test_the_example_script_runs_as_the_readme_says(tmp_path):
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py", "--db", str(tmp_path / "db.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "status='completed'" in out and "prediction for drawn.png:" in out
    assert "stop: stopped" in out and "resumed: running" in out and "runs in the store:" in out
