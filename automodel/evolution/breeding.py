"""One generation bred from the last (DEAP's ``varAnd`` with elitism): the elites pass unchanged, the
rest are children of selected parents, crossed and mutated, each repaired to the run's images and
budgets and kept apart from genomes already evaluated. A pure function of its arguments: the same
genomes, fitness and generator give the same children, which is what lets a run resume from its
records alone."""

from __future__ import annotations

import random
from collections.abc import Callable

from automodel.config import Config
from automodel.evolution.genome import Genome
from automodel.evolution.operators import (
    CROSSOVERS,
    SELECTIONS,
    mutate,
    select_elite,
    select_nsga2,
    select_nsga2_elite,
)

NOVELTY_TRIES = 5  # redraws of a child that repeats an already evaluated genome
Bred = tuple[Genome, tuple[int, ...]]  # a genome of the next generation and the indices of its parents


def breed(
    genomes: list[Genome],
    fitness: list[float],
    config: Config,
    rng: random.Random,
    *,
    repair: Callable[[Genome], Genome],
    known: set[str],
    ranks: list[tuple[int, float]] | None = None,
) -> list[Bred]:
    """The next generation (``config.population`` genomes), each with the parents it was bred from.

    With several objectives, ``ranks`` (NSGA-II's front number and crowding) replace the fitness in
    both selection and elitism: the elites are the best of the front, parents win crowded
    tournaments. A child that repeats a genome in ``known`` (those of earlier generations) or one
    already bred is mutated again a few times. ``known`` must depend only on earlier generations,
    never on what is already trained of this one, or a resumed run would breed differently.
    """
    c = config
    pick: Callable[[], list[int]]
    if ranks is not None:
        nsga_ranks = ranks
        elites = select_nsga2_elite(nsga_ranks, c.elitism)

        def pick() -> list[int]:
            return select_nsga2(nsga_ranks, 2, rng)
    else:
        select = SELECTIONS[c.selection]
        by_method: dict[str, dict[str, float]] = {
            "tournament": {"tournament_size": c.tournament_size},
            "truncation": {"truncation_fraction": c.truncation_fraction},
        }
        options = by_method.get(c.selection, {})
        elites = select_elite(fitness, c.elitism)

        def pick() -> list[int]:
            return select(fitness, 2, rng, **options)

    cross = CROSSOVERS[c.crossover]
    bred: list[Bred] = [(genomes[i], (i,)) for i in elites]
    while len(bred) < c.population:
        i, j = pick()
        a, b = genomes[i], genomes[j]
        crossed = rng.random() < c.crossover_rate
        if crossed:
            a, b = cross(a, b, c.space, rng)
        for child, own in ((a, i), (b, j)):
            child = repair(mutate(child, c.space, c.mutation_rate, rng))
            for _ in range(NOVELTY_TRIES):
                if child.key() not in known and all(child != other for other, _ in bred):
                    break
                child = repair(mutate(child, c.space, max(c.mutation_rate, 0.02), rng))
            if len(bred) < c.population:
                bred.append((child, (i, j) if crossed else (own,)))
    return bred
