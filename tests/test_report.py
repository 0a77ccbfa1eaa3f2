"""Test results of a final model (per class, confusion matrix, misclassified gallery) and predictions
for an uploaded image."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from torch import nn

from automodel.training import report as reports
from automodel.training.report import ImageInputError, image_tensor, top_predictions


class Fixed(nn.Module):
    """Predicts class 0 for images whose first pixel is dark, else class 1 (confidence from the pixel)."""

    def __init__(self):
        super().__init__()
        self.classes = ["dark", "light", "never"]
        self.input_shape = (1, 2, 2)

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([4 * (0.5 - p), 4 * (p - 0.5), torch.full_like(p, -9.0)], dim=1)


def test_report_counts_every_test_image_once(tmp_path):
    x = torch.tensor([0, 10, 200, 250, 240, 30], dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2).clone()
    y = torch.tensor([0, 1, 1, 1, 0, 0])
    report = reports.test_report(Fixed(), x, y, ["dark", "light", "never"], tmp_path / "gallery")
    assert report["confusion"] == [[2, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert [c["accuracy"] for c in report["per_class"]] == [pytest.approx(2 / 3), pytest.approx(2 / 3), None]
    assert report["accuracy"] == pytest.approx(4 / 6) and report["misclassified_total"] == 2
    wrong = report["misclassified"]
    assert [(m["index"], m["true"], m["predicted"]) for m in wrong] == [(1, "light", "dark"), (4, "dark", "light")]
    assert wrong[0]["confidence"] > wrong[1]["confidence"]  # surest mistakes first
    assert all(Image.open(m["path"]).size == (2, 2) for m in wrong)


def png(mode: str, size, colour) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_uploaded_image_becomes_the_models_input():
    x = image_tensor(png("RGB", (10, 6), (255, 255, 255)), (1, 2, 2))
    assert x.shape == (1, 1, 2, 2) and torch.allclose(x, torch.ones_like(x))
    rgb = image_tensor(png("RGBA", (3, 3), (0, 0, 255, 255)), (3, 4, 5))
    assert rgb.shape == (1, 3, 4, 5) and rgb[0, 2].min() == 1 and rgb[0, 0].max() == 0
    top = top_predictions(Fixed(), x)
    assert [c for c, _ in top] == ["light", "dark", "never"] and sum(p for _, p in top) == pytest.approx(1.0)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n broken"])
def test_a_file_that_is_not_an_image_is_one_sentence(data):
    with pytest.raises(ImageInputError) as info:
        image_tensor(data, (3, 8, 8), name="notes.txt")
    assert "notes.txt is not an image" in str(info.value) and "\n" not in str(info.value)
