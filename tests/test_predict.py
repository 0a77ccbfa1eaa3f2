"""Predictions for image files with a saved model (``automodel predict`` and ``automodel.predict``):
the same preprocessing as training, folders, bad files in one sentence, the CSV, a run ID."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

import automodel
from automodel.cli import commands as cli
from automodel.data.images import ORIENTATION_TAG
from automodel.errors import ImageInputError
from automodel.evolution.genome import ConvBlock, Genome
from automodel.store import Store
from automodel.training.export import load_model, save_checkpoint
from automodel.training.model import build_model
from automodel.training.report import image_tensor

GENOME = Genome(
    conv=(ConvBlock(8, 3, "relu", "max", False),),
    dense=(),
    dropout=0.0,
    optimizer="adam",
    learning_rate=1e-3,
    weight_decay=0.0,
)
CLASSES = ["cat", "dog", "fox"]


@pytest.fixture
def model_path(tmp_path):
    torch.manual_seed(0)
    model = build_model(GENOME, (3, 12, 16), CLASSES)
    return save_checkpoint(
        tmp_path / "best.pt",
        GENOME,
        model.state_dict(),
        input_shape=(3, 12, 16),
        classes=CLASSES,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )


def photo(path, seed: int, size=(64, 48), orientation: int | None = None):
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = Image.Exif()
    if orientation:
        exif[ORIENTATION_TAG] = orientation
        im = im.transpose(Image.Transpose.ROTATE_270)  # stored turned; orientation 8 shows it upright again
    im.save(path, exif=exif)
    return path


def test_a_prediction_is_the_models_answer_on_the_image_read_as_training_reads_it(tmp_path, model_path):
    path = photo(tmp_path / "a.png", 1)
    (answer,) = automodel.predict(model_path, path, top=2)
    model = load_model(model_path)
    with torch.no_grad():
        probs = torch.softmax(model(image_tensor(path.read_bytes(), model.input_shape)), 1)[0]
    best = probs.argsort(descending=True)[:2]
    assert [label for label, _ in answer.top] == [CLASSES[int(i)] for i in best]
    assert answer.confidence == pytest.approx(float(probs[best[0]]), abs=1e-6)
    assert answer.label == answer.top[0][0] and answer.error == ""


def test_a_turned_phone_photo_gets_the_answer_of_the_upright_one(tmp_path, model_path):
    upright = photo(tmp_path / "up.png", 5)
    turned = photo(tmp_path / "turned.png", 5, orientation=8)
    first, second = automodel.predict(model_path, [upright, turned], top=3)
    assert [label for label, _ in first.top] == [label for label, _ in second.top]
    assert [prob for _, prob in first.top] == pytest.approx([prob for _, prob in second.top], abs=1e-6)


def test_folders_are_searched_in_order_and_unreadable_images_in_them_answered_with_the_error(tmp_path, model_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    photo(folder / "b.jpg", 2)
    photo(folder / "sub" / "a.png", 3)
    (folder / "c.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    (folder / ".hidden.png").write_bytes(b"ignored")
    answers = automodel.predict(model_path, folder)
    assert [a.path for a in answers] == [str(folder / "b.jpg"), str(folder / "c.jpg"), str(folder / "sub" / "a.png")]
    assert answers[1].top == [] and "not an image that can be read" in answers[1].error
    assert len(answers[0].top) == 3 and answers[2].label in CLASSES


@pytest.mark.parametrize("content, words", [(b"hello", "is not an image that can be read"), (None, "does not exist")])
def test_a_named_file_that_is_not_an_image_is_one_sentence_and_exit_2(tmp_path, model_path, capsys, content, words):
    path = tmp_path / "file.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageInputError):
        automodel.predict(model_path, path)
    assert cli.main(["predict", str(model_path), str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_command_prints_one_line_per_image_or_writes_the_csv(tmp_path, model_path, capsys):
    a, b = photo(tmp_path / "a.png", 1), photo(tmp_path / "b.png", 2)
    assert cli.main(["predict", str(model_path), str(a), str(b), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{a}: ") and lines[0].count(",") == 1
    out = tmp_path / "out" / "answers.csv"
    assert cli.main(["predict", str(model_path), str(tmp_path), "--top", "2", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["path"] for r in rows] == [str(a), str(b)]
    assert set(rows[0]) == {"path", "label", "confidence", "label_2", "confidence_2", "error"}
    assert rows[0]["label"] in CLASSES and 0 < float(rows[0]["confidence"]) <= 1


def test_a_run_id_names_its_best_model(tmp_path, model_path, capsys):
    db = tmp_path / "db.json"
    store = Store(db)
    store.create_run("r1", {}, status="completed", best_model_path=str(model_path))
    store.create_run("r2", {}, status="running")
    image = photo(tmp_path / "a.png", 1)
    assert cli.main(["predict", "r1", str(image), "--db", str(db)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")
    assert cli.main(["predict", "r2", str(image), "--db", str(db)]) == 2
    assert "has no saved best model yet" in capsys.readouterr().err
    assert cli.main(["predict", "nope", str(image), "--db", str(db)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_a_grey_model_reads_colour_photos_as_grey(tmp_path):
    model = build_model(GENOME, (1, 8, 8), ["a", "b"])
    path = save_checkpoint(
        tmp_path / "grey.pt",
        GENOME,
        model.state_dict(),
        input_shape=(1, 8, 8),
        classes=["a", "b"],
        mean=(0.5,),
        std=(0.25,),
    )
    (answer,) = automodel.predict(path, photo(tmp_path / "c.png", 4))
    assert len(answer.top) == 2 and sum(p for _, p in answer.top) == pytest.approx(1.0, abs=1e-5)
