"""Genome as data (round trip, key, summary, diversity) and genome → model on many input shapes."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace

import pytest
import torch
from torch import nn

from automodel.config import SearchSpace
from automodel.genome import (ConvBlock, DenseLayer, Genome, diversity, gene_slots,
                              sample_genome)
from automodel.model import (MAX_FEATURE_SIDE, build_model, count_parameters, estimate_parameters,
                             layer_table, plan_conv_blocks)
from automodel.operators import CROSSOVERS, mutate

SPACE = SearchSpace()
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 17, 40), (1, 3, 5)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


def block(filters=32, kernel=3, activation="relu", pooling="max", bn=True) -> ConvBlock:
    return ConvBlock(filters=filters, kernel=kernel, activation=activation, pooling=pooling, batch_norm=bn)


GENOME = Genome(conv=(block(32, 5, "leaky_relu", "max", True), block(64, 3, "gelu", "none", False)),
                dense=(DenseLayer(128, "silu"),), dropout=0.2, optimizer="adamw", learning_rate=3e-3,
                weight_decay=1e-4)


def deepest_genomes() -> list[Genome]:
    """The deepest the default space allows: 6 conv blocks, pooling everywhere, kernel 7."""
    out = []
    for pooling in ("max", "avg"):
        for bn in (True, False):
            for filters in (8, 128):
                out.append(Genome(conv=tuple(block(filters, 7, "elu", pooling, bn) for _ in range(6)),
                                  dense=(DenseLayer(512, "relu"), DenseLayer(32, "gelu")), dropout=0.5,
                                  optimizer="sgd", learning_rate=0.1, weight_decay=1e-3))
    out.append(Genome(conv=(block(128, 7, "relu", "none", True),), dense=(), dropout=0.0, optimizer="adam",
                      learning_rate=1e-6, weight_decay=0.0))
    return out


def genome_pool(count: int = 2_000, seed: int = 0) -> list[Genome]:
    """Sampled, crossed and mutated genomes, plus the deepest ones."""
    rng = random.Random(seed)
    sampled = [sample_genome(SPACE, rng) for _ in range(count * 2 // 5)]
    crossed = []
    names = sorted(CROSSOVERS)
    while len(crossed) < count * 3 // 10:
        a, b = rng.sample(sampled, 2)
        crossed.extend(CROSSOVERS[names[len(crossed) % 3]](a, b, SPACE, rng))
    mutated = [mutate(rng.choice(sampled + crossed), SPACE, rng.choice([0.2, 0.5, 1.0]), rng)
               for _ in range(count - len(sampled) - len(crossed))]
    return deepest_genomes() + sampled + crossed + mutated


POOL = genome_pool()


@pytest.fixture
def one_thread():
    """Real CPU work in one thread: small convolutions gain nothing from more, and on a busy 2-core
    machine OpenMP threads waiting on each other made this file several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_pool_is_varied():
    assert len(POOL) >= 2_000
    assert len({g.key() for g in POOL}) > 1_900
    assert {len(g.conv) for g in POOL} == set(range(1, 7))
    assert {len(g.dense) for g in POOL} == {0, 1, 2}


# ------------------------------------------------------------------------------- genome as data


def test_to_dict_from_dict_round_trip():
    rng = random.Random(1)
    for g in [GENOME] + deepest_genomes() + [sample_genome(SPACE, rng) for _ in range(300)]:
        assert Genome.from_dict(g.to_dict()) == g
        again = Genome.from_dict(json.loads(json.dumps(g.to_dict())))
        assert again == g
        assert again.key() == g.key()
        assert isinstance(again.conv, tuple) and all(isinstance(b, ConvBlock) for b in again.conv)
        assert isinstance(again.dense, tuple) and all(isinstance(d, DenseLayer) for d in again.dense)


def test_key_equal_for_equal_genomes():
    copy = Genome(conv=tuple(replace(b) for b in GENOME.conv), dense=tuple(replace(d) for d in GENOME.dense),
                  dropout=0.2, optimizer="adamw", learning_rate=3e-3, weight_decay=1e-4)
    assert copy == GENOME and copy is not GENOME
    assert copy.key() == GENOME.key()
    assert re.fullmatch(r"[0-9a-f]{16}", GENOME.key())


def one_gene_changes(g: Genome) -> list[Genome]:
    changed = []
    for i, b in enumerate(g.conv):
        for field, value in [("filters", b.filters * 2), ("kernel", b.kernel + 2), ("activation", "tanh"),
                             ("pooling", "avg" if b.pooling != "avg" else "max"), ("batch_norm", not b.batch_norm)]:
            conv = list(g.conv)
            conv[i] = replace(b, **{field: value})
            changed.append(replace(g, conv=tuple(conv)))
    for i, d in enumerate(g.dense):
        for field, value in [("units", d.units + 1), ("activation", "tanh")]:
            dense = list(g.dense)
            dense[i] = replace(d, **{field: value})
            changed.append(replace(g, dense=tuple(dense)))
    changed += [replace(g, conv=g.conv + (block(),)), replace(g, conv=g.conv[:-1]),
                replace(g, dense=g.dense + (DenseLayer(64, "relu"),)), replace(g, dense=()),
                replace(g, conv=tuple(reversed(g.conv))),
                replace(g, dropout=0.3), replace(g, optimizer="sgd"), replace(g, learning_rate=1e-3),
                replace(g, weight_decay=0.0)]
    return changed


def test_key_differs_when_any_one_gene_changes():
    variants = one_gene_changes(GENOME)
    assert len(variants) == 2 * 5 + 2 + 9
    keys = {GENOME.key()} | {v.key() for v in variants}
    assert len(keys) == len(variants) + 1
    rng = random.Random(2)
    for _ in range(100):
        g = sample_genome(SPACE, rng)
        for v in one_gene_changes(g):
            if v != g:
                assert v.key() != g.key()


def test_key_equal_for_equal_genomes_with_int_valued_scalars():
    space = SearchSpace(weight_decays=[0], dropout=[0], learning_rates=[1])
    space.validate()  # whole numbers are accepted in the space
    g = sample_genome(space, random.Random(3))
    reloaded = Genome.from_dict(json.loads(json.dumps(g.to_dict())))
    assert reloaded == g
    assert reloaded.key() == g.key()


def test_summary_mentions_filters_and_optimizer():
    text = GENOME.summary()
    assert "\n" not in text
    assert "C32k5leaky_relu/max·bn" in text and "C64k3gelu" in text and "C64k3gelu/" not in text
    assert "D128silu" in text
    assert "adamw" in text and "3e-03" in text and "drop 0.2" in text and "wd 0.0001" in text
    no_dense = replace(GENOME, dense=(), optimizer="sgd", weight_decay=0.0)
    assert "sgd" in no_dense.summary() and "→" not in no_dense.summary() and "wd" not in no_dense.summary()
    for g in POOL[:200]:
        s = g.summary()
        assert g.optimizer in s
        assert all(f"C{b.filters}k{b.kernel}" in s for b in g.conv)


def test_diversity():
    rng = random.Random(4)
    genomes = [sample_genome(SPACE, rng) for _ in range(60)]
    for a, b in zip(genomes, genomes[1:]):
        assert diversity([a, a], SPACE) == 0.0
        assert diversity([a, replace(a)], SPACE) == 0.0
        if a != b:
            d = diversity([a, b], SPACE)
            assert 0.0 < d <= 1.0
            assert d == diversity([b, a], SPACE)
    assert diversity([GENOME], SPACE) == 0.0 and diversity([], SPACE) == 0.0
    assert diversity([GENOME, GENOME, GENOME], SPACE) == 0.0
    for v in one_gene_changes(GENOME)[:12]:  # one slot differs
        assert diversity([GENOME, v], SPACE) == pytest.approx(1 / len(gene_slots(GENOME, SPACE)))
    # nothing shared: every slot differs
    other = Genome(conv=tuple(block(8, 1, "tanh", "avg", False) for _ in range(6)),
                   dense=(DenseLayer(32, "elu"), DenseLayer(32, "elu")), dropout=0.5, optimizer="sgd",
                   learning_rate=0.1, weight_decay=1e-3)
    assert diversity([GENOME, other], SPACE) == 1.0
    assert 0.0 < diversity(genomes, SPACE) <= 1.0


# ---------------------------------------------------------------------------- fitting the input


def assert_plan_fits(g: Genome, shape) -> list:
    plans = plan_conv_blocks(g, shape)
    assert len(plans) == len(g.conv)
    channels, h, w = shape
    for b, p in zip(g.conv, plans):
        assert p.in_channels == channels and p.out_channels == b.filters
        assert p.kernel % 2 == 1 and 1 <= p.kernel <= b.kernel
        assert p.kernel <= min(h, w), f"kernel {p.kernel} on a {h}x{w} map"
        if b.kernel <= min(h, w):
            assert p.kernel == b.kernel  # only clipped when it does not fit
        if p.pool is None:
            assert b.pooling == "none" or (h == 1 and w == 1)
            assert p.out_hw == (h, w)
        else:
            assert b.pooling != "none"
            assert set(p.pool) <= {1, 2}
            assert h >= p.pool[0] and w >= p.pool[1], f"pool {p.pool} takes a side of {h}x{w} below 1"
            assert p.out_hw == (h // p.pool[0], w // p.pool[1])
            assert p.pool[0] == (2 if h >= 2 else 1) and p.pool[1] == (2 if w >= 2 else 1)
        channels, (h, w) = b.filters, p.out_hw
        assert h >= 1 and w >= 1
    return plans


def final_features(g: Genome, shape) -> int:
    plans = plan_conv_blocks(g, shape)
    channels, h, w = (plans[-1].out_channels, *plans[-1].out_hw) if plans else shape
    return channels * min(h, MAX_FEATURE_SIDE) * min(w, MAX_FEATURE_SIDE)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_every_genome_builds_and_runs_on_meta(shape):
    """Plans for all pool genomes on this shape; a meta build and forward for a fifth of them (+ deepest)."""
    for g in POOL:
        assert_plan_fits(g, shape)
    index = SHAPES.index(shape)
    chosen = deepest_genomes() + POOL[index::len(SHAPES)]
    assert len(chosen) >= 400
    deepest = len(deepest_genomes())
    for n, g in enumerate(chosen):
        num_classes = (2, 10, 7, 100)[n % 4]
        with torch.device("meta"):
            model = build_model(g, shape, [f"c{i}" for i in range(num_classes)])
        x = torch.empty(2, *shape, device="meta")
        if n < deepest:  # training mode, as the trainer runs it
            out = model(x)
        else:  # eval mode without autograd: same shapes, about twice as fast on meta
            model.eval()
            with torch.no_grad():
                out = model(x)
        assert out.shape == (2, num_classes), (g, shape)
        linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
        assert len(linears) == len(g.dense) + 1
        assert linears[0].in_features == final_features(g, shape)


def test_deepest_genome_plan_on_tiny_input():
    plans = assert_plan_fits(deepest_genomes()[0], (1, 3, 5))
    assert [p.kernel for p in plans] == [3, 1, 1, 1, 1, 1]
    assert [p.pool for p in plans] == [(2, 2), (1, 2), None, None, None, None]
    assert [p.out_hw for p in plans] == [(1, 2), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1)]


def test_real_forward_is_finite(one_thread):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(5)
    chosen = deepest_genomes() + rng.sample(POOL, 90)
    for n, g in enumerate(chosen):
        shape = SHAPES[n % len(SHAPES)]
        model = build_model(g, shape, ["a", "b", "c"])
        x = torch.rand(2, *shape, generator=gen)
        assert 0.0 <= x.min() and x.max() <= 1.0
        with torch.no_grad():
            out = model(x)
            assert out.shape == (2, 3) and torch.isfinite(out).all(), (g, shape)
            model.eval()
            out = model(x[:1])
            assert out.shape == (1, 3) and torch.isfinite(out).all(), (g, shape)


# ------------------------------------------------------------------------ layer table and counts


def has_batch_norm_on_one_pixel(g: Genome, shape) -> bool:
    hw = shape[1:]
    for b, p in zip(g.conv, plan_conv_blocks(g, shape)):
        if b.batch_norm and hw == (1, 1):
            return True
        hw = p.out_hw
    return False


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split("×"))


def assert_table_chains(g: Genome, shape, num_classes: int) -> list[dict]:
    rows = layer_table(g, shape, num_classes)
    assert rows[0]["output_shape"] == "×".join(map(str, shape)) and rows[0]["parameters"] == 0
    prev = parse_shape(rows[0]["output_shape"])
    convs = iter(g.conv)
    denses = iter(g.dense)
    for row in rows[1:]:
        name, out, params = row["layer"], parse_shape(row["output_shape"]), row["parameters"]
        if name.startswith("Conv2d"):
            b = next(convs)
            k = int(re.fullmatch(r"Conv2d (\d+) filters (\d+)×\2", name).group(2))
            assert out == (b.filters, *prev[1:])  # "same" padding keeps the map size
            assert params == prev[0] * b.filters * k * k + (0 if b.batch_norm else b.filters)
        elif name.startswith(("MaxPool2d", "AvgPool2d")):
            kh, kw = map(int, re.fullmatch(r"\w+Pool2d (\d)×(\d)", name).groups())
            assert out == (prev[0], prev[1] // kh, prev[2] // kw) and params == 0
        elif name == "AdaptiveAvgPool2d":
            assert out == (prev[0], min(prev[1], MAX_FEATURE_SIDE), min(prev[2], MAX_FEATURE_SIDE))
        elif name == "Flatten":
            assert out == (prev[0] * prev[1] * prev[2],) and params == 0
        elif name.startswith("Linear"):
            units = int(name.split()[1])
            d = next(denses, None)
            assert units == (d.units if d is not None else num_classes)
            assert out == (units,) and params == prev[0] * units + units
        elif name == "BatchNorm2d":
            assert out == prev and params == 2 * prev[0]
        else:  # activation or dropout
            assert out == prev and params == 0, row
        prev = out
    assert next(convs, None) is None and next(denses, None) is None
    assert rows[-1]["output_shape"] == str(num_classes)
    return rows


def test_layer_table_chains_and_counts_parameters(one_thread):
    rng = random.Random(6)
    checked = 0
    candidates = deepest_genomes() + rng.sample(POOL, 200)
    for n, g in enumerate(candidates):
        shape = SHAPES[n % len(SHAPES)]
        if has_batch_norm_on_one_pixel(g, shape):
            continue  # see test_layer_table_with_batch_norm_on_a_one_pixel_map
        rows = assert_table_chains(g, shape, 10)
        total = sum(r["parameters"] for r in rows)
        assert total == estimate_parameters(g, shape, 10)
        with torch.device("meta"):
            assert total == count_parameters(build_model(g, shape, list("abcdefghij")))
        if n < 40:
            assert total == count_parameters(build_model(g, shape, list("abcdefghij")))  # real weights
        checked += 1
    assert checked > 100


def test_estimate_parameters_equals_real_count(one_thread):
    rng = random.Random(7)
    for n, g in enumerate(rng.sample(POOL, 40) + deepest_genomes()):
        shape = SHAPES[n % len(SHAPES)]
        for num_classes in (2, 10):
            real = count_parameters(build_model(g, shape, [str(i) for i in range(num_classes)]))
            assert estimate_parameters(g, shape, num_classes) == real


def test_layer_table_of_a_known_genome():
    rows = layer_table(GENOME, (1, 28, 28), 10)
    assert [r["layer"] for r in rows] == [
        "Input (normalised)", "Conv2d 32 filters 5×5", "BatchNorm2d", "LeakyReLU", "MaxPool2d 2×2",
        "Conv2d 64 filters 3×3", "GELU", "AdaptiveAvgPool2d", "Flatten", "Dropout 0.2", "Linear 128", "SiLU",
        "Dropout 0.2", "Linear 10"]
    assert [r["output_shape"] for r in rows] == [
        "1×28×28", "32×28×28", "32×28×28", "32×28×28", "32×14×14", "64×14×14", "64×14×14", "64×4×4", "1024",
        "1024", "128", "128", "128", "10"]
    expected = 1 * 32 * 25 + 2 * 32 + 32 * 64 * 9 + 64 + 1024 * 128 + 128 + 128 * 10 + 10
    assert sum(r["parameters"] for r in rows) == expected == estimate_parameters(GENOME, (1, 28, 28), 10)


def test_layer_table_skips_zero_dropout():
    g = replace(GENOME, dropout=0.0)
    assert not any(r["layer"].startswith("Dropout") for r in layer_table(g, (1, 8, 8), 3))


def test_model_with_batch_norm_on_a_one_pixel_map_runs(one_thread):
    g = Genome(conv=tuple(block(16, 3, "relu", "max", True) for _ in range(4)), dense=(), dropout=0.0,
               optimizer="adam", learning_rate=1e-3, weight_decay=0.0)
    assert has_batch_norm_on_one_pixel(g, (1, 8, 8))
    model = build_model(g, (1, 8, 8), ["a", "b"])
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 2)  # training mode, batch of 2
    assert model.eval()(torch.rand(1, 1, 8, 8)).shape == (1, 2)
    assert estimate_parameters(g, (1, 8, 8), 2) == count_parameters(model)


def test_layer_table_with_batch_norm_on_a_one_pixel_map():
    g = Genome(conv=tuple(block(16, 3, "relu", "max", True) for _ in range(4)), dense=(), dropout=0.0,
               optimizer="adam", learning_rate=1e-3, weight_decay=0.0)
    assert has_batch_norm_on_one_pixel(g, (1, 8, 8))
    rows = assert_table_chains(g, (1, 8, 8), 10)
    assert sum(r["parameters"] for r in rows) == estimate_parameters(g, (1, 8, 8), 10)


# ------------------------------------------------------------------------------- normalisation


def test_model_normalises_inside_and_keeps_its_metadata(one_thread):
    shape, classes = (3, 17, 40), ["cat", "dog", "bird"]
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    torch.manual_seed(1)
    model = build_model(GENOME, shape, classes, mean=mean, std=std).eval()
    assert model.input_shape == shape and isinstance(model.input_shape, tuple)
    assert model.classes == classes
    buffers = dict(model.named_buffers())
    assert torch.equal(buffers["mean"], torch.tensor(mean).view(1, 3, 1, 1))
    assert torch.equal(buffers["std"], torch.tensor(std).view(1, 3, 1, 1))
    assert "mean" in model.state_dict() and "std" in model.state_dict()

    plain = build_model(GENOME, shape, classes, mean=[0.0] * 3, std=[1.0] * 3).eval()
    state = {k: v for k, v in model.state_dict().items() if k not in ("mean", "std")}
    plain.load_state_dict(state, strict=False)
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = plain((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert not torch.allclose(model(x), plain(x), atol=1e-3)


def test_default_normalisation_per_channel():
    model = build_model(GENOME, (1, 8, 8), ["a", "b"])
    assert model.mean.shape == (1, 1, 1, 1) and model.std.shape == (1, 1, 1, 1)
    assert model.input_shape == (1, 8, 8) and model.classes == ["a", "b"]
    model3 = build_model(GENOME, [3, 32, 32], ("x", "y", "z"))
    assert model3.mean.shape == (1, 3, 1, 1) and model3.input_shape == (3, 32, 32)
    assert model3.classes == ["x", "y", "z"]
    assert torch.isfinite(model3.std).all() and (model3.std > 0).all()
