"""Reproducible image sets that are harder than the bundled 8×8 digits, for judging search quality.

Two sets, each 10 classes of 32×32 RGB images written as ``ROOT/train/<class>/*.png`` and
``ROOT/test/<class>/*.png`` (a layout ``automodel run --dataset ROOT`` reads as it is). In both,
the test split is drawn from *styles never seen in training*, so a network must generalise, not
memorise a style:

``glyphs``
    Ten capital letters drawn from the fonts on this machine (DejaVu's faces and Pillow's built-in
    font) with random size, rotation, shear, position, stroke weight, colours, blur, noise and
    stray strokes. A fixed share of the fonts is
    kept for the test split only.
``shapes``
    Ten shapes (circle, triangle, square, heart, tee, star, cross, ring, crescent, arrow),
    turned at random, with textured fills (stripes, checks, dots, gradients, noise, waves), toned-down
    textured backgrounds, outlines of random colour and width, and clutter. The test split uses fill
    textures and colour palettes that the training split never shows.

``faces``
    Real photographs, not drawn: the 200 grey 25×25 crops of scikit-image's ``lfw_subset`` (100
    faces from Labeled Faces in the Wild, 100 patches of other things), the only real-image sample
    found shipped inside a package. Two classes, a seeded stratified test split of 20%. Small: one
    hand-written training takes seconds, so only large multiples of it are worth a budget run.

``python bench/harder_sets.py OUT_DIR`` writes the first two (3,000 images each: 2,400 train, 600 test).
The same seed writes the same pixels on the same fonts and Pillow version.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIDE = 32
CANVAS = 96  # drawn at 3× and shrunk, for anti-aliased edges
LETTERS = "ABDEGHKMRS"
SHAPES = ("circle", "triangle", "square", "heart", "tee", "star", "cross", "ring", "crescent", "arrow")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")


# ---------------------------------------------------------------------------------- shared bits


def _font_files() -> list[str]:
    files = sorted({str(p) for d in FONT_DIRS if Path(d).is_dir() for p in Path(d).rglob("*.ttf")})
    return [f for f in files if "Math" not in f]  # a maths font's letters are not letters


def _random_colour(rng: random.Random, palette: str) -> tuple[int, int, int]:
    """A colour from a palette family; train and test use different families in ``shapes``."""
    if palette == "warm":
        return (rng.randint(150, 255), rng.randint(40, 180), rng.randint(0, 90))
    if palette == "cool":
        return (rng.randint(0, 90), rng.randint(60, 200), rng.randint(140, 255))
    if palette == "grey":
        v = rng.randint(20, 235)
        return (v, v, v)
    if palette == "pastel":
        return tuple(rng.randint(150, 255) for _ in range(3))
    if palette == "dark":
        return tuple(rng.randint(0, 110) for _ in range(3))
    return tuple(rng.randint(0, 255) for _ in range(3))


def _contrasting(rng: random.Random, fg: tuple[int, int, int], palette: str) -> tuple[int, int, int]:
    """A background colour far enough from ``fg`` that the figure stays visible (but not always by much)."""
    for _ in range(50):
        bg = _random_colour(rng, palette)
        if sum(abs(a - b) for a, b in zip(fg, bg)) > 160:
            return bg
    return tuple(255 - v for v in fg)


def _finish(img: Image.Image, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    """Shrink to 32×32, blur a little at random, add sensor-like noise."""
    img = img.resize((SIDE, SIDE), Image.BILINEAR)
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(img).astype(np.float32)
    arr += np_rng.normal(0, rng.uniform(2, 14), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _clutter(draw: ImageDraw.ImageDraw, rng: random.Random, palette: str, count: int) -> None:
    for _ in range(count):
        colour = _random_colour(rng, palette)
        x0, y0 = rng.randint(0, CANVAS), rng.randint(0, CANVAS)
        if rng.random() < 0.5:
            x1, y1 = x0 + rng.randint(-40, 40), y0 + rng.randint(-40, 40)
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randint(1, 4))
        else:
            r = rng.randint(2, 7)
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)


# ---------------------------------------------------------------------------------- glyphs


def _glyph(letter: str, font_file: str | None, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    palette = rng.choice(("any", "warm", "cool", "grey", "pastel", "dark"))
    fg = _random_colour(rng, palette)
    bg = _contrasting(rng, fg, rng.choice(("any", "grey", "pastel", "dark")))
    img = Image.new("RGB", (CANVAS, CANVAS), bg)
    draw = ImageDraw.Draw(img)
    _clutter(draw, rng, "any", rng.randint(0, 2))

    text = letter
    size = rng.randint(50, 76)
    font = ImageFont.truetype(font_file, size) if font_file else ImageFont.load_default(size)
    layer = Image.new("L", (CANVAS, CANVAS), 0)
    ldraw = ImageDraw.Draw(layer)
    stroke = rng.choice((0, 0, 0, 1, 2, 3))
    box = ldraw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    w, h = box[2] - box[0], box[3] - box[1]
    x = (CANVAS - w) / 2 - box[0] + rng.uniform(-8, 8)
    y = (CANVAS - h) / 2 - box[1] + rng.uniform(-8, 8)
    ldraw.text((x, y), text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    shear = rng.uniform(-0.2, 0.2)
    layer = layer.transform(layer.size, Image.AFFINE, (1, shear, -shear * CANVAS / 2, 0, 1, 0), Image.BILINEAR)
    layer = layer.rotate(rng.uniform(-20, 20), Image.BILINEAR)
    img.paste(Image.new("RGB", img.size, fg), (0, 0), layer)
    return _finish(img, rng, np_rng)


def write_glyphs(root: Path, n: int = 3000, seed: int = 0, test_share: float = 0.2) -> None:
    fonts: list[str | None] = [*_font_files(), None]  # None: Pillow's built-in font
    if len(fonts) < 4:
        raise SystemExit("glyphs needs at least three TrueType fonts (Debian: fonts-dejavu-core)")
    picker = random.Random(seed)
    test_fonts = set(picker.sample(range(len(fonts)), max(1, round(len(fonts) * 0.27))))
    train_fonts = [f for i, f in enumerate(fonts) if i not in test_fonts]
    held_out = [f for i, f in enumerate(fonts) if i in test_fonts]
    _write_split(
        root,
        n,
        seed,
        test_share,
        LETTERS,
        lambda cls, split, rng, np_rng: _glyph(
            cls, rng.choice(held_out if split == "test" else train_fonts), rng, np_rng
        ),
    )


# ---------------------------------------------------------------------------------- shapes


def _polygon(cx: float, cy: float, r: float, sides: int, turn: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(turn + 2 * math.pi * k / sides), cy + r * math.sin(turn + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _shape_mask(kind: str, rng: random.Random) -> Image.Image:
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    d = ImageDraw.Draw(mask)
    r = rng.uniform(28, 42)
    cx, cy = CANVAS / 2 + rng.uniform(-8, 8), CANVAS / 2 + rng.uniform(-8, 8)
    turn = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif kind in ("triangle", "square"):
        d.polygon(_polygon(cx, cy, r, {"triangle": 3, "square": 4}[kind], turn), fill=255)
    elif kind == "heart":
        c, s = math.cos(turn), math.sin(turn)
        lobes = [(-0.45 * r, -0.3 * r), (0.45 * r, -0.3 * r)]
        for x, y in lobes:
            px, py = cx + x * c - y * s, cy + x * s + y * c
            d.ellipse((px - 0.5 * r, py - 0.5 * r, px + 0.5 * r, py + 0.5 * r), fill=255)
        tip = [(-0.93 * r, -0.15 * r), (0.93 * r, -0.15 * r), (0, r)]
        d.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in tip], fill=255)
    elif kind == "tee":
        w = r * 0.3
        pts = [(-r, -r), (r, -r), (r, -r + 2 * w), (w, -r + 2 * w), (w, r), (-w, r), (-w, -r + 2 * w), (-r, -r + 2 * w)]
        c, s = math.cos(turn), math.sin(turn)
        d.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    elif kind == "star":
        outer, inner = _polygon(cx, cy, r, 5, turn), _polygon(cx, cy, r * 0.42, 5, turn + math.pi / 5)
        d.polygon([p for pair in zip(outer, inner) for p in pair], fill=255)
    elif kind == "cross":
        w = r * 0.36
        arm = [
            (-r, -w),
            (-w, -w),
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
        ]
        c, s = math.cos(turn), math.sin(turn)
        d.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in arm], fill=255)
    elif kind == "ring":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        q = r * rng.uniform(0.45, 0.65)
        d.ellipse((cx - q, cy - q, cx + q, cy + q), fill=0)
    elif kind == "crescent":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        off = r * 0.55
        ox, oy = cx + off * math.cos(turn), cy + off * math.sin(turn)
        d.ellipse((ox - r * 0.9, oy - r * 0.9, ox + r * 0.9, oy + r * 0.9), fill=0)
    elif kind == "arrow":
        w, head = r * 0.28, r * 0.75
        pts = [(-r, -w), (r - head, -w), (r - head, -head), (r, 0), (r - head, head), (r - head, w), (-r, w)]
        c, s = math.cos(turn), math.sin(turn)
        d.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    return mask


TextureFn = Callable[[random.Random, np.random.Generator, str], Image.Image]


def _tex_solid(rng, np_rng, palette):
    return Image.new("RGB", (CANVAS, CANVAS), _random_colour(rng, palette))


def _tex_stripes(rng, np_rng, palette):
    a, b = _random_colour(rng, palette), _random_colour(rng, palette)
    period, angle = rng.randint(6, 16), rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS]
    band = ((xx * math.cos(angle) + yy * math.sin(angle)) // (period / 2)).astype(int) % 2
    return Image.fromarray(np.where(band[..., None] == 0, a, b).astype(np.uint8))


def _tex_checks(rng, np_rng, palette):
    a, b = _random_colour(rng, palette), _random_colour(rng, palette)
    cell = rng.randint(5, 14)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS]
    band = (xx // cell + yy // cell) % 2
    return Image.fromarray(np.where(band[..., None] == 0, a, b).astype(np.uint8))


def _tex_dots(rng, np_rng, palette):
    img = Image.new("RGB", (CANVAS, CANVAS), _random_colour(rng, palette))
    d = ImageDraw.Draw(img)
    colour, step = _random_colour(rng, palette), rng.randint(8, 14)
    for y in range(0, CANVAS, step):
        for x in range(0, CANVAS, step):
            d.ellipse((x, y, x + step // 2, y + step // 2), fill=colour)
    return img


def _tex_gradient(rng, np_rng, palette):
    a, b = np.array(_random_colour(rng, palette)), np.array(_random_colour(rng, palette))
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS] / CANVAS
    t = np.clip((xx * math.cos(angle) + yy * math.sin(angle) + 1) / 2, 0, 1)[..., None]
    return Image.fromarray((a * (1 - t) + b * t).astype(np.uint8))


def _tex_noise(rng, np_rng, palette):
    base = np.array(_random_colour(rng, palette), dtype=np.float32)
    noise = np_rng.normal(0, 50, (CANVAS // 8, CANVAS // 8, 1)).repeat(8, 0).repeat(8, 1)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _tex_waves(rng, np_rng, palette):
    a, b = np.array(_random_colour(rng, palette)), np.array(_random_colour(rng, palette))
    f1, f2 = rng.uniform(0.1, 0.3), rng.uniform(0.1, 0.3)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS]
    t = ((np.sin(xx * f1) * np.cos(yy * f2) + 1) / 2)[..., None]
    return Image.fromarray((a * (1 - t) + b * t).astype(np.uint8))


TRAIN_TEXTURES: tuple[TextureFn, ...] = (_tex_solid, _tex_stripes, _tex_checks, _tex_dots)
TEST_TEXTURES: tuple[TextureFn, ...] = (_tex_gradient, _tex_noise, _tex_waves)
TRAIN_PALETTES = ("warm", "cool", "any")
TEST_PALETTES = ("pastel", "dark", "grey")


def _shape(kind: str, split: str, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    textures, palettes = (TEST_TEXTURES, TEST_PALETTES) if split == "test" else (TRAIN_TEXTURES, TRAIN_PALETTES)
    background = rng.choice(textures)(rng, np_rng, rng.choice(palettes))
    # The background is toned down towards one colour so that the figure, not the texture, stands out.
    flat = Image.new("RGB", background.size, _random_colour(rng, rng.choice(palettes)))
    img = Image.blend(background, flat, rng.uniform(0.65, 0.9))
    fill = rng.choice(textures)(rng, np_rng, rng.choice(palettes))
    _clutter(ImageDraw.Draw(img), rng, rng.choice(palettes), rng.randint(0, 2))
    mask = _shape_mask(kind, rng)
    img.paste(fill, (0, 0), mask)
    edge = mask.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(rng.choice((3, 5))))
    img.paste(Image.new("RGB", img.size, _random_colour(rng, "any")), (0, 0), edge)
    return _finish(img, rng, np_rng)


def write_shapes(root: Path, n: int = 3000, seed: int = 0, test_share: float = 0.2) -> None:
    _write_split(root, n, seed, test_share, SHAPES, _shape)


# ---------------------------------------------------------------------------------- writing


def _write_split(root: Path, n: int, seed: int, test_share: float, classes, draw) -> None:
    per_class = n // len(classes)
    n_test = round(per_class * test_share)
    for c, cls in enumerate(classes):
        for split, count in (("train", per_class - n_test), ("test", n_test)):
            folder = root / split / str(cls)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = random.Random(f"{seed}:{cls}:{split}:{i}")
                np_rng = np.random.default_rng([seed, c, 0 if split == "train" else 1, i])
                draw(cls, split, rng, np_rng).save(folder / f"{i:05d}.png")


def write_faces(root: Path, n: int = 200, seed: int = 0, test_share: float = 0.2) -> None:
    """scikit-image's lfw_subset (a bench-only dependency) as PNG class folders; ``n`` is ignored."""
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)
    half = len(images) // 2  # the first half are the faces
    for cls, members in (("face", images[:half]), ("other", images[half:])):
        order = random.Random(f"{seed}:{cls}").sample(range(len(members)), len(members))
        n_test = round(len(members) * test_share)
        for rank, i in enumerate(order):
            folder = root / ("test" if rank < n_test else "train") / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(members[i], mode="L").save(folder / f"{i:05d}.png")


SETS = {"glyphs": write_glyphs, "shapes": write_shapes, "faces": write_faces}


def ensure_set(name: str, out_dir: Path, n: int = 3000, seed: int = 0) -> Path:
    """The set's folder, written once (a finished set is marked by a ``.complete`` file)."""
    root = Path(out_dir) / f"{name}-{n}-s{seed}"
    if not (root / ".complete").exists():
        SETS[name](root, n=n, seed=seed)
        (root / ".complete").write_text("ok\n")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--sets", default="glyphs,shapes")
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.sets.split(","):
        print(ensure_set(name, args.out, args.n, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
