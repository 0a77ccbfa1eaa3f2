"""Genetic operators: selection, crossover and mutation as small plain functions.

Selection functions share one signature, ``select_x(fitness, k, rng, **options) -> indices``:
they read a list of fitness values (higher is better) and return ``k`` indices into it, so
they are testable without any model. Crossover functions take two parent genomes and return
two children; mutation returns one new genome. Every function takes its random generator as an
argument: the same seed gives the same search.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from itertools import accumulate

from automodel.config import SearchSpace
from automodel.evolution.genome import (
    SCALAR_GENES,
    ConvBlock,
    DenseLayer,
    Genome,
    from_slots,
    gene_slots,
    perturb_learning_rate,
    sample_conv_block,
    sample_dense_layer,
    sample_scalar,
    scalar_value,
    with_scalars,
)

# ---------------------------------------------------------------------------------- selection


def select_roulette(fitness: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """Fitness-proportional (roulette-wheel) selection: each pick is an independent spin.

    Individuals are chosen with probability ``f_i / sum(f)``; if every fitness is zero the
    wheel is uniform.
    """
    weights = _non_negative(fitness)
    if sum(weights) == 0:
        return [rng.randrange(len(fitness)) for _ in range(k)]
    return rng.choices(range(len(fitness)), weights=weights, k=k)


def select_sus(fitness: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """Stochastic universal sampling (Baker, 1987): one spin, ``k`` equally spaced pointers.

    Same expected counts as roulette, with the least possible spread around them.
    """
    weights = _non_negative(fitness)
    total = sum(weights)
    if total == 0:
        weights, total = [1.0] * len(fitness), float(len(fitness))
    cumulative = list(accumulate(weights))
    step = total / k
    start = rng.uniform(0, step)
    picks = []
    for i in range(k):
        pointer = start + i * step
        picks.append(min(bisect.bisect_right(cumulative, pointer), len(fitness) - 1))
    rng.shuffle(picks)
    return picks


def select_tournament(fitness: Sequence[float], k: int, rng: random.Random, tournament_size: int = 3) -> list[int]:
    """Tournament selection: each pick is the fittest of ``tournament_size`` drawn without replacement."""
    size = max(1, min(tournament_size, len(fitness)))
    picks = []
    for _ in range(k):
        entrants = rng.sample(range(len(fitness)), size)
        picks.append(max(entrants, key=lambda i: (fitness[i], -i)))
    return picks


def select_rank(fitness: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """Linear rank selection: probability proportional to rank (worst 1, best n); ties share a rank."""
    order = sorted(range(len(fitness)), key=lambda i: fitness[i])
    ranks = [0.0] * len(fitness)
    position = 0
    while position < len(order):
        end = position
        while end + 1 < len(order) and fitness[order[end + 1]] == fitness[order[position]]:
            end += 1
        shared = (position + end) / 2 + 1  # average rank of a tie
        for j in range(position, end + 1):
            ranks[order[j]] = shared
        position = end + 1
    return rng.choices(range(len(fitness)), weights=ranks, k=k)


def select_truncation(
    fitness: Sequence[float], k: int, rng: random.Random, truncation_fraction: float = 0.5
) -> list[int]:
    """Elitist (truncation) selection: parents are drawn uniformly from the best fraction only."""
    keep = max(1, math.ceil(len(fitness) * truncation_fraction))
    best = sorted(range(len(fitness)), key=lambda i: (-fitness[i], i))[:keep]
    return [rng.choice(best) for _ in range(k)]


SELECTIONS: dict[str, Callable[..., list[int]]] = {
    "roulette": select_roulette,
    "tournament": select_tournament,
    "rank": select_rank,
    "truncation": select_truncation,
    "sus": select_sus,
}


def select_nsga2(ranks: Sequence[tuple[int, float]], k: int, rng: random.Random, tournament_size: int = 2) -> list[int]:
    """NSGA-II's crowded tournament selection (Deb et al. 2002): each pick is the best of
    ``tournament_size`` entrants by (front number, then larger crowding distance). ``ranks`` comes
    from :func:`automodel.evolution.pareto.nsga2_ranks` (smaller is better)."""
    size = max(1, min(tournament_size, len(ranks)))
    return [min(rng.sample(range(len(ranks)), size), key=lambda i: (ranks[i], i)) for _ in range(k)]


def select_nsga2_elite(ranks: Sequence[tuple[int, float]], k: int) -> list[int]:
    """Elitism over the front: the ``k`` best by (front number, larger crowding distance), best first."""
    return sorted(range(len(ranks)), key=lambda i: (ranks[i], i))[:k]


def select_elite(fitness: Sequence[float], k: int) -> list[int]:
    """Elitism: indices of the ``k`` best (earlier index wins a tie), best first."""
    return sorted(range(len(fitness)), key=lambda i: (-fitness[i], i))[:k]


def equal_fidelity_fitness(fitness: Sequence[float], epochs: Sequence[int]) -> list[float]:
    """Fitness values that compare candidates trained for different numbers of epochs (successive
    halving) the way Hyperband does: by the highest rung reached first, then by the score there.

    A candidate's value is its fitness, capped just below the lowest value of any candidate that
    trained for more epochs, so every selection method (including the proportional ones, and the
    tie-breaks of the others) ranks a candidate that went further above one that stopped earlier,
    and the values stay accuracies.
    """
    values = list(fitness)
    floor = math.inf  # the lowest value among the rungs above the one being valued
    for rung in sorted(set(epochs), reverse=True):
        members = [i for i, e in enumerate(epochs) if e == rung]
        for i in members:
            if fitness[i] >= floor:
                values[i] = max(0.0, math.nextafter(floor, -math.inf))
        floor = min([floor, *(values[i] for i in members)])
    return values


def _non_negative(fitness: Sequence[float]) -> list[float]:
    return [f if f > 0 and math.isfinite(f) else 0.0 for f in fitness]


# ---------------------------------------------------------------------------------- crossover
# Parents are aligned slot by slot (see genome.gene_slots): slot i of a child always comes
# from slot i of one parent, so genomes with different numbers of layers cross cleanly and a
# child never holds a gene neither parent had.


def crossover_one_point(a: Genome, b: Genome, space: SearchSpace, rng: random.Random) -> tuple[Genome, Genome]:
    """One-point crossover: slots after a random cut are swapped."""
    sa, sb = gene_slots(a, space), gene_slots(b, space)
    cut = rng.randint(1, len(sa) - 1)
    return _children(sa[:cut] + sb[cut:], sb[:cut] + sa[cut:], a, b, space)


def crossover_two_point(a: Genome, b: Genome, space: SearchSpace, rng: random.Random) -> tuple[Genome, Genome]:
    """Two-point crossover: the slots between two random cuts are swapped."""
    sa, sb = gene_slots(a, space), gene_slots(b, space)
    i, j = sorted(rng.sample(range(1, len(sa)), 2))
    return _children(sa[:i] + sb[i:j] + sa[j:], sb[:i] + sa[i:j] + sb[j:], a, b, space)


def crossover_uniform(a: Genome, b: Genome, space: SearchSpace, rng: random.Random) -> tuple[Genome, Genome]:
    """Uniform crossover: each slot is swapped with probability one half."""
    sa, sb = gene_slots(a, space), gene_slots(b, space)
    c1, c2 = [], []
    for x, y in zip(sa, sb):
        if rng.random() < 0.5:
            x, y = y, x
        c1.append(x)
        c2.append(y)
    return _children(c1, c2, a, b, space)


CROSSOVERS: dict[str, Callable[..., tuple[Genome, Genome]]] = {
    "one_point": crossover_one_point,
    "two_point": crossover_two_point,
    "uniform": crossover_uniform,
}


def _children(s1: list, s2: list, a: Genome, b: Genome, space: SearchSpace) -> tuple[Genome, Genome]:
    # Both parents hold at least min_conv conv blocks in the first slots, so a child always does
    # too; a child that would fall below the dense minimum keeps its first parent's layers.
    c1, c2 = from_slots(s1, space), from_slots(s2, space)
    return _within_bounds(c1, a, space), _within_bounds(c2, b, space)


def _within_bounds(child: Genome, parent: Genome, space: SearchSpace) -> Genome:
    lo_c, hi_c = space.conv_blocks
    lo_d, hi_d = space.dense_layers
    conv = child.conv if lo_c <= len(child.conv) <= hi_c else parent.conv
    dense = child.dense if lo_d <= len(child.dense) <= hi_d else parent.dense
    return with_scalars(conv, dense, {name: scalar_value(child, name) for name in SCALAR_GENES})


# ----------------------------------------------------------------------------------- mutation


def mutate(genome: Genome, space: SearchSpace, rate: float, rng: random.Random) -> Genome:
    """Per-gene mutation: every gene is redrawn from the search space with probability ``rate``.

    Structure mutates at the same rate: a conv block or a dense layer may be inserted at a
    random position or removed, within the space's bounds. The learning rate moves by a step on
    the log scale (see :func:`_mutate_training`) rather than jumping anywhere in its range.
    """
    conv = [_mutate_conv(block, space, rate, rng) for block in genome.conv]
    dense = [_mutate_dense(layer, space, rate, rng) for layer in genome.dense]
    _mutate_length(conv, space.conv_blocks, lambda: sample_conv_block(space, rng), rate, rng)
    _mutate_length(dense, space.dense_layers, lambda: sample_dense_layer(space, rng), rate, rng)
    scalars = {}
    for name in SCALAR_GENES:
        if name == "training":
            scalars[name] = _mutate_training(genome, space, rate, rng)
        else:
            scalars[name] = sample_scalar(name, space, rng) if rng.random() < rate else scalar_value(genome, name)
    return with_scalars(conv, dense, scalars)


def _mutate_training(genome: Genome, space: SearchSpace, rate: float, rng: random.Random) -> tuple[str, float]:
    """The optimizer and its learning rate: with probability ``rate`` either a new optimizer (with a
    learning rate drawn from its range) or, half the time, the same one with its rate stepped by up
    to a factor 2. An optimizer the space no longer offers is always redrawn."""
    if genome.optimizer not in space.optimizers:
        return sample_scalar("training", space, rng)
    if rng.random() >= rate:
        return genome.optimizer, genome.learning_rate
    if len(space.optimizers) > 1 and rng.random() < 0.5:
        return sample_scalar("training", space, rng)
    return genome.optimizer, perturb_learning_rate(genome.optimizer, genome.learning_rate, space, rng)


CONV_GENES = ("filters", "kernel", "activation", "downsample", "batch_norm", "kind")


def _mutate_conv(block: ConvBlock, space: SearchSpace, rate: float, rng: random.Random) -> ConvBlock:
    fresh = sample_conv_block(space, rng)
    return ConvBlock(
        **{name: (getattr(fresh, name) if rng.random() < rate else getattr(block, name)) for name in CONV_GENES}
    )


def _mutate_dense(layer: DenseLayer, space: SearchSpace, rate: float, rng: random.Random) -> DenseLayer:
    fresh = sample_dense_layer(space, rng)
    return DenseLayer(
        units=fresh.units if rng.random() < rate else layer.units,
        activation=fresh.activation if rng.random() < rate else layer.activation,
        batch_norm=layer.batch_norm,
    )


def _mutate_length(layers: list, bounds: list[int], new_layer: Callable, rate: float, rng: random.Random) -> None:
    low, high = bounds
    if rng.random() < rate and len(layers) < high:
        layers.insert(rng.randint(0, len(layers)), new_layer())
    if rng.random() < rate and len(layers) > low:
        layers.pop(rng.randrange(len(layers)))
    # A genome from an older, wider search space is brought inside this one's bounds.
    while len(layers) > high:
        layers.pop()
    while len(layers) < low:
        layers.append(new_layer())
