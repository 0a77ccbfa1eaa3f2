"""Tests for automodel.data: every source is written here in its real on-disk format."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import socket
import stat
import struct
import zipfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from automodel import data as D
from automodel.data import DatasetError, ImageData, load_dataset
from automodel.data.archive import ExtractLimits, safe_extract_zip
from automodel.data.builtin import FASHION_CLASSES, read_idx
from automodel.data.splits import stratified_split

# ----------------------------------------------------------------------------- helpers


def tree(root: Path) -> set[str]:
    """Every path under root, relative, as text (symlinks not followed)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def save_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (20, 12), value=None, fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if value is None:
        value = {"L": 90, "RGB": (10, 120, 230), "RGBA": (255, 0, 0, 0), "LA": (50, 255), "P": 3}[mode]
    Image.new(mode, size, value).save(path, format=fmt)
    return path


def all_images(d: ImageData) -> torch.Tensor:
    return torch.cat([d.train_x, d.val_x, d.test_x])


def all_labels(d: ImageData) -> torch.Tensor:
    return torch.cat([d.train_y, d.val_y, d.test_y])


def check_invariants(d: ImageData) -> None:
    c, h, w = d.input_shape
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.is_contiguous() and x.device.type == "cpu"
        assert x.shape[1:] == (c, h, w) and x.shape[0] == y.shape[0]
        if len(y):
            assert 0 <= int(y.min()) and int(y.max()) < d.num_classes
    assert len(d.mean) == len(d.std) == c
    scaled = d.train_x.double() / 255
    for ch in range(c):
        assert d.mean[ch] == pytest.approx(float(scaled[:, ch].mean()), abs=1e-9)
        assert d.std[ch] == pytest.approx(max(float(scaled[:, ch].std(unbiased=False)), 1e-3), abs=1e-9)


def make_zip(path: Path, entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, payload in entries.items():
            zf.writestr(name, payload)
    return path


def png_bytes(size=(20, 12), value=(10, 120, 230)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, value).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails at once, as it would on an offline machine."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_classes_and_split_sizes():
    d = load_dataset("digits", val_fraction=0.15, seed=0)
    check_invariants(d)
    assert d.name == "digits" and d.classes == [str(i) for i in range(10)]
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.train_y) + len(d.val_y) + len(d.test_y) == 1797
    assert len(d.test_y) == pytest.approx(0.2 * 1797, abs=10)
    assert len(d.val_y) == pytest.approx(0.15 * (1797 - len(d.test_y)), abs=10)
    assert int(all_images(d).max()) == 255  # 16 * 255 / 16
    # Stratified: every class is in every split in proportion.
    for cls in range(10):
        n_test, n_train = int((d.test_y == cls).sum()), int((d.train_y == cls).sum())
        assert 0.15 < n_test / (n_test + n_train + int((d.val_y == cls).sum())) < 0.25


def test_digits_splits_are_disjoint_and_cover_the_file():
    d = load_dataset("digits")
    table = np.loadtxt(D.DIGITS_FILE, delimiter=",", dtype=np.int64)
    expected = np.rint(table[:, :64] * 255 / 16).astype(np.uint8)
    got = all_images(d).reshape(-1, 64).numpy()
    rows = lambda a: sorted(map(bytes, a))  # noqa: E731 - multiset of rows
    assert rows(got) == rows(expected)  # every line used exactly once across the three splits
    assert sorted(all_labels(d).tolist()) == sorted(table[:, 64].tolist())


def test_digits_deterministic_per_seed_and_test_split_fixed():
    a, b, c = load_dataset("digits", seed=1), load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.val_x, c.val_x)
    assert torch.equal(a.test_x, c.test_x) and torch.equal(a.test_y, c.test_y)


def test_digits_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_dataset("digits", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_digits_zero_validation_fraction_and_bad_fraction():
    d = load_dataset("digits", val_fraction=0.0)
    assert d.val_x.shape == (0, 1, 8, 8) and len(d.train_y) + len(d.test_y) == 1797
    with pytest.raises(DatasetError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)


def test_stratified_split_keeps_one_per_class():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    kept, taken = stratified_split(labels, 0.5, seed=3)
    assert sorted(kept.tolist() + taken.tolist()) == list(range(len(labels)))
    assert set(labels[kept].tolist()) == {0, 1, 2}  # the single-image class stays in training
    assert int((labels[taken] == 2).sum()) == 5


# ----------------------------------------------------------------------------- CIFAR


def known_image() -> np.ndarray:
    c, r, w = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((c * 80 + r * 5 + w) % 256).astype(np.uint8)  # 3×32×32, different per channel/row/col


def write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)  # the published files are Python 2 pickles


def write_cifar10(root: Path, per_batch: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[0] = known_image().reshape(3072)  # the published row layout: 1024 R, 1024 G, 1024 B
        write_pickle(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"data": data,
                b"labels": [i % 10 for i in range(per_batch)],
                b"filenames": [],
            },
        )
    write_pickle(
        folder / "batches.meta",
        {
            b"label_names": [
                n.encode()
                for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
            ],
            b"num_cases_per_batch": per_batch,
            b"num_vis": 3072,
        },
    )
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", 200), ("test", 40)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[0] = known_image().reshape(3072)
        write_pickle(
            folder / name,
            {b"data": data, b"fine_labels": [i % 100 for i in range(n)], b"coarse_labels": [i % 20 for i in range(n)]},
        )
    write_pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"class{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"super{i}".encode() for i in range(20)],
        },
    )
    return folder


def forbid_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a download was attempted although the files exist")

    for cls in ("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST"):
        monkeypatch.setattr(torchvision.datasets, cls, fail)


@pytest.mark.parametrize("download", [False, True])
def test_cifar10_from_pickles(tmp_path, monkeypatch, download):
    write_cifar10(tmp_path)
    forbid_download(monkeypatch)
    d = load_dataset("cifar10", tmp_path, download=download, val_fraction=0.2)
    check_invariants(d)
    assert d.classes[:3] == ["airplane", "automobile", "bird"] and d.num_classes == 10
    assert d.input_shape == (3, 32, 32)
    assert len(d.train_y) + len(d.val_y) == 100 and len(d.val_y) == 20 and len(d.test_y) == 20
    assert torch.equal(d.test_x[0], torch.from_numpy(known_image()))
    assert d.test_y.tolist() == [i % 10 for i in range(20)]
    # The known image sits at channel 1 (green), row 2, column 7 = 80 + 10 + 7.
    assert int(d.test_x[0, 1, 2, 7]) == 97 and int(d.test_x[0, 2, 31, 0]) == (160 + 155) % 256
    train = torch.cat([d.train_x, d.val_x])
    assert sum(torch.equal(img, torch.from_numpy(known_image())) for img in train) == 5  # one per batch


def test_cifar100_from_pickles(tmp_path, monkeypatch):
    write_cifar100(tmp_path)
    forbid_download(monkeypatch)
    d = load_dataset("cifar-100", tmp_path)
    check_invariants(d)
    assert d.name == "cifar100" and d.num_classes == 100 and d.classes[42] == "class42"
    assert len(d.test_y) == 40 and len(d.train_y) + len(d.val_y) == 200
    assert torch.equal(d.test_x[0], torch.from_numpy(known_image()))
    assert d.test_y[:5].tolist() == [0, 1, 2, 3, 4]


def test_cifar_download_failure_is_one_sentence(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", tmp_path / "data", download=True)
    message = str(err.value)
    assert "cifar10 could not be downloaded into" in message and "cifar-10-batches-py" in message
    assert "by hand" in message and "\n" not in message


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DatasetError, match="cifar-100-python"):
        load_dataset("cifar100", tmp_path, download=False)
    with pytest.raises(DatasetError, match="FashionMNIST"):
        load_dataset("fashion-mnist", tmp_path, download=False)


def test_malicious_pickle_is_refused(tmp_path):
    folder = write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    write_pickle(folder / "batches.meta", {b"label_names": Evil()})
    with pytest.raises(DatasetError, match="batches.meta"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not (tmp_path / "pwned").exists()


def test_cifar_wrong_shape_is_refused(tmp_path):
    folder = write_cifar10(tmp_path)
    write_pickle(folder / "test_batch", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
    with pytest.raises(DatasetError, match="test_batch"):
        load_dataset("cifar10", tmp_path, download=False)


# ----------------------------------------------------------------------------- MNIST / Fashion-MNIST


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, gz: bool, n_train: int = 50, n_test: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0] = 0
        images[0, 2, 5] = 255  # a marker at row 2, column 5
        labels = np.arange(n) % 10
        for stem, payload in (
            (f"{prefix}-images-idx3-ubyte", idx_images(images)),
            (f"{prefix}-labels-idx1-ubyte", idx_labels(labels)),
        ):
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / stem).write_bytes(payload)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name,sub", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_datasets(tmp_path, monkeypatch, gz, name, sub):
    write_idx_set(tmp_path / sub / "raw", gz)
    forbid_download(monkeypatch)
    d = load_dataset(name, tmp_path, seed=4)
    check_invariants(d)
    assert d.name == name and d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert len(d.test_y) == 20 and len(d.train_y) + len(d.val_y) == 50 and len(d.val_y) == 10
    assert int(d.test_x[0, 0, 2, 5]) == 255 and int(d.test_x[0].sum()) == 255
    assert d.test_y.tolist() == [i % 10 for i in range(20)]
    expected = [str(i) for i in range(10)] if name == "mnist" else list(FASHION_CLASSES)
    assert d.classes == expected
    if name == "fashion-mnist":
        assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"


def test_idx_parser_reads_rows_then_columns(tmp_path):
    images = np.zeros((3, 4, 6), np.uint8)
    images[1, 3, 5] = 9
    (tmp_path / "img").write_bytes(idx_images(images))
    (tmp_path / "lab.gz").write_bytes(gzip.compress(idx_labels(np.array([7, 8, 9]))))
    parsed = read_idx(tmp_path / "img")
    assert parsed.shape == (3, 4, 6) and parsed[1, 3, 5] == 9 and int(parsed.sum()) == 9
    assert read_idx(tmp_path / "lab.gz").tolist() == [7, 8, 9]


def test_idx_bad_magic(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder, gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 1234, 0))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path, download=False)


def test_mnist_real_torchvision_download_offline(tmp_path, no_network):
    """torchvision's own download code runs, meets no network, and the failure is told plainly."""
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path)
    assert "mnist could not be downloaded into" in str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)


# ----------------------------------------------------------------------------- image folders


def make_flat(root: Path, per_class: int = 6) -> Path:
    """Three classes: grey PNGs, RGB JPEGs, transparent RGBA PNGs; one odd size per class."""
    for i in range(per_class):
        size = (7, 9) if i == 0 else (20, 12)  # (W, H): non-square, most common 20×12
        save_image(root / "ant" / f"{i}.png", "L", size, value=10 * i)
        save_image(root / "bee" / f"{i}.jpg", "RGB", size, value=(200, 30, 30 + i))
        save_image(root / "cat" / f"{i}.png", "RGBA", size, value=(255, 0, 0, 0))
    return root


def test_flat_folder_mixed_modes_become_rgb(tmp_path):
    d = load_dataset(str(make_flat(tmp_path / "pets")), seed=1)
    check_invariants(d)
    assert d.name == str(tmp_path / "pets")
    assert d.classes == ["ant", "bee", "cat"] and d.input_shape == (3, 12, 20)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (12, 3, 3)  # 1 test + 1 val per class
    assert d.skipped == 0 and d.ignored == 0
    x, y = all_images(d), all_labels(d)
    assert bool((x[y == 2] == 255).all())  # fully transparent → white background
    bee = x[y == 1].float()
    assert bee[:, 0].mean() > 150 and bee[:, 1].mean() < 80  # red stays in the red channel
    ant = x[y == 0]
    assert torch.equal(ant[:, 0], ant[:, 1]) and torch.equal(ant[:, 1], ant[:, 2])  # grey → equal channels


def test_one_colour_image_makes_all_rgb(tmp_path):
    save_image(tmp_path / "m" / "a" / "0.png", "RGB", (6, 6), value=(0, 0, 255))
    for cls in ("a", "b"):
        for i in range(1, 4):
            save_image(tmp_path / "m" / cls / f"{i}.png", "L", (6, 6), value=100)
    save_image(tmp_path / "m" / "b" / "4.gif", "P", (6, 6), value=7)  # grey palette image
    d = load_dataset(str(tmp_path / "m"))
    assert d.input_shape == (3, 6, 6) and len(all_labels(d)) == 8
    assert int((all_images(d)[:, 2] == 255).all(dim=(1, 2)).sum()) == 1  # the blue one, channels kept


def test_grey_palette_images_stay_one_channel(tmp_path):
    for cls in ("a", "b"):
        for i in range(2):
            save_image(tmp_path / "p" / cls / f"{i}.gif", "P", (6, 6), value=i)
    assert load_dataset(str(tmp_path / "p")).input_shape == (1, 6, 6)


def test_flat_folder_grey_only_stays_one_channel_and_is_deterministic(tmp_path):
    for cls in ("a", "b"):
        for i in range(5):
            save_image(tmp_path / "g" / cls / f"{i}.png", "L", (10, 10), value=i * 40 + (cls == "b"))
    first = load_dataset(str(tmp_path / "g"), seed=3)
    second = load_dataset(str(tmp_path / "g"), seed=3)
    assert first.input_shape == (1, 10, 10)
    assert torch.equal(first.val_x, second.val_x) and torch.equal(first.test_x, second.test_x)
    # Every image is unique, so disjointness can be checked image by image.
    seen = [bytes(img.numpy().tobytes()) for img in all_images(first)]
    assert len(seen) == len(set(seen)) == 10


def test_small_classes_still_give_non_empty_splits():
    labels = torch.tensor([0, 0, 1, 1, 1])
    kept, taken = stratified_split(labels, 0.15, seed=0)
    assert len(taken) == 1 and int(labels[taken][0]) == 1  # from the largest class
    assert len(stratified_split(labels, 0.0, seed=0)[1]) == 0
    assert len(stratified_split(torch.tensor([0, 1]), 0.5, seed=0)[1]) == 0  # nothing to spare


def test_large_grey_jpegs_are_decoded_small_and_stay_grey(tmp_path):
    for cls in ("a", "b"):
        for i in range(2):
            save_image(tmp_path / "j" / cls / f"{i}.jpg", "L", (256, 128), value=60 * i + 20)
    d = load_dataset(str(tmp_path / "j"))
    assert d.input_shape == (1, 32, 64)
    assert sorted(set(all_images(d).flatten().tolist())) == [20, 80]


def test_large_images_are_capped_keeping_aspect(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            save_image(tmp_path / "big" / cls / f"{i}.png", "RGB", (200, 100))
    d = load_dataset(str(tmp_path / "big"))
    assert d.input_shape == (3, 32, 64)
    assert load_dataset(str(tmp_path / "big"), max_side=100).input_shape == (3, 50, 100)


def test_bad_files_are_skipped_or_ignored(tmp_path):
    root = make_flat(tmp_path / "pets", per_class=3)
    good = (root / "ant" / "1.png").read_bytes()
    (root / "ant" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "bee" / "empty.png").write_bytes(b"")
    (root / "bee" / "garbage.jpg").write_bytes(b"not a jpeg at all")
    (root / "bee" / "notes.txt").write_text("hello")
    (root / "cat" / ".DS_Store").write_bytes(b"\0")
    save_image(root / "cat" / ".thumbs" / "0.png")  # hidden folder inside a class
    (root / "__MACOSX" / "cat").mkdir(parents=True)
    (root / "__MACOSX" / "cat" / "._0.png").write_bytes(b"\0")
    (root / "README.md").write_text("loose file at the top")
    d = load_dataset(str(root))
    assert d.skipped == 3 and d.ignored == 5
    assert len(all_labels(d)) == 9


def test_non_utf8_file_name_loads(tmp_path):
    root = tmp_path / "odd"
    for cls in ("a", "b"):
        for i in range(2):
            save_image(root / cls / f"{i}.png", "RGB", (8, 8))
    odd_dir = os.fsencode(root / "b")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(os.fsdecode(os.path.join(odd_dir, b"\xff\xfe.png")))
    os.mkdir(os.path.join(os.fsencode(root), b"c\xff"))
    for i in range(2):
        Image.new("RGB", (8, 8), (9, 9, 9)).save(os.fsdecode(os.path.join(os.fsencode(root), b"c\xff", b"%d.png" % i)))
    d = load_dataset(str(root))
    assert len(all_labels(d)) == 7 and d.skipped == 0
    assert d.classes == ["a", "b", "c\ufffd"]  # printable, JSON-safe class name


def test_split_layout(tmp_path):
    root = tmp_path / "split"
    for cls, n_train, n_test in (("dog", 6, 2), ("cat", 5, 3), ("emu", 4, 0)):
        for i in range(n_train):
            save_image(root / "train" / cls / f"{i}.png", "RGB", (16, 16), value=(i, 0, 0))
        for i in range(n_test):
            save_image(root / "test" / cls / f"{i}.png", "RGB", (16, 16), value=(0, i, 0))
    (root / "labels.csv").write_text("x")
    d = load_dataset(str(root), val_fraction=0.2)
    check_invariants(d)
    assert d.classes == ["cat", "dog", "emu"]
    assert sorted(d.test_y.tolist()) == [0, 0, 0, 1, 1]
    assert len(d.train_y) + len(d.val_y) == 15 and len(d.val_y) == 3
    assert bool((d.test_x[:, 0] == 0).all()) and d.ignored == 1  # test images come from test/


def test_split_layout_test_class_must_exist_in_train(tmp_path):
    root = tmp_path / "split"
    for cls in ("a", "b"):
        save_image(root / "train" / cls / "0.png")
    save_image(root / "test" / "zebra" / "0.png")
    with pytest.raises(DatasetError, match="zebra"):
        load_dataset(str(root))


def test_one_class_is_refused(tmp_path):
    for i in range(3):
        save_image(tmp_path / "solo" / "only" / f"{i}.png")
    with pytest.raises(DatasetError, match="at least two class folders.*found 1"):
        load_dataset(str(tmp_path / "solo"))


def test_no_readable_images(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "txt" / cls).mkdir(parents=True)
        (tmp_path / "txt" / cls / "x.txt").write_text("no")
    with pytest.raises(DatasetError, match="no readable images"):
        load_dataset(str(tmp_path / "txt"))


def test_missing_path_and_unknown_name(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*digits, cifar10"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'.*digits, cifar10"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="not a .zip"):
        load_dataset(str(save_image(tmp_path / "pic.png")))


# ----------------------------------------------------------------------------- zips


def zip_folder(folder: Path, zip_path: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + str(p.relative_to(folder)))
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)
    return zip_path


def test_zip_of_flat_folder_default_work_dir_and_cache(tmp_path):
    zip_path = zip_folder(make_flat(tmp_path / "src"), tmp_path / "pets.zip")
    data_dir = tmp_path / "data"
    d = load_dataset(str(zip_path), data_dir)
    folder_version = load_dataset(str(tmp_path / "src"))
    assert d.name == str(zip_path) and d.classes == ["ant", "bee", "cat"]
    assert torch.equal(d.test_x, folder_version.test_x) and torch.equal(d.train_y, folder_version.train_y)
    extracted = [p for p in (data_dir / "extracted").iterdir() if p.is_dir()]
    assert len(extracted) == 1 and len(extracted[0].name) == 12
    (extracted[0] / "ant" / "0.png").unlink()  # the cached copy is reused, not re-extracted
    again = load_dataset(str(zip_path), data_dir)
    assert len(all_labels(again)) == len(all_labels(d)) - 1


def test_zip_of_split_layout_with_wrapper_folder(tmp_path):
    root = tmp_path / "src"
    for part, n in (("train", 4), ("test", 2)):
        for cls in ("x", "y"):
            for i in range(n):
                save_image(root / part / cls / f"{i}.png", "L", (12, 6), value=i)
    zip_path = zip_folder(
        root,
        tmp_path / "a.zip",
        prefix="myphotos/",
        extra={"__MACOSX/myphotos/._x": b"\0", "myphotos/train/x/inner.zip": b"PK\x05\x06" + bytes(18)},
    )
    work = tmp_path / "work"
    d = load_dataset(str(zip_path), work_dir=work)
    assert d.classes == ["x", "y"] and d.input_shape == (1, 6, 12)
    assert len(d.test_y) == 4 and len(d.train_y) + len(d.val_y) == 8
    assert d.ignored == 1  # the nested zip is a plain ignored file (the __MACOSX folder is looked past)
    assert (work / "myphotos" / "train" / "x" / "inner.zip").is_file()
    assert not (work / "myphotos" / "train" / "x" / "inner").exists()


def test_zip_wrapper_around_flat_layout(tmp_path):
    zip_path = zip_folder(make_flat(tmp_path / "src", per_class=2), tmp_path / "w.zip", prefix="wrap/")
    d = load_dataset(str(zip_path), work_dir=tmp_path / "work")
    assert d.classes == ["ant", "bee", "cat"] and len(all_labels(d)) == 6


def symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/a.png", png_bytes())
        info = zipfile.ZipInfo("ok/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return path


def lying_zip(path: Path) -> Path:
    """The central directory claims 10 bytes for an entry that holds 300,000."""
    make_zip(path, {"ok/first.png": png_bytes(), "ok/big.bin": b"\1" * 300_000}, zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")  # the last central directory record is big.bin's
    struct.pack_into("<I", raw, cd + 24, 10)
    path.write_bytes(bytes(raw))
    return path


HOSTILE = {
    "parent": (lambda p: make_zip(p, {"ok.png": b"x", "../evil.txt": b"evil"}), None, "unsafe entry"),
    "nested parent": (lambda p: make_zip(p, {"a/../../evil.txt": b"evil"}), None, "unsafe entry"),
    "absolute": (lambda p: make_zip(p, {"/abs.txt": b"evil"}), None, "unsafe entry"),
    "drive": (lambda p: make_zip(p, {"C:\\evil.txt": b"evil"}), None, "unsafe entry"),
    "backslash parent": (lambda p: make_zip(p, {"..\\evil.txt": b"evil"}), None, "unsafe entry"),
    "symlink": (symlink_zip, None, "symbolic link"),
    "bomb ratio": (lambda p: make_zip(p, {"zeros.bin": bytes(50 * 2**20)}), ExtractLimits(), "zip bomb"),
    "bomb total": (
        lambda p: make_zip(p, {"a.bin": bytes(3 * 2**20), "b.bin": bytes(3 * 2**20)}),
        ExtractLimits(max_total_bytes=4 * 2**20, max_ratio=1e9),
        "more than the limit",
    ),
    "too many files": (
        lambda p: make_zip(p, {f"{i}.txt": b"x" for i in range(11)}),
        ExtractLimits(max_files=10),
        "more than the limit of 10",
    ),
    "lying header": (lying_zip, None, "could not be unpacked|more bytes"),
    "not a zip": (lambda p: p.write_bytes(b"this is text, not a zip"), None, "not a readable zip"),
    "truncated zip": (
        lambda p: p.write_bytes(make_zip(p, {"a.png": png_bytes()}).read_bytes()[:40]),
        None,
        "not a readable zip",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_zips_are_refused_and_write_nothing(tmp_path, case):
    build, limits, message = HOSTILE[case]
    zip_path = tmp_path / "in" / "upload.zip"
    zip_path.parent.mkdir()
    build(zip_path)
    before = tree(tmp_path)
    with pytest.raises(DatasetError, match=message):
        safe_extract_zip(zip_path, tmp_path / "dest", limits)
    assert tree(tmp_path) == before  # nothing outside, and nothing left inside either
    with pytest.raises(DatasetError):
        load_dataset(str(zip_path), tmp_path / "data", work_dir=tmp_path / "work", limits=limits)
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs.txt").exists()


def test_existing_symlink_in_destination_is_not_followed(tmp_path):
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    zip_path = make_zip(tmp_path / "z.zip", {"link/x.txt": b"escape"})
    with pytest.raises(DatasetError, match="outside"):
        safe_extract_zip(zip_path, dest)
    assert list(outside.iterdir()) == []


def test_safe_extract_zip_returns_destination(tmp_path):
    zip_path = make_zip(tmp_path / "z.zip", {"a/b.png": png_bytes(), "a/c/": b"", "./d.txt": b"d"})
    out = safe_extract_zip(zip_path, tmp_path / "dest")
    assert out == tmp_path / "dest"
    assert tree(out) == {"a", "a/b.png", "a/c", "d.txt"}


def test_bytes_beyond_the_header_are_caught(tmp_path, monkeypatch):
    """zipfile already stops at the header's size; the extractor's own count guards regardless."""
    zip_path = make_zip(tmp_path / "z.zip", {"a.txt": b"small", "b.txt": b"small"})
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *a, **k: io.BytesIO(b"x" * 1000))
    with pytest.raises(DatasetError, match="more bytes than"):
        safe_extract_zip(zip_path, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
