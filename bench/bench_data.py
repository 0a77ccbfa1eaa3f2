"""Loading folders of photos: wall time, images per second, peak memory and the resume's reload,
against the floor of PIL alone decoding the same files (draft mode, resize) on all cores.

The folders are written here, reproducibly: JPEG mostly (some PNG and WebP), 0.3 to 12
megapixels, mixed aspect ratios, a share stored turned with an EXIF orientation tag, and content
whose entropy is near a photograph's (smooth colour fields, edges and grain), so that entropy
decoding costs what it costs on real photos.

    python bench/bench_data.py [--sets 1000:0.3-12,10000:0.3-2] [--sizes 32,64,128] [--work bench/out/data]

Each load runs in a child process, so its peak resident memory (``ru_maxrss``, from the operating
system) is its own; the decoded tensors' size is printed beside it. The floor is PIL's
``draft`` + ``load`` + ``resize`` over the same files in a process pool of every core, nothing
else. "resume" is the second load of the same folder with the run's cache, as a resume does it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("beach", "forest", "city", "snow", "desert")
ORIENTATION_TAG = 0x0112


def _photo(rng: np.random.Generator, width: int, height: int, cls: int) -> Image.Image:
    """A photo-like image: a smooth colour field tinted by its class, a few hard edges, sensor grain."""
    small = rng.random((max(2, height // 64), max(2, width // 64), 3))
    tint = np.array([(0.9, 0.8, 0.5), (0.2, 0.6, 0.2), (0.5, 0.5, 0.55), (0.95, 0.95, 1.0), (0.9, 0.6, 0.3)][cls])
    field = Image.fromarray((small * 255 * tint).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(field, dtype=np.int16)
    for _ in range(int(rng.integers(2, 6))):  # edges: bright or dark bands
        y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        arr[y0 : y0 + height // 8, x0 : x0 + width // 5] += int(rng.integers(-90, 90))
    arr += rng.normal(0, 6, arr.shape).astype(np.int16)  # grain
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_folder(root: Path, count: int, low_mp: float, high_mp: float, seed: int = 0) -> Path:
    """``count`` photos in five class folders (written once; a finished folder has ``.complete``)."""
    if (root / ".complete").exists():
        return root
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        mp = math_exp_uniform(rng, low_mp, high_mp)
        aspect = rng.choice((4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3))
        width = max(16, int((mp * 1e6 * aspect) ** 0.5))
        height = max(16, int(mp * 1e6 / width))
        fmt = rng.choices(("JPEG", "PNG", "WEBP"), (0.9, 0.05, 0.05))[0]
        jobs.append((str(root), i, width, height, i % len(CLASSES), fmt, rng.random() < 0.2, seed))
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_one, jobs, chunksize=8))
    (root / ".complete").write_text("ok\n")
    return root


def math_exp_uniform(rng: random.Random, low: float, high: float) -> float:
    """Log-uniform between low and high (as many small photos as large ones per doubling)."""
    import math

    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _write_one(job) -> None:
    root, i, width, height, cls, fmt, turned, seed = job
    rng = np.random.default_rng([seed, i])
    im = _photo(rng, width, height, cls)
    folder = Path(root) / CLASSES[cls]
    folder.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if turned:  # stored as a phone stores a portrait shot: turned pixels, orientation 6
        im = im.transpose(Image.Transpose.ROTATE_90)
        exif[ORIENTATION_TAG] = 6
    ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
    options = {"JPEG": {"quality": 90}, "PNG": {"compress_level": 1}, "WEBP": {"quality": 85}}[fmt]
    im.save(folder / f"{i:06d}.{ext}", fmt, exif=exif, **options)


# ------------------------------------------------------------------------------ measurements

LOAD = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from automodel.data import load_dataset
folder, size, cache = sys.argv[2], int(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
data = load_dataset(folder, image_size=size, cache_dir=cache if cache != "-" else None)
seconds = time.perf_counter() - started
tensors = sum(t.numel() for t in (data.train_x, data.val_x, data.test_x))
print(json.dumps({"seconds": seconds, "images": len(data.train_x) + len(data.val_x) + len(data.test_x),
                  "tensor_bytes": tensors, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "shape": list(data.input_shape)}))
"""

BASELINE = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import torch
from automodel.data import load_dataset
print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _floor_one(job) -> int:
    path, side = job
    with Image.open(path) as im:
        w, h = im.size
        scale = side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if im.format == "JPEG":
            im.draft("RGB", size)
        im.load()
        im.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    return 1


def pil_floor(folder: Path, side: int) -> float:
    """Seconds for PIL alone to draft-decode and resize every file, in a process pool of all cores."""
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".webp"))
    started = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        sum(pool.map(_floor_one, [(f, side) for f in files], chunksize=16))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="1000:0.3-12,10000:0.3-2", help="count:low-high megapixels, …")
    parser.add_argument("--sizes", default="32,64,128")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "data")
    args = parser.parse_args()
    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Pillow {Image.__version__}",
        flush=True,
    )
    base = _child(BASELINE, str(ROOT))["peak_rss"]
    print(f"a child process with torch and automodel.data imported: peak RSS {base / 2**20:.0f} MiB", flush=True)
    print(
        "\n| photos | megapixels | size | load s | images/s | PIL floor s | load / floor speed | "
        "peak RSS above the imports | decoded tensors | ratio | resume s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in args.sets.split(","):
        count, mp = spec.split(":")
        low, high = (float(v) for v in mp.split("-"))
        folder = write_folder(args.work / f"photos-{count}-{mp}", int(count), low, high)
        for side in map(int, args.sizes.split(",")):
            floor = pil_floor(folder, side)  # first: it also brings the files into the page cache
            cache = args.work / f"cache-{count}-{side}"
            for f in cache.glob("*"):
                f.unlink()
            first = _child(LOAD, str(ROOT), str(folder), str(side), str(cache))
            again = _child(LOAD, str(ROOT), str(folder), str(side), str(cache))
            print(
                f"| {int(count):,} | {mp} | {side} | {first['seconds']:.1f} | {first['images'] / first['seconds']:.0f} "
                f"| {floor:.1f} | {floor / first['seconds']:.2f} | {(first['peak_rss'] - base) / 2**20:.0f} MiB "
                f"| {first['tensor_bytes'] / 2**20:.0f} MiB | {(first['peak_rss'] - base) / first['tensor_bytes']:.2f} "
                f"| {again['seconds']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
