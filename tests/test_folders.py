"""Loading a folder of a person's photos: the image size setting, the description a person sees
before a search starts, the memory check before decoding, progress, and the decoded cache a resume
reads instead of decoding again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automodel.data import DatasetError, decoding, load_dataset
from automodel.data.folders import scan_folder, target_size


def photos(root: Path, counts: dict[str, int], size=(40, 30), fmt="JPEG") -> Path:
    """Class folders of small colour photos (each a different flat colour plus a gradient)."""
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        folder = root / cls
        folder.mkdir(parents=True)
        for i in range(n):
            arr = np.full((size[1], size[0], 3), rng.integers(0, 255, 3), np.uint8)
            arr[:, :, 0] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :]
            Image.fromarray(arr).save(folder / f"{i:03d}.{'jpg' if fmt == 'JPEG' else 'png'}", fmt)
    return root


def test_the_longer_side_is_the_image_size_given_larger_or_smaller(tmp_path):
    root = photos(tmp_path / "p", {"a": 5, "b": 5})
    assert load_dataset(str(root), image_size=20).input_shape == (3, 15, 20)
    assert load_dataset(str(root), image_size=80).input_shape == (3, 60, 80)  # asked for: enlarged
    assert load_dataset(str(root)).input_shape == (3, 30, 40)  # auto: never enlarged
    assert load_dataset(str(root), max_side=32).input_shape == (3, 24, 32)  # auto: capped


def test_target_size_keeps_the_aspect_of_the_most_common_size():
    sizes = [(400, 300)] * 3 + [(100, 100)]
    assert target_size(sizes, None, 64) == (64, 48)
    assert target_size(sizes, 128, 64) == (128, 96)
    assert target_size([(30, 20)], None, 64) == (30, 20)


def test_a_scan_describes_a_folder_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    root = photos(tmp_path / "p", {"cat": 12, "dog": 2})
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    monkeypatch.setattr(decoding, "decode", lambda *a: pytest.fail("a scan decodes nothing"))
    described = scan_folder(root, "p").describe(image_size=32)
    assert described["classes"] == {"cat": 12, "dog": 2} and described["imbalance"] == 6.0
    assert described["image_size"] == [32, 24] and described["channels"] == 3
    assert described["bytes"] == 14 * 3 * 32 * 24
    assert (described["skipped"], described["skipped_names"]) == (1, ["broken.jpg"])
    assert (described["ignored"], described["ignored_names"]) == (1, ["notes.txt"])


def test_a_set_too_large_for_the_free_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    root = photos(tmp_path / "p", {"a": 6, "b": 6})
    monkeypatch.setattr(decoding, "decode", lambda *a: pytest.fail("nothing is decoded"))
    monkeypatch.setattr(decoding, "free_memory", lambda: 10_000)
    with pytest.raises(DatasetError) as caught:
        load_dataset(str(root), image_size=64)
    message = str(caught.value)
    assert "12 images of 3×48×64" in message and "--image-size" in message and "now 64" in message
    assert "\n" not in message


def test_the_splits_are_slices_of_one_array_and_match_the_stacked_loader(tmp_path):
    root = photos(tmp_path / "p", {"a": 9, "b": 7, "c": 5})
    data = load_dataset(str(root), seed=3)
    base = data.train_x.untyped_storage().data_ptr()
    for split in (data.val_x, data.test_x):
        assert split.untyped_storage().data_ptr() == base  # no copies
    n = len(data.train_x) + len(data.val_x) + len(data.test_x)
    assert n == 21 and len(data.test_x) == round(9 * 0.2) + round(7 * 0.2) + round(5 * 0.2)
    again = load_dataset(str(root), seed=3)
    assert torch.equal(again.val_x, data.val_x) and torch.equal(again.test_y, data.test_y)


def test_progress_is_reported_and_ends_at_the_total(tmp_path, monkeypatch):
    root = photos(tmp_path / "p", {"a": 20, "b": 20})
    monkeypatch.setattr(decoding, "PROGRESS_EVERY_S", 0.0)
    seen: list[tuple[int, int]] = []
    load_dataset(str(root), on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (40, 40) and all(total == 40 for _, total in seen) and len(seen) > 2
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_resume_reads_the_decoded_cache_instead_of_decoding_again(tmp_path, monkeypatch):
    root = photos(tmp_path / "p", {"a": 6, "b": 6})
    cache = tmp_path / "run"
    first = load_dataset(str(root), cache_dir=cache, image_size=24)
    assert (cache / "decoded.pt").is_file()
    monkeypatch.setattr(decoding, "decode", lambda *a: pytest.fail("the cache is read, nothing decoded"))
    second = load_dataset(str(root), cache_dir=cache, image_size=24)
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert (second.classes, second.mean, second.std) == (first.classes, first.mean, first.std)


@pytest.mark.parametrize("change", ["new file", "touched", "other size", "other seed"])
def test_the_cache_is_not_used_when_the_files_or_settings_change(tmp_path, change):
    root = photos(tmp_path / "p", {"a": 6, "b": 6})
    cache = tmp_path / "run"
    load_dataset(str(root), cache_dir=cache, image_size=24)
    options = {"image_size": 24, "seed": 0}
    if change == "new file":
        Image.new("RGB", (40, 30), (1, 2, 3)).save(root / "a" / "new.png")
    elif change == "touched":
        path = root / "b" / "000.jpg"
        Image.new("RGB", (40, 30), (200, 0, 0)).save(path, "JPEG")
        os.utime(path, ns=(1, 1))
    elif change == "other size":
        options["image_size"] = 16
    else:
        options["seed"] = 1
    calls = []
    original = decoding.decode
    decoding_decode = lambda *a: calls.append(a) or original(*a)  # noqa: E731
    decoding.decode = decoding_decode
    try:
        data = load_dataset(str(root), cache_dir=cache, **options)
    finally:
        decoding.decode = original
    assert calls, "decoded again"
    if change == "new file":
        assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 13


def test_a_broken_cache_file_is_decoded_again(tmp_path):
    root = photos(tmp_path / "p", {"a": 6, "b": 6})
    cache = tmp_path / "run"
    cache.mkdir()
    (cache / "decoded.pt").write_bytes(b"not a torch file")
    data = load_dataset(str(root), cache_dir=cache)
    assert data.num_classes == 2 and len(data.train_x) > 0


def test_a_truncated_file_whose_header_reads_is_skipped_and_named(tmp_path):
    root = photos(tmp_path / "p", {"a": 6, "b": 6}, fmt="PNG")
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "zz-truncated.png").write_bytes(good[: len(good) // 2])
    data = load_dataset(str(root))
    assert data.skipped == 1 and data.skipped_names == ["zz-truncated.png"]
    assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 12
    described = data.describe()
    assert described["classes"] == {"a": 6, "b": 6} and described["skipped_names"] == ["zz-truncated.png"]
