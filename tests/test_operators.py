"""Selection, crossover and mutation as plain seeded functions: statistics and invariants."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from automodel.config import SearchSpace
from automodel.genome import (SCALAR_GENES, ConvBlock, DenseLayer, Genome, gene_slots, sample_genome)
from automodel.operators import (CROSSOVERS, SELECTIONS, crossover_one_point, crossover_two_point,
                                 crossover_uniform, mutate, select_elite, select_rank, select_roulette,
                                 select_sus, select_tournament, select_truncation)

SPACE = SearchSpace()


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
                    f"fitness={fitness} k={k}: individual {i} picked {counts[i]} times, expected {expected[i]:.4f}")
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
    for fraction, top in [(0.5, {1, 3, 5, 7, 8}), (0.3, {1, 3, 5}), (0.25, {1, 3, 5}), (0.05, {1}), (1.0, set(range(10)))]:
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


# ---------------------------------------------------------------------------------- crossover


def block(filters: int, kernel: int = 3, activation: str = "relu", pooling: str = "max", bn: bool = True) -> ConvBlock:
    return ConvBlock(filters=filters, kernel=kernel, activation=activation, pooling=pooling, batch_norm=bn)


SHALLOW = Genome(conv=(block(8, 1, "relu", "none", False),), dense=(), dropout=0.0, optimizer="sgd",
                 learning_rate=0.1, weight_decay=0.0)
DEEP = Genome(conv=tuple(block(f, 7, "gelu", "avg", True) for f in (16, 32, 64, 128, 64, 32)),
              dense=(DenseLayer(512, "elu"), DenseLayer(32, "silu")), dropout=0.5, optimizer="adamw",
              learning_rate=1e-4, weight_decay=5e-4)
MIDDLE = Genome(conv=(block(32, 5, "leaky_relu"), block(64, 3, "silu", "none", False), block(128)),
                dense=(DenseLayer(128, "relu"),), dropout=0.2, optimizer="adam", learning_rate=3e-3,
                weight_decay=1e-5)
HAND_BUILT = [SHALLOW, DEEP, MIDDLE]


def assert_child_of(child: Genome, a: Genome, b: Genome, space: SearchSpace) -> None:
    for cb in child.conv:
        assert cb in a.conv or cb in b.conv, f"conv block {cb} in neither parent"
    for layer in child.dense:
        assert layer in a.dense or layer in b.dense, f"dense layer {layer} in neither parent"
    for name in SCALAR_GENES:
        assert getattr(child, name) in (getattr(a, name), getattr(b, name)), name
    assert space.conv_blocks[0] <= len(child.conv) <= space.conv_blocks[1]
    assert space.dense_layers[0] <= len(child.dense) <= space.dense_layers[1]


def assert_genes_conserved(c1: Genome, c2: Genome, a: Genome, b: Genome) -> None:
    """In-bounds parents: the two children share out exactly the parents' genes."""
    assert Counter(c1.conv + c2.conv) == Counter(a.conv + b.conv)
    assert Counter(c1.dense + c2.dense) == Counter(a.dense + b.dense)
    for name in SCALAR_GENES:  # scalar slots never move, so they are complementary
        assert sorted(map(repr, (getattr(c1, name), getattr(c2, name)))) == \
            sorted(map(repr, (getattr(a, name), getattr(b, name)))), name


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
    for g in HAND_BUILT:
        assert_in_space(g, SPACE)


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
def test_crossover_in_a_narrow_space(name):
    space = SearchSpace(conv_blocks=[2, 4], dense_layers=[1, 3], filters=[4, 8], kernel_sizes=[1, 3])
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
    from automodel.genome import from_slots
    rng = random.Random(27)
    for a, b in random_pairs(600, seed=28):
        sa, sb = gene_slots(a, SPACE), gene_slots(b, SPACE)
        n = len(sa)
        c1, c2 = cross(a, b, SPACE, rng)
        if cross is crossover_one_point:
            cuts = [(i, n) for i in range(1, n)]
        else:
            cuts = [(i, j) for i in range(1, n) for j in range(i + 1, n)]
        assert any(from_slots(sa[:i] + sb[i:j] + sa[j:], SPACE) == c1
                   and from_slots(sb[:i] + sa[i:j] + sb[j:], SPACE) == c2 for i, j in cuts), (a, b, c1, c2)


def test_uniform_crossover_mixes_roughly_half():
    rng = random.Random(29)
    a, b = DEEP, Genome(conv=tuple(block(8, 1, "relu", "none", False) for _ in range(6)),
                        dense=(DenseLayer(64, "relu"), DenseLayer(128, "relu")), dropout=0.1,
                        optimizer="sgd", learning_rate=0.01, weight_decay=0.0)
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
        assert cb.activation in space.activations and cb.pooling in space.pooling
        assert cb.batch_norm in space.batch_norm
    for layer in g.dense:
        assert layer.units in space.dense_units and layer.activation in space.activations
    assert g.dropout in space.dropout and g.optimizer in space.optimizers
    assert g.learning_rate in space.learning_rates and g.weight_decay in space.weight_decays


def test_rate_zero_changes_nothing():
    rng = random.Random(40)
    for g in HAND_BUILT + [sample_genome(SPACE, rng) for _ in range(500)]:
        assert mutate(g, SPACE, 0.0, rng) == g


def test_rate_one_resamples_every_gene():
    # Fixed lengths, so no layer is inserted or removed and positions line up.
    space = SearchSpace(conv_blocks=[3, 3], dense_layers=[1, 1])
    rng = random.Random(41)
    parent = sample_genome(space, rng)
    changed: Counter = Counter()
    draws = 3_000
    for _ in range(draws):
        child = mutate(parent, space, 1.0, rng)
        assert len(child.conv) == 3 and len(child.dense) == 1
        for old, new in zip(parent.conv, child.conv):
            for name in ("filters", "kernel", "activation", "pooling", "batch_norm"):
                changed[name] += getattr(old, name) != getattr(new, name)
        changed["units"] += parent.dense[0].units != child.dense[0].units
        changed["dense_activation"] += parent.dense[0].activation != child.dense[0].activation
        for name in SCALAR_GENES:
            changed[name] += getattr(parent, name) != getattr(child, name)
    choices = {"filters": space.filters, "kernel": space.kernel_sizes, "activation": space.activations,
               "pooling": space.pooling, "batch_norm": space.batch_norm, "units": space.dense_units,
               "dense_activation": space.activations, "dropout": space.dropout, "optimizer": space.optimizers,
               "learning_rate": space.learning_rates, "weight_decay": space.weight_decays}
    samples = {name: draws * (3 if name in ("filters", "kernel", "activation", "pooling", "batch_norm") else 1)
               for name in choices}
    for name, options in choices.items():
        expected = 1 - 1 / len(options)
        observed = changed[name] / samples[name]
        assert abs(observed - expected) < 0.035, (name, observed, expected)


def test_rate_half_changes_about_half_as_often():
    space = SearchSpace(conv_blocks=[2, 2], dense_layers=[0, 0])
    rng = random.Random(42)
    parent = sample_genome(space, rng)
    changed = draws = 0
    for _ in range(4_000):
        child = mutate(parent, space, 0.5, rng)
        changed += child.learning_rate != parent.learning_rate
        draws += 1
    expected = 0.5 * (1 - 1 / len(space.learning_rates))
    assert abs(changed / draws - expected) < 0.03


@pytest.mark.parametrize("space", [SPACE, SearchSpace(conv_blocks=[2, 4], dense_layers=[1, 3], filters=[4, 8],
                                                      learning_rates=[0.01])], ids=["default", "narrow"])
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
    space = SearchSpace(filters=[4, 12], kernel_sizes=[3, 9], activations=["tanh", "relu"], pooling=["avg"],
                        batch_norm=[False], dense_units=[7], dropout=[0.15], optimizers=["sgd"],
                        learning_rates=[0.5], weight_decays=[0.01], conv_blocks=[1, 3], dense_layers=[0, 1])
    rng = random.Random(44)
    for _ in range(1_000):
        g = sample_genome(space, rng)
        for rate in (0.2, 1.0):
            assert_in_space(mutate(g, space, rate, rng), space)


def test_mutation_brings_a_wider_genome_into_the_space():
    space = SearchSpace(conv_blocks=[1, 4], dense_layers=[0, 1])
    child = mutate(DEEP, space, 0.0, random.Random(45))
    assert len(child.conv) == 4 and len(child.dense) == 1
    assert child.conv == DEEP.conv[:4]


def test_mutation_same_seed_same_child():
    for g in HAND_BUILT:
        assert mutate(g, SPACE, 0.5, random.Random(46)) == mutate(g, SPACE, 0.5, random.Random(46))
