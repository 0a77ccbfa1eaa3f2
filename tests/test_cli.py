"""The command line end to end, in real processes: the demo search, kill and resume, stop,
readers polling during a run, bad input, and the saved model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from processes import one_thread_env, run_cli, spawn_cli

from automodel import load_model
from automodel.data import load_dataset
from automodel.store import Store

pytestmark = pytest.mark.slow  # real processes, servers or a browser

ROOT = Path(__file__).resolve().parent.parent
DEMO = ["--dataset", "digits", "--population", "8", "--generations", "3", "--epochs", "2", "--seed", "0"]
SHOW_KEYS = {"run_id", "status", "generations_done", "evaluated", "best_fitness", "test_accuracy", "best_model_path"}

READER = r"""
import json, sys, time
from pathlib import Path
from automodel.store import Store
db, deadline = Path(sys.argv[1]), time.monotonic() + float(sys.argv[2])
errors = reads = 0
seen = set()
while time.monotonic() < deadline:
    time.sleep(0.05)
    if not db.exists():
        continue
    try:
        json.loads(db.read_text())
        store = Store(db)
        for run in store.list_runs():
            seen.update(g["generation"] for g in store.generations(run["run_id"]))
            if run.get("status") in ("completed", "failed"):
                deadline = 0
        reads += 1
    except Exception as exc:
        errors += 1
        print(repr(exc), file=sys.stderr)
print(json.dumps({"errors": errors, "reads": reads, "seen": sorted(seen)}))
"""


automodel, spawn, _env = run_cli, spawn_cli, one_thread_env


def show(db: Path, run_id: str) -> dict:
    return json.loads(automodel("show", run_id, "--json", "--db", str(db), check=True).stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README's demo search, with a reader process polling the database at 20 Hz throughout."""
    folder = tmp_path_factory.mktemp("demo")
    db = folder / "db.json"
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(db), "240"],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    started = time.monotonic()
    result = automodel("run", *DEMO, "--run-id", "demo", "--db", str(db), timeout=300)
    seconds = time.monotonic() - started
    outputs = [reader.communicate(timeout=60) for reader in readers]
    return {
        "db": db,
        "result": result,
        "seconds": seconds,
        "readers": [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs],
        "reader_stderr": "".join(err for _, err in outputs),
    }


def test_demo_search_finishes_with_a_good_model(demo):
    result = demo["result"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert "validation accuracy" in result.stdout and "test accuracy" in result.stdout
    info = show(demo["db"], "demo")
    assert SHOW_KEYS <= set(info)
    assert info["status"] == "completed" and info["generations_done"] == 3 and info["evaluated"] == 24
    assert info["best_fitness"] >= 0.90
    assert 0.0 < info["test_accuracy"] <= 1.0
    print(f"demo search took {demo['seconds']:.1f} s")  # the figure the README quotes; not asserted


def test_two_readers_polling_at_20_hz_see_no_half_written_file(demo):
    final = {g["generation"] for g in Store(demo["db"]).generations("demo")}
    for reader in demo["readers"]:
        assert reader["errors"] == 0, demo["reader_stderr"][-2000:]
        assert reader["reads"] > 50
        assert set(reader["seen"]) <= final and reader["seen"], "generations seen live must be in the final records"


def test_saved_model_reproduces_the_recorded_test_accuracy(demo):
    info = show(demo["db"], "demo")
    model = load_model(info["best_model_path"])
    data = load_dataset("digits")
    assert model.input_shape == data.input_shape and model.classes == data.classes
    with torch.inference_mode():
        predictions = model(data.test_x.float() / 255).argmax(1)
    accuracy = (predictions == data.test_y).float().mean().item()
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6)


def test_onnx_export_gives_the_same_predictions(demo, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "best.onnx"
    result = automodel("export", "demo", "--format", "onnx", "--out", str(out), "--db", str(demo["db"]))
    assert result.returncode == 0, result.stderr[-2000:]
    model = load_model(show(demo["db"], "demo")["best_model_path"])
    x = torch.rand(5, *model.input_shape)
    session = ort.InferenceSession(str(out))
    onnx_logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.inference_mode():
        torch_logits = model(x).numpy()
    assert (onnx_logits.argmax(1) == torch_logits.argmax(1)).all()
    assert abs(onnx_logits - torch_logits).max() < 1e-3


def test_export_pt_copies_a_loadable_checkpoint(demo, tmp_path):
    out = tmp_path / "model.pt"
    automodel("export", "demo", "--format", "pt", "--out", str(out), "--db", str(demo["db"]), check=True)
    assert load_model(out).classes == [str(i) for i in range(10)]


def test_list_shows_the_run(demo):
    runs = json.loads(automodel("list", "--json", "--db", str(demo["db"]), check=True).stdout)
    assert [r["run_id"] for r in runs] == ["demo"] and runs[0]["status"] == "completed"


def test_sigkill_mid_generation_then_resume_matches_the_uninterrupted_run(demo, tmp_path, wait_for):
    db = tmp_path / "db.json"
    process = spawn("run", *DEMO, "--run-id", "k", "--db", str(db), "--quiet")
    try:
        wait_for(lambda: db.exists() and len(Store(db).individuals("k")) >= 10, 180, "generation 1 to start")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    before = {(r["generation"], r["index"]): r for r in Store(db).individuals("k")}
    assert 10 <= len(before) < 24
    assert show(db, "k")["status"] == "interrupted"
    resumed = automodel("resume", "k", "--db", str(db), "--quiet", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = Store(db).individuals("k")
    reference = Store(demo["db"]).individuals("demo")
    assert len(after) == 24 and len({(r["generation"], r["index"]) for r in after}) == 24
    assert [(r["key"], r["fitness"]) for r in after] == [(r["key"], r["fitness"]) for r in reference]
    for position, record in before.items():  # completed candidates kept as they were, not retrained
        match = next(r for r in after if (r["generation"], r["index"]) == position)
        assert match["recorded_at"] == record["recorded_at"]
    assert show(db, "k")["best_fitness"] == show(demo["db"], "demo")["best_fitness"]


def test_stop_ends_a_run_within_seconds_and_resume_finishes_it(tmp_path, wait_for):
    db = tmp_path / "db.json"
    process = spawn(
        "run",
        "--dataset",
        "digits",
        "--population",
        "2",
        "--generations",
        "1",
        "--epochs",
        "40",
        "--final-epochs",
        "1",
        "--run-id",
        "s",
        "--db",
        str(db),
        "--quiet",
    )
    try:
        wait_for(lambda: db.exists() and Store(db).progress("s"), 120, "training to start")
        started = time.monotonic()
        result = automodel("stop", "s", "--db", str(db), timeout=60)
        elapsed = time.monotonic() - started
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert result.returncode == 0, result.stderr
    assert elapsed < 5, f"stop took {elapsed:.1f} s"
    assert show(db, "s")["status"] == "stopped"
    assert process.returncode == 0


def test_resume_of_a_stopped_run_completes(tmp_path, wait_for):
    db = tmp_path / "db.json"
    store = Store(db)
    process = spawn(
        "run",
        "--dataset",
        "digits",
        "--population",
        "3",
        "--generations",
        "1",
        "--epochs",
        "3",
        "--final-epochs",
        "1",
        "--run-id",
        "r",
        "--db",
        str(db),
        "--quiet",
    )
    try:
        wait_for(lambda: db.exists() and len(store.individuals("r")) >= 1, 120, "the first candidate")
        automodel("stop", "r", "--db", str(db), check=True)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    kept = len(store.individuals("r"))
    assert show(db, "r")["status"] == "stopped" and kept >= 1
    result = automodel("resume", "r", "--db", str(db), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert show(db, "r")["status"] == "completed" and len(store.individuals("r")) == 3


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--population", "1"], "population"),
        (["--generations", "0"], "generations"),
        (["--population", "4", "--elitism", "4"], "elitism"),
        (["--dataset", "imagenet-22k"], "imagenet-22k"),
        (["--dataset", "/no/such/folder"], "/no/such/folder"),
        (["--selection", "lottery"], "selection"),
        (["--device", "tpu"], "device"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_code_2(tmp_path, args, fragment):
    result = automodel("run", "--db", str(tmp_path / "db.json"), "--quiet", *args, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr


def test_folder_with_one_class_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "imgs" / "cat" / f"{i}.png")
    result = automodel("run", "--dataset", str(tmp_path / "imgs"), "--db", str(tmp_path / "db.json"), "--quiet")
    assert result.returncode == 2 and "class" in result.stderr and "Traceback" not in result.stderr
    assert show(tmp_path / "db.json", Store(tmp_path / "db.json").list_runs()[0]["run_id"])["status"] == "failed"


def test_corrupt_database_is_reported_and_left_untouched(tmp_path):
    db = tmp_path / "db.json"
    db.write_bytes(b'{"runs": {"1": {"run_id": "x", "sta')
    before = db.read_bytes()
    for args in (["list"], ["show", "x"], ["run", "--population", "2", "--quiet"]):
        result = automodel(*args, "--db", str(db))
        assert result.returncode == 2, result.stderr
        assert str(db) in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == before


def test_unknown_run_and_config_file_errors(tmp_path):
    result = automodel("show", "nope", "--db", str(tmp_path / "db.json"))
    assert result.returncode == 2 and "nope" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"population": "eight"}')
    result = automodel("run", "--config", str(bad), "--db", str(tmp_path / "db.json"))
    assert result.returncode == 2 and "population" in result.stderr and "Traceback" not in result.stderr


def test_onnx_file_is_self_contained(demo, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "a" / "model.onnx"
    automodel("export", "demo", "--format", "onnx", "--out", str(out), "--db", str(demo["db"]), check=True)
    moved = tmp_path / "elsewhere.onnx"
    out.rename(moved)  # a downloaded file travels alone
    assert [p.name for p in out.parent.iterdir()] == [], "no side files"
    session = ort.InferenceSession(str(moved))
    logits = session.run(None, {session.get_inputs()[0].name: torch.rand(3, 1, 8, 8).numpy()})[0]
    assert logits.shape == (3, 10)


def test_stop_pressed_before_the_search_process_starts_is_kept(tmp_path):
    from automodel.config import Config
    from automodel.process import jobs

    db = tmp_path / "db.json"
    store = Store(db)
    store.claim_run_slot("early", Config().to_dict(), jobs.is_alive)  # what the page does on Start
    store.request_stop("early")  # Stop, before the process runs
    result = automodel("run", "--run-id", "early", "--db", str(db), "--quiet")
    assert result.returncode == 0, result.stderr
    assert Store(db).get_run("early")["status"] == "stopped"
    assert not Store(db).individuals("early")


def test_a_folder_run_at_a_chosen_image_size_records_its_data_and_resumes_from_the_decoded_cache(tmp_path, wait_for):
    from PIL import Image

    from automodel.training.export import read_checkpoint

    folder = tmp_path / "photos"
    for c, colour in enumerate(((220, 30, 30), (30, 30, 220))):
        (folder / f"class {c}").mkdir(parents=True)
        for i in range(12):
            shade = tuple(min(255, v + 3 * i) for v in colour)
            Image.new("RGB", (40, 30), shade).save(folder / f"class {c}" / f"{i}.jpg")
    db = tmp_path / "db.json"
    process = spawn(
        "run",
        "--dataset",
        str(folder),
        "--image-size",
        "16",
        "--population",
        "2",
        "--generations",
        "30",
        "--epochs",
        "1",
        "--final-epochs",
        "1",
        "--seed",
        "0",
        "--run-id",
        "p",
        "--db",
        str(db),
        "--quiet",
    )
    try:
        wait_for(
            lambda: db.exists() and (Store(db).get_run("p") or {}).get("generations_done", 0) >= 1,
            120,
            "a first generation",
        )
        automodel("stop", "p", "--db", str(db))  # asks; the process ends when its candidate is abandoned
        process.communicate(timeout=120)
    finally:
        process.kill()
    shown = show(db, "p")
    assert shown["status"] == "stopped"
    data = shown["data"]
    assert data["input_shape"] == [3, 12, 16] and data["classes"] == {"class 0": 12, "class 1": 12}
    assert data["train"] + data["validation"] + data["test"] == 24 and data["skipped"] == 0
    cache = Path(shown["best_model_path"]).parent / "decoded.pt"
    decoded_at = cache.stat().st_mtime_ns
    resumed = spawn("resume", "p", "--db", str(db), "--quiet")
    try:
        wait_for(
            lambda: (Store(db).get_run("p") or {}).get("generations_done", 0) >= shown["generations_done"] + 1,
            120,
            "a generation after the resume",
        )
        automodel("stop", "p", "--db", str(db))
        resumed.communicate(timeout=120)
    finally:
        resumed.kill()
    assert cache.stat().st_mtime_ns == decoded_at  # read, not decoded and written again
    assert show(db, "p")["data"]["input_shape"] == [3, 12, 16]
    assert read_checkpoint(shown["best_model_path"])["input_shape"] == [3, 12, 16]
    result = automodel("predict", "p", str(folder / "class 0"), "--db", str(db), check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 12 and all(": class " in line for line in lines)


def test_the_generation_bar_grows_when_a_budget_adds_generations():
    import io

    from automodel.cli.progress import BarReporter

    reporter = BarReporter(stream=io.StringIO())
    reporter.generation_started(0, 2, 4, 4)
    reporter.generation_started(2, 3, 4, 4)  # one past the planned two
    assert reporter.generations is not None
    assert (reporter.generations.n, reporter.generations.total) == (2, 3)
