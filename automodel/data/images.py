"""One image file → pixels, as every viewer shows it: the one reader behind folder datasets, zips,
the page's "Try the model" and ``automodel predict``, so that training and prediction see the same
pixels.

- **Upright**: a phone stores a turned photo as unturned pixels plus an EXIF orientation tag
  (values 2–8: mirrored and/or turned by 90°, 180° or 270°). The tag is applied, as browsers and
  ``torchvision.io.decode_jpeg(..., apply_exif_orientation=True)`` do; sizes are reported upright too.
- **RGB or grey**: any PIL mode becomes RGB (transparency composited onto white, 16-bit greys
  scaled to 8 bits); :func:`is_colour` says whether the image really had colour.
- **Sized**: JPEGs are decoded at a reduced scale when that still covers the size asked for
  (``draft``), then resized bilinearly. Files over ``MAX_IMAGE_PIXELS`` are refused as possible
  decompression bombs.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MAX_IMAGE_PIXELS = 40_000_000  # larger images are skipped as possible decompression bombs

DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    MemoryError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

ORIENTATION_TAG = 0x0112
_TURNS = {  # EXIF orientation → the PIL transposition that shows it upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDEWAYS = frozenset({5, 6, 7, 8})  # width and height swap
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

Source = str | Path | bytes


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1–8) from the file's header; 1 (as stored) when absent or unreadable."""
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def read_header(path: Source) -> tuple[tuple[int, int], str] | None:
    """((W, H) as a viewer shows the image, its PIL mode) from the header only; None if unreadable
    or over ``MAX_IMAGE_PIXELS``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(path) as im:
                (w, h), mode = im.size, im.mode
                turned = orientation(im) in _SIDEWAYS
    except DECODE_ERRORS:
        return None
    if not 0 < w * h <= MAX_IMAGE_PIXELS:
        return None
    return ((h, w) if turned else (w, h)), mode


def upright_size(path: Source) -> tuple[int, int] | None:
    """(W, H) as a viewer shows the image, from the header only; None if unreadable or too large."""
    header = read_header(path)
    return None if header is None else header[0]


def is_grey_mode(mode: str) -> bool:
    """Whether a PIL mode holds grey values only (a palette mode may hold either)."""
    return mode in _GRAY_MODES


def read_image(path: Source, size: tuple[int, int] | None = None) -> tuple[np.ndarray, bool]:
    """The image upright as an H×W×3 uint8 array (resized to ``size`` = (W, H) when given) and
    whether it is colour. Raises one of ``DECODE_ERRORS`` when the file cannot be decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with _open(path) as im:
            turn = orientation(im)
            if im.format == "JPEG" and size is not None:
                stored = (size[1], size[0]) if turn in _SIDEWAYS else size
                im.draft(im.mode, stored)  # decode at a reduced scale when shrinking: much faster
            im.load()
            colour = is_colour(im)
            rgb = to_rgb(im)
    if turn in _TURNS:
        rgb = rgb.transpose(_TURNS[turn])
    if size is not None and rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8), colour


def decode(path: Source, size: tuple[int, int]) -> tuple[np.ndarray, bool] | None:
    """:func:`read_image` at ``size``, or None when the file is truncated, empty or corrupt."""
    try:
        return read_image(path, size)
    except DECODE_ERRORS:
        return None


def is_colour(im: Image.Image) -> bool:
    """Colour by mode; a palette image is colour only if it uses non-grey colours."""
    if is_grey_mode(im.mode):
        return False
    if im.mode in ("P", "PA"):
        rgb = np.asarray(im.convert("RGB"))
        return not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
    return True


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode → RGB; transparency is composited onto white."""
    if im.mode in _WIDE_GRAY_MODES:
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and arr.max() > 255:  # 16-bit greys
            arr = arr * (255.0 / 65535.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im.convert("RGBA")).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """An H×W×3 uint8 array as C×H×W with C = 3, or C = 1 (ITU-R 601 luma, as PIL's ``L``)."""
    if channels == 1:
        return np.array(Image.fromarray(array).convert("L"), dtype=np.uint8)[None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _open(path: Source) -> Image.Image:
    return Image.open(io.BytesIO(path) if isinstance(path, bytes) else path)
