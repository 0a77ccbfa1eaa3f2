"""A saved model's answers for image files: ``automodel predict`` and :func:`predict`.

Every file is read exactly as training read its folder (``data.images``: upright by its EXIF
orientation, any mode to RGB, grey when the model is grey, resized to the model's input size), so
a person never writes the preprocessing themselves. Folders are searched for image files (hidden
files and other extensions left out); a named file that is not an image is refused with one
sentence, an unreadable image found inside a folder is answered with its error instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from automodel.data.images import DECODE_ERRORS, IMAGE_EXTENSIONS, read_image, to_channels
from automodel.errors import ImageInputError
from automodel.training.model import CandidateNet

BATCH = 64


@dataclass(frozen=True)
class Prediction:
    """One image's most probable classes, best first, with their probabilities."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""  # why an image found in a folder could not be read

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    @property
    def confidence(self) -> float | None:
        return self.top[0][1] if self.top else None


def predict(
    model: str | Path | CandidateNet,
    images: str | Path | Iterable[str | Path],
    *,
    top: int = 3,
    device: str | torch.device = "cpu",
    batch_size: int = BATCH,
) -> list[Prediction]:
    """Classify image files and folders of them with a checkpoint (a path, or a model from
    ``load_model``). Returns one :class:`Prediction` per image file, in the order given (a
    folder's files sorted by path)."""
    if top < 1:
        raise ImageInputError(f"top {top} is not accepted; give a whole number of classes from 1.")
    if isinstance(model, (str, Path)):
        from automodel.training.export import load_model

        model = load_model(model, map_location=device)
    model = model.to(device).eval()
    files = list(image_paths([images] if isinstance(images, (str, Path)) else images))
    channels, height, width = (int(v) for v in model.input_shape)
    out: list[Prediction] = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for chunk in _chunks(files, batch_size):
            arrays = list(pool.map(lambda entry: _read(entry, channels, (width, height)), chunk))
            good = [a for a in arrays if isinstance(a, np.ndarray)]
            answers: Iterator[list[tuple[str, float]]] = iter(_classify(model, good, top, device) if good else [])
            for (path, _named), array in zip(chunk, arrays):
                out.append(
                    Prediction(str(path), next(answers))
                    if isinstance(array, np.ndarray)
                    else Prediction(str(path), error=str(array))
                )
    return out


def image_paths(sources: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    """Each image file named or found in a named folder, with whether it was named itself.
    A path that does not exist is refused with one sentence."""
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(path).parts)
            )
            if not found:
                raise ImageInputError(
                    f"folder {path} holds no image files; give image files or folders holding "
                    f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))} files."
                )
            yield from ((p, False) for p in found)
        elif path.is_file():
            yield path, True
        else:
            raise ImageInputError(f"{path} does not exist; give image files or folders of them.")


def _read(entry: tuple[Path, bool], channels: int, size: tuple[int, int]) -> np.ndarray | str:
    path, named = entry
    try:
        array, _ = read_image(path, size)
    except DECODE_ERRORS as exc:
        if named:
            raise ImageInputError(
                f"{path} is not an image that can be read ({type(exc).__name__}); give PNG, "
                f"JPEG, BMP, GIF, TIFF or WebP files."
            ) from None
        return f"not an image that can be read ({type(exc).__name__})"
    return to_channels(array, channels)


@torch.inference_mode()
def _classify(
    model: CandidateNet, arrays: Sequence[np.ndarray], top: int, device: str | torch.device
) -> list[list[tuple[str, float]]]:
    x = torch.from_numpy(np.stack(arrays)).to(device).float().div_(255)
    probs = torch.softmax(model(x).float(), dim=1)
    values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
    return [
        [(str(model.classes[int(i)]), float(v)) for v, i in zip(row_v, row_i)]
        for row_v, row_i in zip(values.tolist(), indices.tolist())
    ]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
