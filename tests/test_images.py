"""One image file read as a viewer shows it: EXIF orientation (all eight values), sizes reported
upright, and the same pixels for training (folders, zips) and prediction (the page, predict)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automodel.data import load_dataset
from automodel.data.images import ORIENTATION_TAG, read_image, upright_size
from automodel.training.report import image_tensor

W, H = 24, 16  # not square, so a turn by 90° shows in the size too
INVERSE = {  # the transposition that stores an upright image under each EXIF orientation
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright() -> Image.Image:
    """An image no mirror or turn leaves unchanged: a red block in the top-left corner, a green
    bar along the bottom, a blue-to-black gradient from left to right."""
    arr = np.zeros((H, W, 3), np.uint8)
    arr[..., 2] = np.linspace(255, 0, W, dtype=np.uint8)[None, :]
    arr[:6, :6] = (255, 0, 0)
    arr[-3:, :] = (0, 255, 0)
    return Image.fromarray(arr, "RGB")


def stored(orientation: int, fmt: str = "PNG") -> bytes:
    """The upright image as a camera would store it under ``orientation``: turned pixels, plus the tag."""
    turn = INVERSE[orientation]
    im = upright() if turn is None else upright().transpose(turn)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    out = io.BytesIO()
    im.save(out, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_read_upright(orientation, tmp_path):
    path = tmp_path / f"o{orientation}.png"
    path.write_bytes(stored(orientation))
    expected = np.asarray(upright())
    array, colour = read_image(path)
    assert colour and array.shape == expected.shape
    assert np.array_equal(array, expected)
    assert upright_size(path) == (W, H)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_photos_are_turned_upright_also_when_decoded_at_a_reduced_scale(orientation, tmp_path):
    big = upright().resize((W * 16, H * 16), Image.Resampling.NEAREST)
    turn = INVERSE[orientation]
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    path = tmp_path / "photo.jpg"
    big.transpose(turn).save(path, "JPEG", quality=95, exif=exif)
    assert upright_size(path) == big.size
    array, _ = read_image(path, (W, H))  # the draft scale must follow the stored size
    expected = np.asarray(upright()).astype(int)
    assert array.shape == expected.shape
    assert np.abs(array.astype(int) - expected).mean() < 12


def arrow_folder(root: Path) -> Path:
    """Two classes, "up" and "right"; half of each stored turned with orientation 8, as phones do."""
    up = Image.new("L", (20, 20), 0)
    for row in range(4, 16):
        up.paste(255, (9, row, 11, row + 1))
    for k in range(5):
        up.paste(255, (9 - k, 4 + k, 11 + k, 5 + k))
    right = up.transpose(Image.Transpose.ROTATE_270)
    for name, im in (("up", up), ("right", right)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(6):
            exif = Image.Exif()
            if i % 2:
                exif[ORIENTATION_TAG] = 8
                im.transpose(Image.Transpose.ROTATE_270).save(folder / f"{i}.jpg", "JPEG", quality=95, exif=exif)
            else:
                im.save(folder / f"{i}.jpg", "JPEG", quality=95)
    return root


def test_a_folder_of_turned_phone_photos_trains_on_the_images_as_shown(tmp_path):
    data = load_dataset(str(arrow_folder(tmp_path / "arrows")), val_fraction=0.0)
    x = np.concatenate([data.train_x.numpy(), data.test_x.numpy()])
    y = np.concatenate([data.train_y.numpy(), data.test_y.numpy()])
    up = data.classes.index("up")
    for image, label in zip(x[:, 0].astype(int), y):
        columns, rows = image.sum(0), image.sum(1)
        # an up arrow is a vertical stroke (its bright pixels spread over rows more than columns)
        assert (np.count_nonzero(rows > 200) > np.count_nonzero(columns > 200)) == (label == up)


def test_a_zip_of_turned_photos_is_read_upright_too(tmp_path):
    folder = arrow_folder(tmp_path / "arrows")
    archive = tmp_path / "arrows.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.jpg")):
            zf.write(path, path.relative_to(folder.parent))
    from_zip = load_dataset(str(archive), data_dir=tmp_path / "data", val_fraction=0.0)
    from_folder = load_dataset(str(folder), val_fraction=0.0)
    assert np.array_equal(from_zip.train_x.numpy(), from_folder.train_x.numpy())


@pytest.mark.parametrize("orientation", [2, 6, 7])
def test_a_prediction_reads_the_upload_upright_as_training_did(orientation):
    x = image_tensor(stored(orientation), (3, H, W))
    expected = np.asarray(upright()).transpose(2, 0, 1) / 255
    assert x.shape == (1, 3, H, W)
    assert np.allclose(x[0].numpy(), expected, atol=1e-6)
