"""Genome as data (round trip, key, summary, diversity, learning rates) and genome → model on many
input shapes: plans, blocks, heads, parameter and MAC counts, budget repair and the layer table."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import replace

import pytest
import torch
from spaces import make_space
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from automodel.config import BLOCK_KINDS, DEFAULT_LEARNING_RATES, DOWNSAMPLING, HEADS, OPTIMIZERS, SearchSpace
from automodel.evolution.genome import (
    ConvBlock,
    DenseLayer,
    Genome,
    diversity,
    gene_slots,
    perturb_learning_rate,
    sample_genome,
    sample_learning_rate,
)
from automodel.evolution.operators import CROSSOVERS, mutate
from automodel.evolution.repair import fit_to_budget
from automodel.training.model import (
    BLOCKS,
    MAX_FEATURE_SIDE,
    Cost,
    GlobalAvgMaxPool,
    PlainBlock,
    SubsampledPointwiseConv,
    build_model,
    count_macs,
    count_parameters,
    describe_block,
    estimate_parameters,
    layer_table,
    measure_cost,
    plan_conv_blocks,
)

SPACE = make_space()
# The pool is drawn from a wider space, so that every gene value appears.
WIDE = make_space(
    kernel_sizes=[1, 3, 5], batch_norm=[True, False], activations=["relu", "leaky_relu", "elu", "gelu", "silu", "tanh"]
)
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 17, 40), (1, 3, 5)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


def block(filters=32, kernel=3, activation="relu", downsample="max", bn=True, kind="plain") -> ConvBlock:
    return ConvBlock(
        filters=filters, kernel=kernel, activation=activation, downsample=downsample, batch_norm=bn, kind=kind
    )


GENOME = Genome(
    conv=(block(32, 5, "leaky_relu", "max", True), block(64, 3, "gelu", "none", False)),
    dense=(DenseLayer(128, "silu"),),
    dropout=0.2,
    optimizer="adamw",
    learning_rate=3e-3,
    weight_decay=1e-4,
)
# Every kind, a stride, an identity skip, a clipped kernel and the avgmax head (see the known-genome tests).
GENOME2 = Genome(
    conv=(
        block(16, 3, "relu", "stride", True, "residual"),
        block(16, 3, "elu", "avg", False, "residual"),
        block(32, 5, "gelu", "max", True, "separable"),
    ),
    dense=(),
    dropout=0.0,
    optimizer="sgd",
    learning_rate=0.05,
    weight_decay=0.0,
    head="avgmax",
)


def deepest_genomes() -> list[Genome]:
    """The deepest the test space allows (6 blocks, downsampling everywhere) with kernel 7, every
    kind, downsampling and head; plus one wide full-resolution block of each kind."""
    out = []
    n = 0
    for kind in BLOCK_KINDS:
        for down in ("max", "avg", "stride"):
            for _ in range(2):
                bn, filters, head = (n // 2) % 2 == 0, (8, 128)[n % 2], HEADS[n % 3]
                out.append(
                    Genome(
                        conv=tuple(block(filters, 7, "elu", down, bn, kind) for _ in range(6)),
                        dense=(DenseLayer(512, "relu"), DenseLayer(32, "gelu")),
                        dropout=0.5,
                        optimizer="sgd",
                        learning_rate=0.1,
                        weight_decay=1e-3,
                        head=head,
                    )
                )
                n += 1
    for kind, head in zip(BLOCK_KINDS, HEADS):
        out.append(
            Genome(
                conv=(block(128, 7, "relu", "none", True, kind),),
                dense=(),
                dropout=0.0,
                optimizer="adam",
                learning_rate=1e-6,
                weight_decay=0.0,
                head=head,
            )
        )
    return out


def genome_pool(count: int = 2_000, seed: int = 0) -> list[Genome]:
    """Sampled, crossed and mutated genomes, plus the deepest ones."""
    rng = random.Random(seed)
    sampled = [sample_genome(WIDE, rng) for _ in range(count * 2 // 5)]
    crossed = []
    names = sorted(CROSSOVERS)
    while len(crossed) < count * 3 // 10:
        a, b = rng.sample(sampled, 2)
        crossed.extend(CROSSOVERS[names[len(crossed) % 3]](a, b, WIDE, rng))
    mutated = [
        mutate(rng.choice(sampled + crossed), WIDE, rng.choice([0.2, 0.5, 1.0]), rng)
        for _ in range(count - len(sampled) - len(crossed))
    ]
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


def meta_model(g: Genome, shape, num_classes: int = 10):
    with torch.device("meta"):
        return build_model(g, shape, [f"c{i}" for i in range(num_classes)])


def test_pool_is_varied():
    assert len(POOL) >= 2_000
    assert len({g.key() for g in POOL}) > 1_900
    assert {len(g.conv) for g in POOL} == set(range(1, 7))
    assert {len(g.dense) for g in POOL} == {0, 1, 2}
    assert {b.kind for g in POOL for b in g.conv} == set(BLOCK_KINDS)
    assert {b.downsample for g in POOL for b in g.conv} == set(DOWNSAMPLING)
    assert {g.head for g in POOL} == set(HEADS)
    assert {g.optimizer for g in POOL} == set(OPTIMIZERS)


# ------------------------------------------------------------------------------- genome as data


def test_to_dict_from_dict_round_trip():
    rng = random.Random(1)
    for g in [GENOME, GENOME2] + deepest_genomes() + [sample_genome(WIDE, rng) for _ in range(300)]:
        assert Genome.from_dict(g.to_dict()) == g
        again = Genome.from_dict(json.loads(json.dumps(g.to_dict())))
        assert again == g
        assert again.key() == g.key()
        assert isinstance(again.conv, tuple) and all(isinstance(b, ConvBlock) for b in again.conv)
        assert isinstance(again.dense, tuple) and all(isinstance(d, DenseLayer) for d in again.dense)
    assert GENOME2.to_dict()["head"] == "avgmax"
    assert GENOME2.to_dict()["conv"][0] == {
        "filters": 16,
        "kernel": 3,
        "activation": "relu",
        "downsample": "stride",
        "batch_norm": True,
        "kind": "residual",
    }


OLD_DICT = {  # a genome as earlier versions recorded it: "pooling", no "kind", no "head"
    "conv": [
        {"filters": 32, "kernel": 5, "activation": "leaky_relu", "pooling": "max", "batch_norm": True},
        {"filters": 64, "kernel": 3, "activation": "gelu", "pooling": "none", "batch_norm": False},
        {"filters": 16, "kernel": 3, "activation": "relu", "pooling": "avg", "batch_norm": True},
    ],
    "dense": [{"units": 128, "activation": "silu"}],
    "dropout": 0.2,
    "optimizer": "adamw",
    "learning_rate": 0.003,
    "weight_decay": 0.0001,
}


def test_old_format_dict_reads_as_the_same_network():
    old = Genome.from_dict(json.loads(json.dumps(OLD_DICT)))
    new = replace(
        GENOME,
        conv=GENOME.conv + (block(16, 3, "relu", "avg", True),),
        dense=(DenseLayer(128, "silu", batch_norm=False),),
    )  # earlier dense layers had no batch norm
    assert old == new and old.key() == new.key()
    assert old.head == "flatten" and all(b.kind == "plain" for b in old.conv)
    assert [b.downsample for b in old.conv] == ["max", "none", "avg"]
    assert Genome.from_dict(old.to_dict()) == old  # and it is written back in the new format
    assert "pooling" not in json.dumps(old.to_dict())
    # The network earlier versions built on 1×28×28: conv (bias only without batch norm) → batch norm →
    # activation → 2×2 pooling, an adaptive pool to at most 4×4, flatten, dropout → linear layers.
    model = meta_model(old, (1, 28, 28), 10)
    assert all(type(m) is PlainBlock for m in model.features)
    assert [p.out_hw for p in model.plans] == [(14, 14), (14, 14), (7, 7)]
    assert [type(m.pool) for m in model.features] == [nn.MaxPool2d, nn.Identity, nn.AvgPool2d]
    assert [type(m.norm) for m in model.features] == [nn.BatchNorm2d, nn.Identity, nn.BatchNorm2d]
    assert all(m.conv.stride == (1, 1) for m in model.features)
    old_shapes = [
        (32, 1, 5, 5),
        (32,),
        (32,),  # conv (no bias), batch norm
        (64, 32, 3, 3),
        (64,),  # conv with bias
        (16, 64, 3, 3),
        (16,),
        (16,),  # conv (no bias), batch norm
        (128, 16 * 4 * 4),
        (128,),
        (10, 128),
        (10,),
    ]  # 7×7 averaged to 4×4, flattened
    assert [tuple(p.shape) for p in model.parameters()] == old_shapes
    old_params = sum(math.prod(s) for s in old_shapes)
    assert (
        estimate_parameters(old, (1, 28, 28), 10)
        == old_params
        == 32 * 25 + 64 + 32 * 64 * 9 + 64 + 64 * 16 * 9 + 32 + 256 * 128 + 128 + 1290
    )
    assert [type(m) for m in model.classifier] == [
        nn.AdaptiveAvgPool2d,
        nn.Flatten,
        nn.Dropout,
        nn.Linear,
        nn.SiLU,
        nn.Dropout,
        nn.Linear,
    ]


def test_key_equal_for_equal_genomes():
    copy = Genome(
        conv=tuple(replace(b) for b in GENOME.conv),
        dense=tuple(replace(d) for d in GENOME.dense),
        dropout=0.2,
        optimizer="adamw",
        learning_rate=3e-3,
        weight_decay=1e-4,
        head="flatten",
    )
    assert copy == GENOME and copy is not GENOME
    assert copy.key() == GENOME.key()
    assert re.fullmatch(r"[0-9a-f]{16}", GENOME.key())


def one_gene_changes(g: Genome) -> list[Genome]:
    changed = []
    for i, b in enumerate(g.conv):
        for field, value in [
            ("filters", b.filters * 2),
            ("kernel", b.kernel + 2),
            ("activation", "tanh"),
            ("downsample", "stride" if b.downsample != "stride" else "max"),
            ("batch_norm", not b.batch_norm),
            ("kind", "residual" if b.kind != "residual" else "separable"),
        ]:
            conv = list(g.conv)
            conv[i] = replace(b, **{field: value})
            changed.append(replace(g, conv=tuple(conv)))
    for i, d in enumerate(g.dense):
        for field, value in [("units", d.units + 1), ("activation", "tanh")]:
            dense = list(g.dense)
            dense[i] = replace(d, **{field: value})
            changed.append(replace(g, dense=tuple(dense)))
    changed += [
        replace(g, conv=g.conv + (block(),)),
        replace(g, conv=g.conv[:-1]),
        replace(g, dense=g.dense + (DenseLayer(64, "relu"),)),
        replace(g, dense=()),
        replace(g, conv=tuple(reversed(g.conv))),
        replace(g, dropout=0.3),
        replace(g, optimizer="sgd" if g.optimizer != "sgd" else "adam"),
        replace(g, learning_rate=g.learning_rate * 1.5),
        replace(g, weight_decay=0.0 if g.weight_decay else 1e-4),
        replace(g, head="gap" if g.head != "gap" else "flatten"),
    ]
    return changed


def test_key_differs_when_any_one_gene_changes():
    variants = one_gene_changes(GENOME)
    assert len(variants) == 2 * 6 + 2 + 10
    keys = {GENOME.key()} | {v.key() for v in variants}
    assert len(keys) == len(variants) + 1
    rng = random.Random(2)
    for _ in range(100):
        g = sample_genome(WIDE, rng)
        for v in one_gene_changes(g):
            if v != g:
                assert v.key() != g.key()


def test_key_equal_for_equal_genomes_with_int_valued_scalars():
    for space in (
        SearchSpace.from_dict({"weight_decays": [0], "dropout": [0], "learning_rates": [1]}),
        SearchSpace.from_dict(
            {"weight_decays": [0], "dropout": [0], "optimizers": ["sgd"], "learning_rates": {"sgd": [1, 1]}}
        ),
    ):
        space.validate()  # whole numbers are accepted in the space
        g = sample_genome(space, random.Random(3))
        assert g.learning_rate == 1.0 and g.dropout == 0.0 and g.weight_decay == 0.0
        reloaded = Genome.from_dict(json.loads(json.dumps(g.to_dict())))
        assert reloaded == g
        assert reloaded.key() == g.key()
        int_valued = replace(g, learning_rate=1, dropout=0, weight_decay=0)
        assert int_valued == g and int_valued.key() == g.key()


SUMMARY_BLOCK = re.compile(r"([CRS])(\d+)k(\d+)([a-z_]+)(/max|/avg|/s2)?(·bn)?")
SUMMARY = re.compile(
    r"(?P<convs>.+?) → (?P<head>\w+)(?P<dense>( D\d+[a-z_]+(·bn)?)*) \| drop (?P<drop>\S+) \| "
    r"(?P<opt>\w+) (?P<lr>\d\.\de[-+]\d\d)(?: wd (?P<wd>\S+))?"
)


def test_summary_of_known_genomes():
    assert GENOME.summary() == (
        "C32k5leaky_relu/max·bn C64k3gelu → flatten D128silu·bn | drop 0.2 | adamw 3.0e-03 wd 0.0001"
    )
    assert GENOME2.summary() == "R16k3relu/s2·bn R16k3elu/avg S32k5gelu/max·bn → avgmax | drop 0 | sgd 5.0e-02"
    two_dense = replace(GENOME, dense=(DenseLayer(64, "relu"), DenseLayer(32, "tanh", batch_norm=False)), head="gap")
    assert two_dense.summary() == (
        "C32k5leaky_relu/max·bn C64k3gelu → gap D64relu·bn D32tanh | drop 0.2 | adamw 3.0e-03 wd 0.0001"
    )


def test_summary_parses_back_to_the_genes():
    for g in POOL[:400]:
        text = g.summary()
        assert "\n" not in text
        m = SUMMARY.fullmatch(text)
        assert m, text
        tokens = m["convs"].split(" ")
        assert len(tokens) == len(g.conv)
        for token, b in zip(tokens, g.conv):
            kind, filters, kernel, act, down, bn = SUMMARY_BLOCK.fullmatch(token).groups()
            assert kind == {"plain": "C", "residual": "R", "separable": "S"}[b.kind]
            assert (int(filters), int(kernel), act) == (b.filters, b.kernel, b.activation)
            assert (down or "") == {"max": "/max", "avg": "/avg", "stride": "/s2", "none": ""}[b.downsample]
            assert (bn is not None) == b.batch_norm
        assert m["head"] == g.head
        assert m["dense"] == "".join(f" D{d.units}{d.activation}{'·bn' if d.batch_norm else ''}" for d in g.dense)
        assert float(m["drop"]) == g.dropout and m["opt"] == g.optimizer
        assert float(m["lr"]) == pytest.approx(g.learning_rate, rel=0.051)
        assert (m["wd"] is None) == (g.weight_decay == 0)
        if m["wd"] is not None:
            assert float(m["wd"]) == pytest.approx(g.weight_decay, rel=1e-5)


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
    one_slot = 1 / len(gene_slots(GENOME, SPACE))
    assert len(gene_slots(GENOME, SPACE)) == 6 + 2 + 4  # conv slots, dense slots, scalar genes
    for v in one_gene_changes(GENOME)[:14]:  # one conv or dense slot differs
        assert diversity([GENOME, v], SPACE) == pytest.approx(one_slot)
    # The optimizer and its learning rate are one gene: changing either or both differs in one slot.
    for v in (
        replace(GENOME, optimizer="adam"),
        replace(GENOME, learning_rate=1e-3),
        replace(GENOME, optimizer="sgd", learning_rate=0.1),
        replace(GENOME, head="gap"),
    ):
        assert diversity([GENOME, v], SPACE) == pytest.approx(one_slot)
    # nothing shared: every slot differs
    other = Genome(
        conv=tuple(block(8, 1, "tanh", "avg", False) for _ in range(6)),
        dense=(DenseLayer(32, "elu"), DenseLayer(32, "elu")),
        dropout=0.5,
        optimizer="sgd",
        learning_rate=0.1,
        weight_decay=1e-3,
        head="gap",
    )
    assert diversity([GENOME, other], SPACE) == 1.0
    assert 0.0 < diversity(genomes, SPACE) <= 1.0


# ------------------------------------------------------------------------------ learning rates


def test_sampled_learning_rates_are_log_uniform_in_the_optimizer_range():
    rng = random.Random(50)
    for optimizer in OPTIMIZERS:
        low, high = SPACE.learning_rates[optimizer]
        assert SPACE.learning_rate_range(optimizer) == (low, high)
        values = [sample_learning_rate(optimizer, SPACE, rng) for _ in range(3_000)]
        assert all(low <= v <= high for v in values)
        assert all(v == float(f"{v:.2g}") for v in values)  # two significant digits
        middle = math.sqrt(low * high)  # the middle on a log scale
        assert abs(sum(v < middle for v in values) / len(values) - 0.5) < 0.04
        lower_tenth = low * (high / low) ** 0.1
        assert abs(sum(v < lower_tenth for v in values) / len(values) - 0.1) < 0.03
    # narrowed ranges are respected; a one-value range gives that value
    space = SearchSpace.from_dict({"learning_rates": {"sgd": [0.05, 0.06], "adam": [0.001, 0.001]}})
    assert {sample_learning_rate("adam", space, rng) for _ in range(50)} == {0.001}
    assert all(0.05 <= sample_learning_rate("sgd", space, rng) <= 0.06 for _ in range(500))
    # an optimizer missing from the mapping falls back to its default range
    low, high = DEFAULT_LEARNING_RATES["adamw"]
    bare = make_space(learning_rates={"sgd": [0.05, 0.06]})
    assert bare.learning_rate_range("adamw") == (low, high)
    assert all(low <= sample_learning_rate("adamw", bare, rng) <= high for _ in range(200))


def test_perturbed_learning_rates_step_up_to_a_factor_two_within_the_range():
    rng = random.Random(51)
    ratios = []
    for _ in range(3_000):
        new = perturb_learning_rate("sgd", 0.045, SPACE, rng)
        assert 0.01 <= new <= 0.2 and new == float(f"{new:.2g}")
        ratios.append(new / 0.045)
    assert all(0.5 / 1.03 <= r <= 2 * 1.03 for r in ratios)  # rounding to 2 digits moves it ≤ 2.3 % here
    assert abs(sum(r > 1 for r in ratios) / len(ratios) - 0.5) < 0.04
    assert min(ratios) < 0.55 and max(ratios) > 1.8
    # at the top of the range: never above it, and about half the steps are clipped to it
    tops = [perturb_learning_rate("sgd", 0.2, SPACE, rng) for _ in range(2_000)]
    assert max(tops) == 0.2 and min(tops) >= 0.1
    assert abs(tops.count(0.2) / len(tops) - 0.5) < 0.05
    # a rate from outside the range (an older space) comes back inside it
    assert perturb_learning_rate("adam", 0.5, SPACE, rng) == 3e-3
    assert perturb_learning_rate("adam", 1e-7, SPACE, rng) == 3e-4


def test_sampled_genomes_keep_a_rate_within_their_optimizer_range():
    space = SearchSpace.from_dict(
        {"learning_rates": {"sgd": [0.1, 0.3], "adam": [1e-4, 2e-4], "adamw": [0.002, 0.002]}}
    )
    space.validate()
    rng = random.Random(52)
    seen = set()
    for _ in range(1_000):
        g = sample_genome(space, rng)
        low, high = space.learning_rate_range(g.optimizer)
        assert low <= g.learning_rate <= high, g
        seen.add(g.optimizer)
    assert seen == set(OPTIMIZERS)


def test_old_search_spaces_are_translated():
    old = SearchSpace.from_dict({"pooling": ["max", "none"], "learning_rates": [0.001, 0.1, 0.01]})
    old.validate()
    assert old.downsampling == ["max", "none"]
    assert old.learning_rates == {name: [0.001, 0.1] for name in OPTIMIZERS}
    assert old.learning_rate_range("adam") == (0.001, 0.1)
    partial = SearchSpace.from_dict({"learning_rates": {"sgd": [0.05, 0.1]}})
    partial.validate()
    assert partial.learning_rates == {
        "sgd": [0.05, 0.1],
        "adam": DEFAULT_LEARNING_RATES["adam"],
        "adamw": DEFAULT_LEARNING_RATES["adamw"],
    }
    assert SearchSpace.from_dict({}).learning_rates == DEFAULT_LEARNING_RATES
    assert SearchSpace().learning_rates is not DEFAULT_LEARNING_RATES  # a copy, not the shared default


# ---------------------------------------------------------------------------- fitting the input


def assert_plan_fits(g: Genome, shape) -> list:
    plans = plan_conv_blocks(g, shape)
    assert len(plans) == len(g.conv)
    channels, h, w = shape
    for b, p in zip(g.conv, plans):
        assert p.in_channels == channels and p.out_channels == b.filters and p.in_hw == (h, w)
        assert p.kernel % 2 == 1 and 1 <= p.kernel <= b.kernel
        assert p.kernel <= min(h, w), f"kernel {p.kernel} on a {h}x{w} map"
        if b.kernel <= min(h, w):
            assert p.kernel == b.kernel  # only clipped when it does not fit
        else:
            assert p.kernel in (min(h, w), min(h, w) - 1)  # the largest odd size that fits
        halve = (2 if h >= 2 else 1, 2 if w >= 2 else 1)  # a side of 1 is never halved
        if b.downsample == "none" or (h, w) == (1, 1):
            assert p.pool is None and p.stride == (1, 1) and p.out_hw == (h, w)
        elif b.downsample == "stride":
            assert p.pool is None and p.stride == halve
            assert p.out_hw == (-(-h // halve[0]), -(-w // halve[1]))  # ceil
        else:
            assert p.stride == (1, 1) and p.pool == halve
            assert p.out_hw == (h // halve[0], w // halve[1])  # floor
        channels, (h, w) = b.filters, p.out_hw
        assert h >= 1 and w >= 1
    return plans


def head_width(g: Genome, shape) -> int:
    plans = plan_conv_blocks(g, shape)
    channels, h, w = (plans[-1].out_channels, *plans[-1].out_hw) if plans else shape
    return {
        "flatten": channels * min(h, MAX_FEATURE_SIDE) * min(w, MAX_FEATURE_SIDE),
        "gap": channels,
        "avgmax": 2 * channels,
    }[g.head]


def assert_structure(g: Genome, model, shape) -> None:
    """The blocks and the head are what the genome and the plan say."""
    assert len(model.features) == len(g.conv)
    for b, m, p in zip(g.conv, model.features, model.plans):
        assert type(m) is BLOCKS[b.kind]
        pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}.get(b.downsample) if p.pool else None
        assert type(m.pool) is (pool or nn.Identity)
        if b.kind == "plain":
            assert (m.conv.kernel_size, m.conv.stride) == ((p.kernel,) * 2, p.stride)
        elif b.kind == "residual":
            assert (m.conv1.kernel_size, m.conv1.stride, m.conv2.stride) == ((p.kernel,) * 2, p.stride, (1, 1))
            if p.in_channels == p.out_channels and p.stride == (1, 1):
                assert type(m.skip) is nn.Identity
            else:
                conv = m.skip[0]
                assert (conv.kernel_size, conv.stride, conv.in_channels, conv.out_channels) == (
                    (1, 1),
                    p.stride,
                    p.in_channels,
                    p.out_channels,
                )
                assert type(m.skip[1]) is (nn.BatchNorm2d if b.batch_norm else nn.Identity)
        else:
            assert (m.depthwise.kernel_size, m.depthwise.stride, m.depthwise.groups) == (
                (p.kernel,) * 2,
                p.stride,
                p.in_channels,
            )
            assert m.depthwise.out_channels == p.in_channels
            assert m.pointwise.kernel_size == (1, 1) and m.pointwise.groups == 1
        norms = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
        convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
        assert bool(norms) == b.batch_norm and len(norms) in (0, len(convs))
        assert all((c.bias is None) == b.batch_norm for c in convs)
    head = list(model.classifier)
    if g.head == "gap":
        assert type(head[0]) is nn.AdaptiveAvgPool2d and head[0].output_size in (1, (1, 1))
        assert type(head[1]) is nn.Flatten
    elif g.head == "avgmax":
        assert type(head[0]) is GlobalAvgMaxPool
    else:
        h, w = model.plans[-1].out_hw
        if max(h, w) > MAX_FEATURE_SIDE:
            assert type(head[0]) is nn.AdaptiveAvgPool2d
            assert tuple(head[0].output_size) == (min(h, MAX_FEATURE_SIDE), min(w, MAX_FEATURE_SIDE))
            assert type(head[1]) is nn.Flatten
        else:
            assert type(head[0]) is nn.Flatten
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert len(linears) == len(g.dense) + 1
    assert linears[0].in_features == head_width(g, shape)
    assert [m.out_features for m in linears[:-1]] == [d.units for d in g.dense]


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_every_genome_builds_and_runs_on_meta(shape):
    """Plans for all pool genomes on this shape; a meta build and structure check for a fifth of them
    (+ deepest), and a block-by-block meta forward, checking each block's output against its plan, for
    half of those (meta forwards cost about 8 ms each, builds 2 ms)."""
    for g in POOL:
        assert_plan_fits(g, shape)
    index = SHAPES.index(shape)
    chosen = deepest_genomes() + POOL[index :: len(SHAPES)]
    assert len(chosen) >= 400
    deepest = len(deepest_genomes())
    for n, g in enumerate(chosen):
        num_classes = (2, 10, 7, 100)[n % 4]
        model = meta_model(g, shape, num_classes)
        assert_structure(g, model, shape)
        if n >= deepest and n % 2:
            continue
        x = torch.empty(2, *shape, device="meta")
        if n >= deepest:  # eval mode without autograd: same shapes, about twice as fast on meta
            model.eval()
        with torch.set_grad_enabled(n < deepest):  # training mode, as the trainer runs it, for the deepest
            h = (x - model.mean) / model.std  # what forward does, block by block
            for m, p in zip(model.features, model.plans):
                h = m(h)
                assert tuple(h.shape) == (2, p.out_channels, *p.out_hw), (g, shape)
            out = model.classifier(h)
            if n < deepest:
                assert tuple(model(x).shape) == (2, num_classes)
        assert out.shape == (2, num_classes), (g, shape)


def test_deepest_genome_plan_on_tiny_input():
    by_down = {g.conv[0].downsample: g for g in deepest_genomes()[:6]}  # plain blocks
    plans = assert_plan_fits(by_down["max"], (1, 3, 5))
    assert [p.kernel for p in plans] == [3, 1, 1, 1, 1, 1]
    assert [p.pool for p in plans] == [(2, 2), (1, 2), None, None, None, None]
    assert [p.out_hw for p in plans] == [(1, 2), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1)]
    plans = assert_plan_fits(by_down["stride"], (1, 3, 5))
    assert [p.kernel for p in plans] == [3, 1, 1, 1, 1, 1]
    assert [p.stride for p in plans] == [(2, 2), (2, 2), (1, 2), (1, 1), (1, 1), (1, 1)]
    assert all(p.pool is None for p in plans)
    assert [p.out_hw for p in plans] == [(2, 3), (1, 2), (1, 1), (1, 1), (1, 1), (1, 1)]
    plans = assert_plan_fits(by_down["stride"], (3, 17, 40))
    assert [p.out_hw for p in plans] == [(9, 20), (5, 10), (3, 5), (2, 3), (1, 2), (1, 1)]
    assert [p.kernel for p in plans] == [7, 7, 5, 3, 1, 1]


def test_real_forward_is_finite(one_thread):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(5)
    chosen = deepest_genomes() + rng.sample(POOL, 90)
    for n, g in enumerate(chosen):
        shape = SHAPES[n % len(SHAPES)]
        if count_macs(g, shape, 3) > 400_000_000:
            shape = (1, 3, 5)  # keeps the few very costly pool genomes fast: still a real forward
        model = build_model(g, shape, ["a", "b", "c"])
        x = torch.rand(2, *shape, generator=gen)
        assert 0.0 <= x.min() and x.max() <= 1.0
        with torch.no_grad():
            out = model(x)  # training mode, batch of 2 (batch norm on a 1×1 map needs ≥ 2)
            assert out.shape == (2, 3) and torch.isfinite(out).all(), (g, shape)
            model.eval()
            out = model(x[:1])
            assert out.shape == (1, 3) and torch.isfinite(out).all(), (g, shape)


def test_residual_block_adds_its_input(one_thread):
    """With the second convolution zeroed, a residual block with an identity skip is act(x): the skip
    really carries the input; with a projection it is act(skip(x))."""
    torch.manual_seed(2)
    x = torch.randn(2, 16, 6, 6)
    g = replace(GENOME2, conv=(block(16, 3, "relu", "none", False, "residual"),))
    m = build_model(g, (16, 6, 6), ["a", "b"]).features[0]
    assert type(m.skip) is nn.Identity
    with torch.no_grad():
        m.conv2.weight.zero_()
        m.conv2.bias.zero_()
        assert torch.allclose(m(x), torch.relu(x))
    g = replace(g, conv=(block(8, 3, "relu", "stride", False, "residual"),))
    m = build_model(g, (16, 6, 6), ["a", "b"]).features[0]
    assert isinstance(m.skip, nn.Sequential)
    with torch.no_grad():
        m.conv2.weight.zero_()
        m.conv2.bias.zero_()
        out = m(x)
        assert out.shape == (2, 8, 3, 3)
        assert torch.allclose(out, torch.relu(m.skip(x)))
        assert torch.allclose(m.skip(x), nn.functional.conv2d(x, m.skip[0].weight, m.skip[0].bias, stride=2))


def test_separable_block_is_depthwise_then_pointwise(one_thread):
    torch.manual_seed(3)
    g = replace(GENOME2, conv=(block(8, 3, "tanh", "stride", False, "separable"),))
    model = build_model(g, (4, 7, 7), ["a", "b"])
    m = model.features[0]
    # depthwise: 4 kernels 3×3 (+4 biases), pointwise: 4→8 (+8 biases)
    assert count_parameters(m) == 4 * 9 + 4 + 4 * 8 + 8
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        depth = torch.cat(
            [
                nn.functional.conv2d(
                    x[:, i : i + 1], m.depthwise.weight[i : i + 1], m.depthwise.bias[i : i + 1], stride=2, padding=1
                )
                for i in range(4)
            ],
            dim=1,
        )
        expected = torch.tanh(nn.functional.conv2d(torch.tanh(depth), m.pointwise.weight, m.pointwise.bias))
        assert expected.shape == (2, 8, 4, 4)
        assert torch.allclose(m(x), expected, atol=1e-6)


def test_heads():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [5.0, -2.0]]]])
    assert torch.equal(GlobalAvgMaxPool()(x), torch.tensor([[2.5, 0.5, 4.0, 5.0]]))
    for head, width in (("flatten", 64 * 4 * 4), ("gap", 64), ("avgmax", 128)):
        g = replace(GENOME, head=head)
        model = meta_model(g, (3, 17, 40), 5)  # 64×8×20 after the body
        assert model.plans[-1].out_hw == (8, 20)
        assert_structure(g, model, (3, 17, 40))
        assert [m for m in model.classifier if isinstance(m, nn.Linear)][0].in_features == width
    small = meta_model(replace(GENOME, head="flatten"), (1, 6, 6), 5)  # 3×3 map: no pooling in the head
    assert type(small.classifier[0]) is nn.Flatten
    assert [m for m in small.classifier if isinstance(m, nn.Linear)][0].in_features == 64 * 3 * 3


# ------------------------------------------------------------------------ parameter and MAC counts


def has_batch_norm_on_one_pixel(g: Genome, shape) -> bool:
    """Whether some batch norm runs on a 1×1 map (the convolutions' output, before any pooling)."""
    return any(
        b.batch_norm and all(-(-side // stride) == 1 for side, stride in zip(p.in_hw, p.stride))
        for b, p in zip(g.conv, plan_conv_blocks(g, shape))
    )


def test_estimate_parameters_equals_real_count(one_thread):
    rng = random.Random(7)
    for n, g in enumerate(rng.sample(POOL, 40) + deepest_genomes()):
        shape = SHAPES[n % len(SHAPES)]
        for num_classes in (2, 10):
            real = count_parameters(build_model(g, shape, [str(i) for i in range(num_classes)]))
            assert estimate_parameters(g, shape, num_classes) == real
            assert measure_cost(g, shape, num_classes) == Cost(real, count_macs(g, shape, num_classes))


def test_count_macs_by_hand():
    one_conv = Genome(
        conv=(block(8, 3, "relu", "none", True),),
        dense=(),
        dropout=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=0.0,
    )
    assert count_macs(one_conv, (1, 8, 8), 10) == 8 * 8 * 8 * 1 * 9 + (8 * 4 * 4) * 10
    # a residual block with a stride: both convolutions and the 1×1 skip run on the 4×4 output
    res = replace(one_conv, conv=(block(16, 3, "relu", "stride", True, "residual"),), head="gap")
    assert count_macs(res, (1, 8, 8), 10) == 16 * (16 * 1 * 9 + 16 * 16 * 9 + 16 * 1) + 16 * 10
    # pooling comes after the block: the convolutions run at full size
    pooled = replace(one_conv, conv=(block(8, 3, "relu", "max", True),))
    assert count_macs(pooled, (1, 8, 8), 10) == 8 * 8 * 8 * 9 + (8 * 4 * 4) * 10
    sep = replace(
        one_conv,
        conv=(block(32, 5, "relu", "none", True, "separable"),),
        head="avgmax",
        dense=(DenseLayer(20, "relu"),),
    )
    assert count_macs(sep, (4, 6, 6), 3) == 36 * (4 * 25 + 4 * 32) + 64 * 20 + 20 * 3


def real_macs(g: Genome, shape, num_classes: int, batch: int = 2) -> float:
    model = build_model(g, shape, [str(i) for i in range(num_classes)]).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(batch, *shape))
    counts = counter.get_flop_counts()["Global"]
    assert {str(op) for op in counts} <= {"aten.convolution", "aten.addmm", "aten.mm"}, counts
    return counter.get_total_flops() / 2 / batch


def test_count_macs_matches_the_flop_counter(one_thread):
    torch.manual_seed(4)
    rng = random.Random(8)
    shapes = [(1, 8, 8), (3, 17, 40), (1, 3, 5), (3, 32, 32)]
    chosen = [GENOME, GENOME2] + deepest_genomes()[::3] + rng.sample(POOL, 120)
    checked = 0
    for n, g in enumerate(chosen):
        shape = shapes[n % len(shapes)]
        macs = count_macs(g, shape, 7)
        if macs > 30_000_000:
            continue
        assert real_macs(g, shape, 7) == macs, (g.summary(), shape)
        checked += 1
    assert checked > 60


def test_layer_table_of_a_known_genome():
    rows = layer_table(GENOME, (1, 28, 28), 10)
    assert [r["layer"] for r in rows] == [
        "Input (normalised)",
        "Plain 32 filters 5×5, leaky_relu, batch norm, max pool 2×2",
        "Plain 64 filters 3×3, gelu",
        "Adaptive average pool to 4×4",
        "Flatten",
        "Dropout 0.2",
        "Linear 128",
        "BatchNorm1d",
        "SiLU",
        "Dropout 0.2",
        "Linear 10",
    ]
    assert [r["output_shape"] for r in rows] == [
        "1×28×28",
        "32×14×14",
        "64×14×14",
        "64×4×4",
        "1024",
        "1024",
        "128",
        "128",
        "128",
        "128",
        "10",
    ]
    assert [r["parameters"] for r in rows] == [  # the dense layer's bias is batch norm's shift
        0,
        1 * 32 * 25 + 2 * 32,
        32 * 64 * 9 + 64,
        0,
        0,
        0,
        1024 * 128,
        2 * 128,
        0,
        0,
        128 * 10 + 10,
    ]
    assert [r["macs"] for r in rows] == [
        0,
        28 * 28 * 32 * 25,
        14 * 14 * 64 * 32 * 9,
        0,
        0,
        0,
        1024 * 128,
        0,
        0,
        0,
        128 * 10,
    ]
    assert [(r["kind"], r["skip"]) for r in rows[1:3]] == [("plain", False), ("plain", False)]
    expected = 1 * 32 * 25 + 2 * 32 + 32 * 64 * 9 + 64 + 1024 * 128 + 2 * 128 + 128 * 10 + 10
    assert sum(r["parameters"] for r in rows) == expected == estimate_parameters(GENOME, (1, 28, 28), 10)
    assert sum(r["macs"] for r in rows) == count_macs(GENOME, (1, 28, 28), 10)


def test_layer_table_of_a_known_genome_with_every_kind():
    rows = layer_table(GENOME2, (3, 16, 16), 10)
    assert [r["layer"] for r in rows] == [
        "Input (normalised)",
        "Residual 16 filters 3×3, stride 2, relu, batch norm, skip via 1×1 conv",
        "Residual 16 filters 3×3, elu, avg pool 2×2, identity skip",
        "Separable 32 filters 3×3, gelu, batch norm, max pool 2×2",  # kernel 5 clipped on a 4×4 map
        "Global average and max pool",
        "Linear 10",
    ]  # dropout 0: no row
    assert [r["output_shape"] for r in rows] == ["3×16×16", "16×8×8", "16×4×4", "32×2×2", "64", "10"]
    assert [r["parameters"] for r in rows] == [
        0,
        3 * 16 * 9 + 32 + 16 * 16 * 9 + 32 + 3 * 16 + 32,  # conv1, bn1, conv2, bn2, 1×1 skip conv, skip bn
        2 * (16 * 16 * 9 + 16),  # two convolutions with biases, identity skip
        16 * 9 + 32 + 16 * 32 + 64,  # depthwise 3×3, bn, pointwise, bn
        0,
        64 * 10 + 10,
    ]
    assert [r["macs"] for r in rows] == [
        0,
        64 * (16 * 3 * 9 + 16 * 16 * 9 + 16 * 3),
        2 * 64 * 16 * 16 * 9,
        16 * (16 * 9 + 16 * 32),
        0,
        640,
    ]
    assert [(r["kind"], r["skip"]) for r in rows[1:4]] == [("residual", True), ("residual", True), ("separable", False)]
    assert sum(r["parameters"] for r in rows) == 8922 == estimate_parameters(GENOME2, (3, 16, 16), 10)
    assert sum(r["macs"] for r in rows) == 484_224 == count_macs(GENOME2, (3, 16, 16), 10)
    gap = layer_table(replace(GENOME2, head="gap", dropout=0.3), (3, 16, 16), 4)
    assert [(r["layer"], r["output_shape"]) for r in gap[4:]] == [
        ("Global average pool", "32×1×1"),
        ("Flatten", "32"),
        ("Dropout 0.3", "32"),
        ("Linear 4", "4"),
    ]


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split("×"))


ACTIVATION_ROWS = {"ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Tanh"}


def assert_table_chains(g: Genome, shape, num_classes: int) -> list[dict]:
    rows = layer_table(g, shape, num_classes)
    assert rows[0]["output_shape"] == "×".join(map(str, shape)) and rows[0]["parameters"] == rows[0]["macs"] == 0
    model = meta_model(g, shape, num_classes)
    block_rows = rows[1 : 1 + len(g.conv)]
    for row, b, p, m in zip(block_rows, g.conv, plan_conv_blocks(g, shape), model.features):
        assert row["layer"] == describe_block(b, p)
        assert row["layer"].startswith(f"{b.kind.capitalize()} {b.filters} filters {p.kernel}×{p.kernel}")
        assert ("stride" in row["layer"]) == (p.stride != (1, 1))
        assert (" pool " in row["layer"]) == (p.pool is not None)
        assert ("batch norm" in row["layer"]) == b.batch_norm
        assert parse_shape(row["output_shape"]) == (b.filters, *p.out_hw)
        assert row["parameters"] == count_parameters(m)
        assert row["kind"] == b.kind and row["skip"] == (b.kind == "residual")
        if b.kind == "residual":
            projected = p.in_channels != p.out_channels or p.stride != (1, 1)
            assert row["layer"].endswith("skip via 1×1 conv" if projected else "identity skip")
    prev = parse_shape(rows[len(g.conv)]["output_shape"])
    denses = iter(g.dense)
    for row in rows[1 + len(g.conv) :]:
        name, out, params, macs = row["layer"], parse_shape(row["output_shape"]), row["parameters"], row["macs"]
        if match := re.fullmatch(r"Adaptive average pool to (\d+)×(\d+)", name):
            assert g.head == "flatten" and max(prev[1:]) > MAX_FEATURE_SIDE
            assert (
                out
                == (prev[0], min(prev[1], MAX_FEATURE_SIDE), min(prev[2], MAX_FEATURE_SIDE))
                == (prev[0], int(match[1]), int(match[2]))
            )
        elif name == "Global average pool":
            assert g.head == "gap" and out == (prev[0], 1, 1)
        elif name == "Global average and max pool":
            assert g.head == "avgmax" and out == (2 * prev[0],)
        elif name == "Flatten":
            assert out == (math.prod(prev),)
        elif name.startswith("Linear"):
            units = int(name.split()[1])
            d = next(denses, None)
            assert units == (d.units if d is not None else num_classes)
            bias = 0 if d is not None and d.batch_norm else units
            assert out == (units,) and params == prev[0] * units + bias and macs == prev[0] * units
        elif name.startswith("Dropout"):
            assert float(name.split()[1]) == g.dropout > 0 and out == prev
        elif name == "BatchNorm1d":
            assert out == prev and params == 2 * prev[0] and macs == 0
            prev = out
            continue
        else:
            assert name in ACTIVATION_ROWS, name
            assert out == prev
        if not name.startswith("Linear"):
            assert params == macs == 0, row
        prev = out
    assert next(denses, None) is None
    assert rows[-1]["output_shape"] == str(num_classes) and rows[-1]["layer"] == f"Linear {num_classes}"
    assert sum(r["parameters"] for r in rows) == count_parameters(model)
    assert sum(r["macs"] for r in rows) == count_macs(g, shape, num_classes)
    return rows


def test_layer_table_chains_and_counts(one_thread):
    rng = random.Random(6)
    candidates = deepest_genomes() + rng.sample(POOL, 200)
    one_pixel_bn = 0
    for n, g in enumerate(candidates):
        shape = SHAPES[n % len(SHAPES)]
        one_pixel_bn += has_batch_norm_on_one_pixel(g, shape)
        rows = assert_table_chains(g, shape, 10)
        total = sum(r["parameters"] for r in rows)
        assert total == estimate_parameters(g, shape, 10)
        if n < 40:
            assert total == count_parameters(build_model(g, shape, list("abcdefghij")))  # real weights
    assert one_pixel_bn > 20  # batch norm on 1-pixel maps is covered too


def test_layer_table_skips_zero_dropout():
    g = replace(GENOME, dropout=0.0)
    rows = layer_table(g, (1, 8, 8), 3)
    assert not any(r["layer"].startswith("Dropout") for r in rows)
    assert sum(r["layer"].startswith("Dropout") for r in layer_table(GENOME, (1, 8, 8), 3)) == 2


ONE_PIXEL = Genome(
    conv=tuple(
        block(16, 3, "relu", "max", True, kind) for kind in ("plain", "residual", "separable", "residual", "plain")
    ),
    dense=(),
    dropout=0.0,
    optimizer="adam",
    learning_rate=1e-3,
    weight_decay=0.0,
    head="avgmax",
)


def test_model_with_batch_norm_on_a_one_pixel_map_runs(one_thread):
    assert has_batch_norm_on_one_pixel(ONE_PIXEL, (1, 8, 8))
    assert [p.out_hw for p in plan_conv_blocks(ONE_PIXEL, (1, 8, 8))] == [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]
    model = build_model(ONE_PIXEL, (1, 8, 8), ["a", "b"])
    out = model(torch.rand(2, 1, 8, 8))  # training mode, batch of 2 (the trainer never trains on a batch of 1)
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.eval()(torch.rand(1, 1, 8, 8)).shape == (1, 2)
    assert estimate_parameters(ONE_PIXEL, (1, 8, 8), 2) == count_parameters(model)
    with pytest.raises(ValueError):  # a batch of one on a 1×1 map: why the trainer skips such a last batch
        model.train()(torch.rand(1, 1, 8, 8))


def test_layer_table_with_batch_norm_on_a_one_pixel_map():
    rows = assert_table_chains(ONE_PIXEL, (1, 8, 8), 10)
    assert [r["output_shape"] for r in rows[1:6]] == ["16×4×4", "16×2×2", "16×1×1", "16×1×1", "16×1×1"]
    assert "pool" not in rows[4]["layer"] and "pool" in rows[3]["layer"]  # nothing left to halve on 1×1
    assert sum(r["parameters"] for r in rows) == estimate_parameters(ONE_PIXEL, (1, 8, 8), 10)


# ------------------------------------------------------------------------------ budget repair

BUDGET_SHAPE = (3, 32, 32)
MAX_MACS = 40_000 * 32 * 32


def test_fit_to_budget_returns_a_genome_within_budget_unchanged():
    rng = random.Random(9)
    within = 0
    for g in [GENOME, GENOME2] + [sample_genome(SPACE, rng) for _ in range(100)]:
        cost = measure_cost(g, BUDGET_SHAPE, 10)
        if cost.macs <= MAX_MACS and cost.params <= 20_000_000:
            assert fit_to_budget(g, BUDGET_SHAPE, 10, max_macs=MAX_MACS, max_params=20_000_000) is g
            within += 1
        # exactly at the budget is within it
        assert fit_to_budget(g, BUDGET_SHAPE, 10, max_macs=cost.macs, max_params=cost.params) is g
    assert within > 40


@pytest.mark.parametrize(
    "max_macs,max_params", [(MAX_MACS, 20_000_000), (2_000_000, 200_000)], ids=["default", "tight"]
)
def test_fit_to_budget_repairs_within_both_budgets(max_macs, max_params):
    rng = random.Random(10)
    repaired = failed = 0
    for _ in range(150):
        g = sample_genome(SPACE, rng)
        fitted = fit_to_budget(g, BUDGET_SHAPE, 10, max_macs=max_macs, max_params=max_params)
        assert fitted == fit_to_budget(g, BUDGET_SHAPE, 10, max_macs=max_macs, max_params=max_params)  # deterministic
        if fitted is None:
            failed += 1
            continue
        cost = measure_cost(fitted, BUDGET_SHAPE, 10)
        assert cost.macs <= max_macs and cost.params <= max_params, fitted.summary()
        before = measure_cost(g, BUDGET_SHAPE, 10)
        if fitted is not g:
            repaired += 1
            assert fitted != g and (before.macs > max_macs or before.params > max_params)
            # the repair keeps the genes it does not have to touch, and its floors
            assert (fitted.optimizer, fitted.learning_rate, fitted.dropout, fitted.weight_decay) == (
                g.optimizer,
                g.learning_rate,
                g.dropout,
                g.weight_decay,
            )
            assert 1 <= len(fitted.conv) <= len(g.conv)
            assert all(b.filters >= 8 and b.kind in BLOCK_KINDS for b in fitted.conv)
    assert repaired > 20  # 28 and 132 of 150 with this seed
    if max_macs == MAX_MACS:
        assert failed == 0  # 40 000 MACs per pixel is always reachable in this space


def test_fit_to_budget_first_pools_an_earlier_block():
    # a costly full-resolution block after a cheap one that keeps its size: the cheap one gets max pooling
    simple = Genome(
        conv=(block(8, 3, "relu", "none", True), block(128, 5, "relu", "none", False)),
        dense=(),
        dropout=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=0.0,
    )
    full = measure_cost(simple, BUDGET_SHAPE, 10).macs
    assert full == 32 * 32 * (8 * 3 * 9 + 128 * 8 * 25) + 128 * 16 * 10
    fitted = fit_to_budget(simple, BUDGET_SHAPE, 10, max_macs=full // 2, max_params=10**9)
    assert fitted == replace(simple, conv=(replace(simple.conv[0], downsample="max"), simple.conv[1]))
    assert measure_cost(fitted, BUDGET_SHAPE, 10).macs <= full // 4 + 32 * 32 * 8 * 3 * 9
    costly = Genome(
        conv=(
            block(8, 3, "relu", "none", True),
            block(16, 3, "relu", "stride", True),
            block(128, 5, "relu", "none", True, "residual"),
        ),
        dense=(),
        dropout=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=0.0,
    )
    before = measure_cost(costly, BUDGET_SHAPE, 10)
    limit = before.macs // 2
    fitted = fit_to_budget(costly, BUDGET_SHAPE, 10, max_macs=limit, max_params=10**9)
    # block 1 already downsamples, so the nearest earlier block that keeps its size (block 0) gets max pooling;
    # the costly block then runs on a quarter of the pixels and nothing else has to change
    expected = replace(costly, conv=(replace(costly.conv[0], downsample="max"),) + costly.conv[1:])
    assert fitted == expected
    assert measure_cost(fitted, BUDGET_SHAPE, 10).macs <= limit < before.macs
    # with nothing earlier left to pool, its filters are halved
    alone = replace(costly, conv=costly.conv[2:])
    halved = fit_to_budget(
        alone, BUDGET_SHAPE, 10, max_macs=measure_cost(alone, BUDGET_SHAPE, 10).macs // 2, max_params=10**9
    )
    assert halved == replace(alone, conv=(replace(alone.conv[0], filters=64),))


def test_fit_to_budget_switches_a_flatten_head_over_the_parameter_cap():
    g = Genome(
        conv=(block(16, 3, "relu", "max", True),),
        dense=(DenseLayer(512, "relu"),),
        dropout=0.1,
        optimizer="sgd",
        learning_rate=0.05,
        weight_decay=0.0,
    )
    assert measure_cost(g, (1, 8, 8), 10).params > 100_000  # 16×4×4 flattened into 512 units
    fitted = fit_to_budget(g, (1, 8, 8), 10, max_macs=10**12, max_params=100_000)
    assert fitted == replace(g, head="avgmax")
    assert measure_cost(fitted, (1, 8, 8), 10).params <= 100_000


def test_fit_to_budget_gives_up_on_an_impossible_budget():
    for g in (GENOME, GENOME2, deepest_genomes()[0]):
        assert fit_to_budget(g, BUDGET_SHAPE, 10, max_macs=1, max_params=10**9) is None
        assert fit_to_budget(g, BUDGET_SHAPE, 10, max_macs=10**12, max_params=1) is None


# ------------------------------------------------------------------------------- normalisation


def test_model_normalises_inside_and_keeps_its_metadata(one_thread):
    shape, classes = (3, 17, 40), ["cat", "dog", "bird"]
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    for g in (GENOME, GENOME2):
        torch.manual_seed(1)
        model = build_model(g, shape, classes, mean=mean, std=std).eval()
        assert model.input_shape == shape and isinstance(model.input_shape, tuple)
        assert model.classes == classes
        buffers = dict(model.named_buffers())
        assert torch.equal(buffers["mean"], torch.tensor(mean).view(1, 3, 1, 1))
        assert torch.equal(buffers["std"], torch.tensor(std).view(1, 3, 1, 1))
        assert "mean" in model.state_dict() and "std" in model.state_dict()

        plain = build_model(g, shape, classes, mean=[0.0] * 3, std=[1.0] * 3).eval()
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


@pytest.mark.parametrize("stride, hw", [((2, 2), (7, 9)), ((2, 1), (8, 8)), ((1, 2), (1, 2))])
def test_a_subsampled_pointwise_conv_computes_what_a_strided_1x1_conv_does(stride, hw):
    torch.manual_seed(0)
    strided = nn.Conv2d(3, 5, 1, stride=stride)
    ours = SubsampledPointwiseConv(3, 5, 1, stride=stride)
    ours.load_state_dict(strided.state_dict())
    x = torch.rand(4, 3, *hw).contiguous(memory_format=torch.channels_last)
    expected, got = strided(x), ours(x)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)
    expected.square().sum().backward()
    got.square().sum().backward()
    assert torch.allclose(ours.weight.grad, strided.weight.grad, atol=1e-5)


def test_strided_projections_on_few_channels_avoid_the_strided_1x1_kernel_and_keep_their_weight_names():
    block = ConvBlock(16, 3, "relu", "stride", True, "residual")
    genome = Genome(
        conv=(block, ConvBlock(32, 3, "relu", "stride", True, "residual")),
        dense=(),
        dropout=0.0,
        optimizer="sgd",
        learning_rate=0.01,
        weight_decay=0.0,
    )
    model = build_model(genome, (3, 32, 32), ["a", "b"])
    first, second = model.features[0].skip[0], model.features[1].skip[0]
    assert type(first) is SubsampledPointwiseConv  # 3 input channels: the kernel that crashed
    assert type(second) is nn.Conv2d and second.stride == (2, 2)  # 16 channels: the strided kernel is safe
    assert "features.0.skip.0.weight" in model.state_dict()


@pytest.mark.parametrize(
    "space",
    [
        SearchSpace(),
        SearchSpace(
            filters=[8, 16],
            heads=["gap", "flatten"],
            conv_blocks=[1, 2],
            dense_layers=[1, 2],
            dropout=[0.1, 0.5],
            weight_decays=[0.0],
            optimizers=["sgd"],
            kernel_sizes=[5],
            activations=["gelu"],
            block_kinds=["residual"],
            downsampling=["stride"],
        ),
    ],
)
def test_the_reference_network_is_the_plain_cnn_as_near_as_the_space_allows(space):
    from automodel.evolution.genome import reference_genome

    g = reference_genome(space)
    assert space.conv_blocks[0] <= len(g.conv) <= space.conv_blocks[1]
    assert space.dense_layers[0] <= len(g.dense) <= space.dense_layers[1]
    assert all(
        b.filters in space.filters
        and b.kernel in space.kernel_sizes
        and b.activation in space.activations
        and b.kind in space.block_kinds
        and b.downsample in space.downsampling
        for b in g.conv
    )
    assert [b.filters for b in g.conv] == sorted(b.filters for b in g.conv)
    assert g.head in space.heads and g.dropout in space.dropout and g.optimizer in space.optimizers
    low, high = space.learning_rate_range(g.optimizer)
    assert low <= g.learning_rate <= high and g.weight_decay in space.weight_decays
    if space == SearchSpace():
        assert (
            g.summary()
            == "C32k3relu/max·bn C64k3relu/max·bn C128k3relu/max·bn → flatten | drop 0 | adamw 1.0e-03 wd 0.0005"
        )
