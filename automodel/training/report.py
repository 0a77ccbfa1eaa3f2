"""What a final model gets right and wrong on the test split, computed once when it is saved,
and what it answers for a person's own image.

:func:`test_report` gives per-class accuracy, the confusion matrix and a gallery of misclassified
test images (small PNG files in the run's folder); the search records it with the final model so
the page only reads it. :func:`image_tensor` turns an uploaded image into the input a saved model
takes (the preprocessing of folder datasets: upright by its EXIF orientation, any mode to RGB,
then grey when the model is grey, resized to the model's size), and :func:`top_predictions` gives its best classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from automodel.data.images import DECODE_ERRORS, read_image, to_channels
from automodel.errors import ImageInputError  # noqa: F401  (defined with the other errors, re-exported)
from automodel.training.model import CandidateNet

GALLERY_SIZE = 24


@torch.inference_mode()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, its probability) for uint8 images N×C×H×W."""
    model.eval()
    labels, confidence = [], []
    for start in range(0, len(x), batch_size):
        probs = torch.softmax(model(x[start : start + batch_size].float() / 255).float(), dim=1)
        best = probs.max(dim=1)
        labels.append(best.indices)
        confidence.append(best.values)
    if not labels:
        return torch.empty(0, dtype=torch.int64), torch.empty(0)
    return torch.cat(labels).cpu(), torch.cat(confidence).cpu()


def test_report(
    model: torch.nn.Module,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: Sequence[str],
    gallery_dir: Path | None = None,
    gallery_size: int = GALLERY_SIZE,
) -> dict:
    """Per-class accuracy, confusion matrix (rows: true class, columns: predicted) and the
    misclassified test images the model was most sure about, saved as PNGs in ``gallery_dir``."""
    predicted, confidence = predict(model, test_x)
    truth = test_y.cpu()
    n = len(classes)
    confusion = torch.zeros(n, n, dtype=torch.int64)
    confusion.index_put_((truth, predicted), torch.ones_like(truth), accumulate=True)
    totals = confusion.sum(dim=1)
    per_class = [
        {
            "class": str(c),
            "accuracy": (float(confusion[i, i]) / int(totals[i])) if totals[i] else None,
            "count": int(totals[i]),
        }
        for i, c in enumerate(classes)
    ]
    wrong = (predicted != truth).nonzero().flatten()
    order = wrong[torch.argsort(confidence[wrong], descending=True)][:gallery_size]
    gallery = []
    if gallery_dir is not None:
        gallery_dir.mkdir(parents=True, exist_ok=True)
        for old in gallery_dir.glob("*.png"):
            old.unlink()
    for rank, i in enumerate(order.tolist()):
        entry = {
            "index": i,
            "true": str(classes[int(truth[i])]),
            "predicted": str(classes[int(predicted[i])]),
            "confidence": round(float(confidence[i]), 4),
        }
        if gallery_dir is not None:
            path = gallery_dir / f"{rank:02d}-test{i}.png"
            _to_image(test_x[i]).save(path)
            entry["path"] = str(path)
        gallery.append(entry)
    return {
        "accuracy": float((predicted == truth).float().mean()) if len(truth) else None,
        "classes": [str(c) for c in classes],
        "confusion": confusion.tolist(),
        "per_class": per_class,
        "misclassified": gallery,
        "misclassified_total": int(len(wrong)),
    }


def _to_image(x: torch.Tensor) -> Image.Image:
    arr = x.cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], "L")
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), "RGB")


def image_tensor(data: bytes, input_shape: Sequence[int], name: str = "the file") -> torch.Tensor:
    """An image file's bytes as the float tensor 1×C×H×W in [0, 1] that ``load_model``'s model takes:
    upright, converted and resized exactly as folder datasets are read."""
    channels, height, width = (int(v) for v in input_shape)
    try:
        array, _ = read_image(data, (width, height))
    except DECODE_ERRORS as exc:
        raise ImageInputError(
            f"{name} is not an image that can be read ({type(exc).__name__}); give a PNG, "
            f"JPEG, BMP, GIF, TIFF or WebP file."
        ) from None
    return torch.from_numpy(to_channels(array, channels)).float().div_(255).unsqueeze(0)


@torch.inference_mode()
def top_predictions(model: CandidateNet, x: torch.Tensor, k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one image, with their probabilities."""
    model.eval()
    probs = torch.softmax(model(x).float(), dim=1)[0]
    values, indices = probs.topk(min(k, len(probs)))
    return [(str(model.classes[int(i)]), float(v)) for v, i in zip(values, indices)]
