"""Selection, crossover and mutation as plain seeded functions: statistics and invariants."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import fields, replace

import pytest
from spaces import make_space

from automodel.config import OPTIMIZERS, SearchSpace
from automodel.evolution.genome import (
    SCALAR_GENES,
    ConvBlock,
    DenseLayer,
    Genome,
    from_slots,
    gene_slots,
    sample_genome,
    scalar_value,
)
from automodel.evolution.operators import (
    CONV_GENES,
    CROSSOVERS,
    SELECTIONS,
    _mutate_training,
    crossover_one_point,
    crossover_two_point,
    crossover_uniform,
    equal_fidelity_fitness,
    mutate,
    select_elite,
    select_rank,
    select_roulette,
    select_sus,
    select_tournament,
    select_truncation,
)

SPACE = make_space()


def frequencies(picks: list[int], n: int) -> list[float]:
    counts = Counter(picks)
    assert set(counts) <= set(range(n)), f"index out of range: {sorted(set(counts) - set(range(n)))}"
    return [counts[i] / len(picks) for i in range(n)]


def assert_close(observed: list[float], expected: list[float], tol: float) -> None:
    assert len(observed) == len(expected)
    worst = max(abs(o - e) for o, e in zip(observed, expected))
    assert worst <= tol, f"max deviation {worst:.4f} > {tol}: observed {observed}, expected {expected}"


# ---------------------------------------------------------------------------------- selection

FITNESS = [0.1, 0.5, 0.2, 0.9, 0.0, 0.3, 0.7, 0.05]


def test_sus_counts_proportional_to_fitness():
    rng = random.Random(1)
    picks: list[int] = []
    for _ in range(2_000):
        picks += select_sus(FITNESS, 25, rng)
    total = sum(FITNESS)
    assert_close(frequencies(picks, len(FITNESS)), [f / total for f in FITNESS], tol=0.005)
    assert FITNESS[4] == 0 and 4 not in picks


def test_sus_every_call_gives_floor_or_ceil_of_expected_counts():
    rng = random.Random(2)
    calls = 0
    for trial in range(600):
        n = rng.randint(1, 12)
        fitness = [rng.choice([0.0, rng.random(), rng.uniform(0, 100), float(rng.randint(1, 5))]) for _ in range(n)]
        if trial % 10 == 0:
            fitness = [0.0] * n  # all zero: uniform
        k = rng.randint(1, 40)
        total = sum(fitness)
        expected = [k * f / total for f in fitness] if total > 0 else [k / n] * n
        for _ in range(5):
            picks = select_sus(fitness, k, rng)
            calls += 1
            assert len(picks) == k
            counts = Counter(picks)
            assert set(counts) <= set(range(n))
            for i in range(n):
                assert math.floor(expected[i] + 1e-9) <= counts[i] <= math.ceil(expected[i] - 1e-9), (
                    f"fitness={fitness} k={k}: individual {i} picked {counts[i]} times, expected {expected[i]:.4f}"
                )
    assert calls == 3000


def test_sus_all_zero_is_uniform():
    rng = random.Random(3)
    picks: list[int] = []
    for _ in range(2_000):
        picks += select_sus([0.0] * 5, 7, rng)
    assert_close(frequencies(picks, 5), [0.2] * 5, tol=0.01)


def test_roulette_frequencies_follow_fitness():
    rng = random.Random(4)
    picks = select_roulette(FITNESS, 100_000, rng)
    assert len(picks) == 100_000
    total = sum(FITNESS)
    assert_close(frequencies(picks, len(FITNESS)), [f / total for f in FITNESS], tol=0.006)
    assert 4 not in picks  # zero fitness is never spun


def test_roulette_negative_and_nonfinite_count_as_zero():
    rng = random.Random(5)
    picks = select_roulette([-3.0, 1.0, float("nan"), 3.0, float("inf")], 40_000, rng)
    assert_close(frequencies(picks, 5), [0.0, 0.25, 0.0, 0.75, 0.0], tol=0.01)


def test_roulette_all_zero_is_uniform():
    rng = random.Random(6)
    picks = select_roulette([0.0] * 6, 60_000, rng)
    assert_close(frequencies(picks, 6), [1 / 6] * 6, tol=0.01)


def test_tournament_the_size_of_the_population_always_picks_the_best():
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 15)
        fitness = [round(rng.random(), 1) for _ in range(n)]  # rounding makes ties common
        best = max(range(n), key=lambda i: (fitness[i], -i))  # a tie goes to the earlier index
        for size in (n, n + 3):
            assert set(select_tournament(fitness, 20, rng, tournament_size=size)) == {best}


def test_tournament_of_one_is_uniform():
    rng = random.Random(8)
    picks = select_tournament(FITNESS, 40_000, rng, tournament_size=1)
    assert_close(frequencies(picks, len(FITNESS)), [1 / len(FITNESS)] * len(FITNESS), tol=0.01)


def test_tournament_mean_fitness_grows_with_size():
    fitness = [i / 9 for i in range(10)]
    means = []
    for size in range(1, 11):
        picks = select_tournament(fitness, 10_000, random.Random(9), tournament_size=size)
        means.append(sum(fitness[i] for i in picks) / len(picks))
    for small, large in zip(means, means[1:]):
        assert large > small + 0.01, means
    assert abs(means[0] - 0.5) < 0.02 and means[-1] == 1.0


def test_rank_frequencies_follow_rank_with_shared_ties():
    fitness = [3.0, 1.0, 2.0, 2.0, 10.0, -5.0]
    # ascending: -5 (1), 1 (2), 2 and 2 (3, 4 -> 3.5 each), 3 (5), 10 (6)
    ranks = [5, 2, 3.5, 3.5, 6, 1]
    rng = random.Random(10)
    picks = select_rank(fitness, 100_000, rng)
    assert_close(frequencies(picks, 6), [r / sum(ranks) for r in ranks], tol=0.006)


def test_rank_is_independent_of_fitness_scale():
    fitness = [0.3, 0.1, 0.9, 0.5, 0.5, 0.0]
    scaled = [1000 * f + 5 for f in fitness]
    assert select_rank(fitness, 20_000, random.Random(11)) == select_rank(scaled, 20_000, random.Random(11))


def test_truncation_only_picks_the_top_fraction_uniformly():
    fitness = [0.4, 0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.5, 0.0]
    rng = random.Random(12)
    for fraction, top in [
        (0.5, {1, 3, 5, 7, 8}),
        (0.3, {1, 3, 5}),
        (0.25, {1, 3, 5}),
        (0.05, {1}),
        (1.0, set(range(10))),
    ]:
        picks = select_truncation(fitness, 30_000, rng, truncation_fraction=fraction)
        assert set(picks) == top, (fraction, sorted(set(picks)))
        freq = frequencies(picks, 10)
        assert_close([freq[i] for i in sorted(top)], [1 / len(top)] * len(top), tol=0.012)


def test_elite_is_the_k_best_best_first_ties_to_the_earlier_index():
    fitness = [0.5, 0.9, 0.5, 0.9, 0.1, 0.7]
    assert select_elite(fitness, 1) == [1]
    assert select_elite(fitness, 3) == [1, 3, 5]
    assert select_elite(fitness, 5) == [1, 3, 5, 0, 2]
    assert select_elite(fitness, 0) == []
    assert select_elite(fitness, 10) == [1, 3, 5, 0, 2, 4]
    rng = random.Random(13)
    for _ in range(200):
        values = [rng.randint(0, 5) for _ in range(rng.randint(1, 12))]
        k = rng.randint(0, len(values))
        expected = sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]
        assert select_elite(values, k) == expected


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_same_seed_same_picks(name):
    select = SELECTIONS[name]
    fitness = [0.2, 0.8, 0.5, 0.5, 0.1, 0.95, 0.0]
    first = select(fitness, 500, random.Random(14))
    assert first == select(fitness, 500, random.Random(14))
    assert len(first) == 500 and all(0 <= i < len(fitness) for i in first)
    assert first != select(fitness, 500, random.Random(15))


# --------------------------------------------------------------------- equal-fidelity fitness


JUST_BELOW = {v: math.nextafter(v, -math.inf) for v in (0.1, 0.5, 0.6, 0.8)}


def test_equal_fidelity_fitness_by_hand():
    """A capped value lies just below the lowest higher-rung fitness, so it never ties with it."""
    assert equal_fidelity_fitness([0.9, 0.5, 0.7], [1, 3, 3]) == [JUST_BELOW[0.5], 0.5, 0.7]
    # three rungs: only the 1-epoch candidate that beat a 3-epoch one is capped
    assert equal_fidelity_fitness([0.65, 0.6, 0.2, 0.8, 0.7], [1, 3, 1, 9, 3]) == [JUST_BELOW[0.6], 0.6, 0.2, 0.8, 0.7]
    # a 3-epoch candidate above the 9-epoch one is capped too, and the 1-epoch one just below that
    assert equal_fidelity_fitness([0.9, 0.85, 0.8], [1, 3, 9]) == [
        math.nextafter(JUST_BELOW[0.8], -math.inf),
        JUST_BELOW[0.8],
        0.8,
    ]
    assert equal_fidelity_fitness([0.3, 0.6, 0.2, 0.8, 0.7], [1, 3, 1, 9, 3]) == [0.3, 0.6, 0.2, 0.8, 0.7]
    assert equal_fidelity_fitness([], []) == []
    fitness = [0.9, 0.1]
    assert equal_fidelity_fitness(fitness, [1, 3]) == [JUST_BELOW[0.1], 0.1] and fitness == [0.9, 0.1]  # untouched
    assert equal_fidelity_fitness([0.3, 0.0], [1, 3]) == [0.0, 0.0]  # never below zero


def test_equal_fidelity_fitness_with_equal_epochs_is_unchanged():
    rng = random.Random(16)
    for _ in range(200):
        n = rng.randint(1, 12)
        fitness = [round(rng.random(), 2) for _ in range(n)]
        epochs = [rng.choice([1, 3, 9])] * n
        assert equal_fidelity_fitness(fitness, epochs) == fitness


def random_rungs(rng: random.Random) -> tuple[list[float], list[int]]:
    n = rng.randint(2, 14)
    return [round(rng.random(), 3) for _ in range(n)], [rng.choice([1, 3, 9, 27]) for _ in range(n)]


def test_equal_fidelity_values_never_rank_a_higher_rung_lower():
    rng = random.Random(17)
    capped = 0
    for _ in range(500):
        fitness, epochs = random_rungs(rng)
        values = equal_fidelity_fitness(fitness, epochs)
        assert len(values) == len(fitness)
        top = max(epochs)
        for f, e, v in zip(fitness, epochs, values):
            assert v <= f  # values stay accuracies, only ever lowered
            higher = [w for w, d in zip(values, epochs) if d > e]  # the values of the rungs above
            if higher and f >= min(higher):
                assert v == max(0.0, math.nextafter(min(higher), -math.inf))
            else:
                assert v == f
            if e == top:
                assert v == f
            for j in range(len(fitness)):
                if e > epochs[j]:
                    assert v >= values[j], (fitness, epochs, values)
        capped += values != fitness
    # (selection methods read only these values, so a proportional or rank method gives a higher-rung
    # candidate at least the chance of a lower-rung one, and a tie-break never favours the lower one)
    assert capped > 200


def test_select_elite_never_ranks_a_higher_rung_below_a_lower_one():
    cases = [([0.9, 0.5, 0.7], [1, 3, 3])]
    rng = random.Random(19)
    cases += [random_rungs(rng) for _ in range(300)]
    for fitness, epochs in cases:
        order = select_elite(equal_fidelity_fitness(fitness, epochs), len(fitness))
        ranked_epochs = [epochs[i] for i in order]
        assert ranked_epochs == sorted(ranked_epochs, reverse=True), (fitness, epochs, order)


# ---------------------------------------------------------------------------------- crossover


def block(
    filters: int,
    kernel: int = 3,
    activation: str = "relu",
    downsample: str = "max",
    bn: bool = True,
    kind: str = "plain",
) -> ConvBlock:
    return ConvBlock(
        filters=filters, kernel=kernel, activation=activation, downsample=downsample, batch_norm=bn, kind=kind
    )


SHALLOW = Genome(
    conv=(block(16, 3, "relu", "none", True, "separable"),),
    dense=(),
    dropout=0.0,
    optimizer="sgd",
    learning_rate=0.1,
    weight_decay=0.0,
    head="gap",
)
DEEP = Genome(
    conv=tuple(block(f, 5, "gelu", "avg", True, "residual") for f in (16, 32, 64, 128, 64, 32)),
    dense=(DenseLayer(512, "elu"), DenseLayer(64, "silu")),
    dropout=0.5,
    optimizer="adamw",
    learning_rate=1e-3,
    weight_decay=5e-4,
    head="avgmax",
)
MIDDLE = Genome(
    conv=(
        block(32, 5, "leaky_relu", "stride"),
        block(64, 3, "silu", "none", True, "separable"),
        block(128, kind="residual"),
    ),
    dense=(DenseLayer(128, "relu"),),
    dropout=0.2,
    optimizer="adam",
    learning_rate=3e-3,
    weight_decay=1e-5,
    head="flatten",
)
HAND_BUILT = [SHALLOW, DEEP, MIDDLE]


def assert_child_of(child: Genome, a: Genome, b: Genome, space: SearchSpace) -> None:
    for cb in child.conv:
        assert cb in a.conv or cb in b.conv, f"conv block {cb} in neither parent"
    for layer in child.dense:
        assert layer in a.dense or layer in b.dense, f"dense layer {layer} in neither parent"
    for name in SCALAR_GENES:
        assert scalar_value(child, name) in (scalar_value(a, name), scalar_value(b, name)), name
    # the optimizer keeps its own learning rate
    assert (child.optimizer, child.learning_rate) in ((a.optimizer, a.learning_rate), (b.optimizer, b.learning_rate))
    assert space.conv_blocks[0] <= len(child.conv) <= space.conv_blocks[1]
    assert space.dense_layers[0] <= len(child.dense) <= space.dense_layers[1]


def assert_genes_conserved(c1: Genome, c2: Genome, a: Genome, b: Genome) -> None:
    """In-bounds parents: the two children share out exactly the parents' genes."""
    assert Counter(c1.conv + c2.conv) == Counter(a.conv + b.conv)
    assert Counter(c1.dense + c2.dense) == Counter(a.dense + b.dense)
    for name in SCALAR_GENES:  # scalar slots never move, so they are complementary
        assert sorted(map(repr, (scalar_value(c1, name), scalar_value(c2, name)))) == sorted(
            map(repr, (scalar_value(a, name), scalar_value(b, name)))
        ), name


def slots_complementary(c1: Genome, c2: Genome, a: Genome, b: Genome, space: SearchSpace) -> bool:
    s1, s2, sa, sb = (gene_slots(g, space) for g in (c1, c2, a, b))
    return all((x == p and y == q) or (x == q and y == p) for x, y, p, q in zip(s1, s2, sa, sb))


def random_pairs(count: int, seed: int, space: SearchSpace = SPACE):
    rng = random.Random(seed)
    pool = HAND_BUILT if space is SPACE else []
    for i in range(count):
        if pool and i % 10 == 0:
            yield rng.choice(pool), sample_genome(space, rng)
        else:
            yield sample_genome(space, rng), sample_genome(space, rng)


def test_hand_built_parents_have_different_lengths_and_are_in_the_space():
    assert len({len(g.conv) for g in HAND_BUILT}) == 3 and len({len(g.dense) for g in HAND_BUILT}) == 3
    assert len({g.head for g in HAND_BUILT}) == 3 and len({g.optimizer for g in HAND_BUILT}) == 3
    for g in HAND_BUILT:
        assert_in_space(g, SPACE)


def test_scalar_genes_and_slots():
    assert SCALAR_GENES == ("head", "dropout", "training", "weight_decay")
    slots = gene_slots(MIDDLE, SPACE)
    assert len(slots) == SPACE.conv_blocks[1] + SPACE.dense_layers[1] + len(SCALAR_GENES)
    assert slots[:3] == list(MIDDLE.conv) and slots[3:6] == [None] * 3
    assert slots[6:8] == [MIDDLE.dense[0], None]
    assert slots[8:] == ["flatten", 0.2, ("adam", 3e-3), 1e-5]
    assert from_slots(slots, SPACE) == MIDDLE


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_crossover_children_carry_only_parent_genes(name):
    cross = CROSSOVERS[name]
    rng = random.Random(20)
    differing = 0
    for a, b in random_pairs(2_000, seed=21):
        c1, c2 = cross(a, b, SPACE, rng)
        assert isinstance(c1, Genome) and isinstance(c2, Genome)
        assert_child_of(c1, a, b, SPACE)
        assert_child_of(c2, a, b, SPACE)
        assert_genes_conserved(c1, c2, a, b)
        differing += (len(a.conv) != len(b.conv)) or (len(a.dense) != len(b.dense))
    assert differing > 1_000  # most pairs really had different layer counts


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_crossover_of_all_hand_built_pairs(name):
    cross = CROSSOVERS[name]
    rng = random.Random(22)
    for a in HAND_BUILT:
        for b in HAND_BUILT:
            for _ in range(50):
                c1, c2 = cross(a, b, SPACE, rng)
                assert_child_of(c1, a, b, SPACE)
                assert_child_of(c2, a, b, SPACE)
                assert_genes_conserved(c1, c2, a, b)


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_crossover_keeps_each_optimizer_with_its_own_learning_rate(name):
    """Parents that differ in both optimizer and rate: a child never pairs one parent's optimizer with the
    other's rate; and the training gene really is exchanged (both pairs turn up in first children)."""
    cross = CROSSOVERS[name]
    rng = random.Random(33)
    seen = Counter()
    same_optimizer = 0
    for _ in range(600):
        a, b = sample_genome(SPACE, rng), sample_genome(SPACE, rng)
        if rng.random() < 0.3:  # same optimizer, different rates
            b = replace(b, optimizer=a.optimizer, learning_rate=a.learning_rate * 1.5)
            same_optimizer += 1
        pairs = {(a.optimizer, a.learning_rate), (b.optimizer, b.learning_rate)}
        c1, c2 = cross(a, b, SPACE, rng)
        assert {(c.optimizer, c.learning_rate) for c in (c1, c2)} == pairs or a.learning_rate == b.learning_rate
        for c in (c1, c2):
            assert (c.optimizer, c.learning_rate) in pairs, (a, b, c)
        seen["a" if (c1.optimizer, c1.learning_rate) == (a.optimizer, a.learning_rate) else "b"] += 1
    assert same_optimizer > 100
    assert seen["a"] > 30 and seen["b"] > 30  # point crossovers swap the (second-last) training slot less often


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_crossover_in_a_narrow_space(name):
    space = make_space(
        conv_blocks=[2, 4],
        dense_layers=[1, 3],
        filters=[4, 8],
        kernel_sizes=[1, 3],
        block_kinds=["residual", "separable"],
        heads=["gap", "avgmax"],
    )
    cross = CROSSOVERS[name]
    rng = random.Random(23)
    for a, b in random_pairs(1_000, seed=24, space=space):
        c1, c2 = cross(a, b, space, rng)
        assert_child_of(c1, a, b, space)
        assert_child_of(c2, a, b, space)
        assert_genes_conserved(c1, c2, a, b)


@pytest.mark.parametrize("cross", [crossover_one_point, crossover_two_point], ids=["one_point", "two_point"])
def test_point_crossover_slots_are_complementary_for_equal_lengths(cross):
    # Same layer counts: no absent slot gets compacted away, so gene_slots line up exactly.
    rng = random.Random(25)
    checked = 0
    for a, b in random_pairs(3_000, seed=26):
        if len(a.conv) != len(b.conv) or len(a.dense) != len(b.dense):
            continue
        c1, c2 = cross(a, b, SPACE, rng)
        assert slots_complementary(c1, c2, a, b, SPACE), (a, b, c1, c2)
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("cross", [crossover_one_point, crossover_two_point], ids=["one_point", "two_point"])
def test_point_crossover_is_a_cut_of_the_aligned_slots(cross):
    """Different lengths: each child is a cut-and-swap of the aligned parent slots (absent slots dropped)."""
    rng = random.Random(27)
    for a, b in random_pairs(600, seed=28):
        sa, sb = gene_slots(a, SPACE), gene_slots(b, SPACE)
        n = len(sa)
        c1, c2 = cross(a, b, SPACE, rng)
        if cross is crossover_one_point:
            cuts = [(i, n) for i in range(1, n)]
        else:
            cuts = [(i, j) for i in range(1, n) for j in range(i + 1, n)]
        assert any(
            from_slots(sa[:i] + sb[i:j] + sa[j:], SPACE) == c1 and from_slots(sb[:i] + sa[i:j] + sb[j:], SPACE) == c2
            for i, j in cuts
        ), (a, b, c1, c2)


def test_uniform_crossover_mixes_roughly_half():
    rng = random.Random(29)
    a, b = (
        DEEP,
        Genome(
            conv=tuple(block(8, 1, "relu", "none", False, "separable") for _ in range(6)),
            dense=(DenseLayer(64, "relu"), DenseLayer(128, "relu")),
            dropout=0.1,
            optimizer="sgd",
            learning_rate=0.01,
            weight_decay=0.0,
            head="flatten",
        ),
    )
    from_a = total = 0
    for _ in range(2_000):
        c1, _ = crossover_uniform(a, b, SPACE, rng)
        s1, sa = gene_slots(c1, SPACE), gene_slots(a, SPACE)
        from_a += sum(x == y for x, y in zip(s1, sa))
        total += len(s1)
    assert abs(from_a / total - 0.5) < 0.02


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_crossing_a_genome_with_itself_gives_itself(name):
    rng = random.Random(30)
    genomes = HAND_BUILT + [sample_genome(SPACE, rng) for _ in range(200)]
    for g in genomes:
        assert CROSSOVERS[name](g, g, SPACE, rng) == (g, g)


@pytest.mark.parametrize("name", sorted(CROSSOVERS))
def test_crossover_same_seed_same_children(name):
    cross = CROSSOVERS[name]
    for a, b in random_pairs(200, seed=31):
        assert cross(a, b, SPACE, random.Random(32)) == cross(a, b, SPACE, random.Random(32))


# ----------------------------------------------------------------------------------- mutation


def assert_in_space(g: Genome, space: SearchSpace) -> None:
    assert space.conv_blocks[0] <= len(g.conv) <= space.conv_blocks[1], len(g.conv)
    assert space.dense_layers[0] <= len(g.dense) <= space.dense_layers[1], len(g.dense)
    for cb in g.conv:
        assert cb.filters in space.filters and cb.kernel in space.kernel_sizes
        assert cb.activation in space.activations and cb.downsample in space.downsampling
        assert cb.batch_norm in space.batch_norm and cb.kind in space.block_kinds
    for layer in g.dense:
        assert layer.units in space.dense_units and layer.activation in space.activations
    assert g.head in space.heads and g.dropout in space.dropout and g.weight_decay in space.weight_decays
    assert g.optimizer in space.optimizers
    low, high = space.learning_rate_range(g.optimizer)
    assert low <= g.learning_rate <= high, (g.optimizer, g.learning_rate)


def test_conv_genes_are_every_block_field():
    assert set(CONV_GENES) == {f.name for f in fields(ConvBlock)}


def test_rate_zero_changes_nothing():
    rng = random.Random(40)
    for g in HAND_BUILT + [sample_genome(SPACE, rng) for _ in range(500)]:
        assert mutate(g, SPACE, 0.0, rng) == g


def test_rate_one_resamples_every_gene():
    # Fixed lengths, so no layer is inserted or removed and positions line up.
    space = make_space(conv_blocks=[3, 3], dense_layers=[1, 1], batch_norm=[True, False])
    rng = random.Random(41)
    parent = sample_genome(space, rng)
    changed: Counter = Counter()
    draws = 3_000
    for _ in range(draws):
        child = mutate(parent, space, 1.0, rng)
        assert len(child.conv) == 3 and len(child.dense) == 1
        for old, new in zip(parent.conv, child.conv):
            for name in CONV_GENES:
                changed[name] += getattr(old, name) != getattr(new, name)
        changed["units"] += parent.dense[0].units != child.dense[0].units
        changed["dense_activation"] += parent.dense[0].activation != child.dense[0].activation
        for name in ("head", "dropout", "weight_decay", "optimizer"):
            changed[name] += getattr(parent, name) != getattr(child, name)
    choices = {
        "filters": space.filters,
        "kernel": space.kernel_sizes,
        "activation": space.activations,
        "downsample": space.downsampling,
        "batch_norm": space.batch_norm,
        "kind": space.block_kinds,
        "units": space.dense_units,
        "dense_activation": space.activations,
        "head": space.heads,
        "dropout": space.dropout,
        "weight_decay": space.weight_decays,
    }
    expected = {name: 1 - 1 / len(options) for name, options in choices.items()}
    # The optimizer is redrawn half the time a training gene mutates (else its rate steps): 1/2 × 2/3.
    # The learning rate is left out here: how often a step changes it depends on where the rate sits in
    # its range (at the top, half the steps are clipped back); see test_training_gene_* below.
    expected["optimizer"] = 0.5 * (1 - 1 / len(space.optimizers))
    assert set(expected) == set(CONV_GENES) | {
        "units",
        "dense_activation",
        "head",
        "dropout",
        "weight_decay",
        "optimizer",
    }
    for name, share in expected.items():
        samples = draws * (3 if name in CONV_GENES else 1)
        observed = changed[name] / samples
        assert abs(observed - share) < 0.035, (name, observed, share)


def test_rate_half_changes_about_half_as_often():
    space = make_space(conv_blocks=[2, 2], dense_layers=[0, 0])
    rng = random.Random(42)
    parent = replace(sample_genome(space, rng), optimizer="sgd", learning_rate=0.045)
    training = optimizer = kind = draws = 0
    for _ in range(4_000):
        child = mutate(parent, space, 0.5, rng)
        training += (child.optimizer, child.learning_rate) != (parent.optimizer, parent.learning_rate)
        optimizer += child.optimizer != parent.optimizer
        kind += child.conv[0].kind != parent.conv[0].kind
        draws += 1
    # A mutated training gene almost always changes: a step rounds back to 0.045 about 1.6 % of the time.
    assert abs(training / draws - 0.5 * 0.99) < 0.025
    assert abs(optimizer / draws - 0.5 * 0.5 * (1 - 1 / len(space.optimizers))) < 0.02
    assert abs(kind / draws - 0.5 * (1 - 1 / len(space.block_kinds))) < 0.025


def test_training_gene_steps_the_rate_when_the_optimizer_is_the_only_one():
    space = make_space(optimizers=["sgd"])
    rng = random.Random(47)
    parent = replace(HAND_BUILT[0], optimizer="sgd", learning_rate=0.045)
    ratios = []
    for _ in range(2_000):
        optimizer, rate = _mutate_training(parent, space, 1.0, rng)
        assert optimizer == "sgd" and 0.01 <= rate <= 0.2
        ratios.append(rate / 0.045)
    assert all(0.5 / 1.03 <= r <= 2 * 1.03 for r in ratios)  # a step of up to ×2 either way (2-digit rounding)
    assert abs(sum(r > 1 for r in ratios) / len(ratios) - 0.5) < 0.04
    assert min(ratios) < 0.55 and max(ratios) > 1.8
    assert abs(sum(math.log(r) for r in ratios) / len(ratios)) < 0.03  # no drift on the log scale
    # at the top of the range a step never leaves it
    top = [_mutate_training(replace(parent, learning_rate=0.2), space, 1.0, rng)[1] for _ in range(500)]
    assert max(top) == 0.2 and 0.35 < top.count(0.2) / len(top) < 0.65


def test_training_gene_redraws_a_new_optimizer_with_a_rate_from_its_own_range():
    rng = random.Random(48)
    parent = replace(HAND_BUILT[0], optimizer="adam", learning_rate=1e-3)
    children = [_mutate_training(parent, SPACE, 1.0, rng) for _ in range(3_000)]
    for optimizer, rate in children:
        low, high = SPACE.learning_rate_range(optimizer)
        assert low <= rate <= high, (optimizer, rate)
    switched = sum(o != "adam" for o, _ in children) / len(children)
    assert abs(switched - 0.5 * 2 / 3) < 0.03
    assert {o for o, _ in children} == set(OPTIMIZERS)
    # sgd's range [0.01, 0.2] does not overlap adam's: a switch to sgd always draws a new rate
    assert all(r >= 0.01 for o, r in children if o == "sgd")
    # redraws that keep adam land anywhere in its range, not only within a factor 2
    far = sum(o == "adam" and not 0.5 / 1.03 <= r / 1e-3 <= 2 * 1.03 for o, r in children) / len(children)
    assert 0.03 < far < 0.11  # ≈ 1/2 × 1/3 × 0.4
    assert [_mutate_training(parent, SPACE, 0.0, rng) for _ in range(100)] == [("adam", 1e-3)] * 100


def test_an_optimizer_no_longer_in_the_space_is_always_redrawn():
    space = SearchSpace.from_dict({"optimizers": ["sgd", "adamw"], "learning_rates": {"sgd": [0.05, 0.1]}})
    space.validate()
    rng = random.Random(49)
    parent = replace(MIDDLE, optimizer="adam", learning_rate=3e-3)
    seen = set()
    for rate in (0.0, 0.3, 1.0):
        for _ in range(300):
            optimizer, lr = _mutate_training(parent, space, rate, rng)
            assert optimizer in ("sgd", "adamw")
            low, high = space.learning_rate_range(optimizer)
            assert low <= lr <= high
            seen.add(optimizer)
    assert seen == {"sgd", "adamw"}
    child = mutate(parent, space, 0.0, rng)  # nothing else changes at rate 0
    assert child.optimizer in ("sgd", "adamw")
    assert replace(child, optimizer="adam", learning_rate=3e-3) == parent


def test_mutation_chains_keep_each_rate_in_its_optimizer_range():
    space = SearchSpace.from_dict(
        {"learning_rates": {"sgd": [0.1, 0.3], "adam": [1e-4, 2e-4], "adamw": [0.002, 0.002]}}
    )
    space.validate()
    rng = random.Random(50)
    steps = 0
    for _start in range(5):
        g = sample_genome(space, rng)
        for _ in range(400):
            g = mutate(g, space, 0.4, rng)
            low, high = space.learning_rate_range(g.optimizer)
            assert low <= g.learning_rate <= high, (g.optimizer, g.learning_rate)
            steps += 1
    assert steps == 2_000


@pytest.mark.parametrize(
    "space",
    [
        SPACE,
        SearchSpace.from_dict(
            {"conv_blocks": [2, 4], "dense_layers": [1, 3], "filters": [4, 8], "learning_rates": [0.01]}
        ),
    ],
    ids=["default", "narrow"],
)
def test_mutation_changes_length_within_bounds(space):
    rng = random.Random(43)
    g = sample_genome(space, rng)
    grew = shrank = dense_grew = dense_shrank = 0
    lengths = set()
    for _ in range(3_000):
        child = mutate(g, space, 0.3, rng)
        assert_in_space(child, space)
        grew += len(child.conv) > len(g.conv)
        shrank += len(child.conv) < len(g.conv)
        dense_grew += len(child.dense) > len(g.dense)
        dense_shrank += len(child.dense) < len(g.dense)
        assert abs(len(child.conv) - len(g.conv)) <= 1  # one insert and/or one removal per call
        lengths.add(len(child.conv))
        g = child
    assert grew > 100 and shrank > 100 and dense_grew > 100 and dense_shrank > 100
    assert lengths == set(range(space.conv_blocks[0], space.conv_blocks[1] + 1))


def test_mutated_genes_stay_in_the_space():
    # an old-format space: "pooling" and a list of learning rates
    space = SearchSpace.from_dict(
        {
            "filters": [4, 12],
            "kernel_sizes": [3, 9],
            "activations": ["tanh", "relu"],
            "pooling": ["avg"],
            "block_kinds": ["separable"],
            "heads": ["gap"],
            "batch_norm": [False],
            "dense_units": [7],
            "dropout": [0.15],
            "optimizers": ["sgd"],
            "learning_rates": [0.5],
            "weight_decays": [0.01],
            "conv_blocks": [1, 3],
            "dense_layers": [0, 1],
        }
    )
    space.validate()
    rng = random.Random(44)
    for _ in range(1_000):
        g = sample_genome(space, rng)
        assert_in_space(g, space)
        assert g.learning_rate == 0.5
        for rate in (0.2, 1.0):
            child = mutate(g, space, rate, rng)
            assert_in_space(child, space)
            assert child.learning_rate == 0.5
    # a default-space genome mutated at rate one lands wholly in this space (its lengths are trimmed too)
    for g in HAND_BUILT:
        for _ in range(20):
            child = mutate(g, space, 1.0, rng)
            assert_in_space(child, space)
            assert child.head == "gap" and child.optimizer == "sgd" and child.learning_rate == 0.5


def test_mutation_brings_a_wider_genome_into_the_space():
    space = make_space(conv_blocks=[1, 4], dense_layers=[0, 1])
    child = mutate(DEEP, space, 0.0, random.Random(45))
    assert len(child.conv) == 4 and len(child.dense) == 1
    assert child.conv == DEEP.conv[:4]


def test_mutation_same_seed_same_child():
    for g in HAND_BUILT:
        assert mutate(g, SPACE, 0.5, random.Random(46)) == mutate(g, SPACE, 0.5, random.Random(46))
    assert len({mutate(MIDDLE, SPACE, 0.5, random.Random(seed)) for seed in range(20)}) > 15
