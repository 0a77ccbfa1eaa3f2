"""Faults: kills at random moments, full disks, hostile files. Nothing recorded is ever lost."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from automodel.cli import commands as cli
from automodel.evolution.genome import ConvBlock, Genome
from automodel.store import Store, StoreError
from automodel.training import export
from automodel.training.export import CheckpointError, read_checkpoint, save_checkpoint
from automodel.training.model import build_model

pytestmark = pytest.mark.slow  # real processes, servers or a browser

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = [
    "--dataset",
    "digits",
    "--population",
    "4",
    "--generations",
    "3",
    "--epochs",
    "3",
    "--final-epochs",
    "1",
    "--seed",
    "1",
]
GENOME = Genome(
    conv=(ConvBlock(8, 3, "relu", "max", False),),
    dense=(),
    dropout=0.0,
    optimizer="adam",
    learning_rate=1e-3,
    weight_decay=0.0,
)


def disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def checkpoint(path: Path, fitness: float) -> Path:
    model = build_model(GENOME, (1, 8, 8), ["a", "b"])
    return save_checkpoint(
        path,
        GENOME,
        model.state_dict(),
        input_shape=(1, 8, 8),
        classes=["a", "b"],
        mean=(0.5,),
        std=(0.25,),
        metrics={"val_accuracy": fitness},
    )


def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    path = checkpoint(tmp_path / "best.pt", 0.5)
    before = path.read_bytes()

    def partial_then_full(obj, handle):
        handle.write(b"half a checkpoint")
        disk_full()

    monkeypatch.setattr(export.torch, "save", partial_then_full)
    with pytest.raises(OSError):
        checkpoint(path, 0.9)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert read_checkpoint(path)["metrics"]["val_accuracy"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"], "no temporary file is left behind"


def test_full_disk_while_writing_the_store_keeps_the_previous_file(tmp_path, monkeypatch):
    store = Store(tmp_path / "db.json")
    store.create_run("r", {"population": 2})
    before = store.path.read_bytes()
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StoreError) as info:
        store.update_run("r", status="completed")
    monkeypatch.undo()
    assert "No space left" in str(info.value) or "space" in str(info.value)
    assert store.path.read_bytes() == before
    assert Store(store.path).get_run("r")["status"] == "running"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_search_fails_with_a_clear_reason_when_the_disk_fills(tmp_path, monkeypatch, capsys):
    db = tmp_path / "db.json"
    real_save = export.save_checkpoint

    def full_at_the_final_model(path, *args, metrics=None, **kwargs):
        if metrics and metrics.get("stage") == "final":
            disk_full()
        return real_save(path, *args, metrics=metrics, **kwargs)

    monkeypatch.setattr("automodel.evolution.final.save_checkpoint", full_at_the_final_model)
    code = cli.main(
        [
            "run",
            "--dataset",
            "digits",
            "--population",
            "2",
            "--generations",
            "1",
            "--epochs",
            "1",
            "--final-epochs",
            "1",
            "--run-id",
            "full",
            "--db",
            str(db),
            "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0] and "full" in err[0]
    run = Store(db).get_run("full")
    assert run["status"] == "failed" and "No space left" in run["reason"]
    assert len(Store(db).individuals("full")) == 2, "the candidates finished before the failure stay recorded"
    assert read_checkpoint(run["best_model_path"])["metrics"]["stage"] == "search", "the previous model survives"


def test_a_checkpoint_that_carries_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": export.FORMAT, "state_dict": {}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "safely" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04broken zip"])
def test_damaged_model_files_are_refused_in_one_sentence(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_hostile_zip_through_the_command_line_writes_nothing_outside(tmp_path, capsys):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos/cat/a.png", b"x")
        zf.writestr("../../escaped.txt", b"gotcha")
    code = cli.main(["run", "--dataset", str(archive), "--db", str(tmp_path / "db" / "db.json"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ".." in err[0]
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not list(tmp_path.rglob("escaped.txt"))


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"population": "8"}, "population"),
        ({"population": -3}, "population"),
        ({"mutation_rate": float("nan")}, "mutation_rate"),
        ({"colour": "blue"}, "colour"),
        ({"space": {"filters": []}}, "filters"),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_bad_config_files_are_one_sentence(tmp_path, capsys, config, fragment):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code = cli.main(["run", "--config", str(path), "--db", str(tmp_path / "db.json"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0]
    assert not (tmp_path / "db.json").exists(), "a refused config records nothing"


# ------------------------------------------------------------------------ twenty kills


def _records(db: Path) -> dict:
    return {(r["generation"], r["index"]): r for r in Store(db).individuals("k")}


def _check_database_is_valid(db: Path) -> None:
    for path in db.parent.glob("db*.json"):
        json.loads(path.read_text())  # never half-written


def _run(db):
    return Store(db).get_run("k") if db.exists() else None


def test_twenty_sigkills_at_random_moments_lose_nothing(tmp_path):
    reference_db = tmp_path / "ref" / "db.json"
    subprocess.run(
        [sys.executable, "-m", "automodel", "run", *TINY, "--run-id", "k", "--db", str(reference_db), "--quiet"],
        cwd=ROOT,
        env=ENV,
        check=True,
        capture_output=True,
        timeout=300,
    )
    db = tmp_path / "killed" / "db.json"
    rng = random.Random(20)
    seen: dict = {}
    kills = 0
    for _attempt in range(40):
        if kills == 20:
            break
        # Until the run is recorded (a slow machine may still be importing when the kill comes), start it again.
        verb = ["resume", "k"] if _run(db) is not None else ["run", *TINY, "--run-id", "k"]
        process = subprocess.Popen(
            [sys.executable, "-m", "automodel", *verb, "--db", str(db), "--quiet"],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=rng.uniform(1.5, 4.5))
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            kills += 1
        _check_database_is_valid(db)
        current = _records(db)
        for position, record in seen.items():  # nothing completed is lost or retrained
            assert current[position]["recorded_at"] == record["recorded_at"], position
        seen = current
        if (_run(db) or {}).get("status") == "completed":
            break
    for _ in range(3):
        if (_run(db) or {}).get("status") == "completed":
            break
        subprocess.run(
            [sys.executable, "-m", "automodel", "resume", "k", "--db", str(db), "--quiet"],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            timeout=300,
        )
    assert kills >= 10, f"only {kills} kills landed during the run"
    final, reference = _records(db), _records(reference_db)
    assert len(final) == 12
    assert {p: (r["key"], r["fitness"]) for p, r in final.items()} == {
        p: (r["key"], r["fitness"]) for p, r in reference.items()
    }
    assert Store(db).get_run("k")["best_fitness"] == Store(reference_db).get_run("k")["best_fitness"]
    assert Store(db).get_run("k")["status"] == "completed"


# ------------------------------------------------------------------------ hostile images


def _png(path: Path, colour=(200, 30, 30), size=(8, 8), mode="RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode != "L" else 128).save(path)


def _decompression_bomb_png(path: Path) -> None:
    """A valid small PNG whose header claims 60,000 × 60,000 pixels."""
    import struct
    import zlib

    _png(path)
    raw = bytearray(path.read_bytes())
    struct.pack_into(">II", raw, 16, 60_000, 60_000)  # IHDR width, height
    struct.pack_into(">I", raw, 29, zlib.crc32(bytes(raw[12:29])))  # IHDR checksum
    path.write_bytes(bytes(raw))


def test_thousands_of_empty_files_a_bomb_image_and_a_nested_archive_are_survived(tmp_path):
    from automodel.data import load_dataset

    root = tmp_path / "photos"
    for i in range(4):
        _png(root / "red" / f"{i}.png", (200, 30, 30))
        _png(root / "grey" / f"{i}.png", mode="L")
    _png(root / "blue" / "only.png", (20, 30, 200), size=(13, 9))  # a class with one image, odd size
    for i in range(2000):
        (root / "red" / f"empty{i}.png").write_bytes(b"")
    _decompression_bomb_png(root / "grey" / "bomb.png")
    with zipfile.ZipFile(root / "red" / "inner.zip", "w") as zf:
        zf.writestr("x/1.png", b"nested")
    data = load_dataset(str(root))
    assert data.classes == ["blue", "grey", "red"]
    assert data.skipped == 2001 and data.ignored == 1  # 2,000 empty files + the bomb; the nested zip
    assert data.input_shape[0] == 3  # grey converted to RGB beside colour images
    assert 2 in set(data.train_y.tolist()) and 0 in set(data.train_y.tolist())
    assert not (root / "red" / "x").exists(), "a nested archive is never extracted"
