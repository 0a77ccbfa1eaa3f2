"""Breeding one generation as a pure function: elites first and unchanged, children new and
repaired, parents recorded, the same inputs giving the same generation."""

from __future__ import annotations

import random

from automodel.config import Config
from automodel.evolution.breeding import breed
from automodel.evolution.genome import Genome, sample_genome


def parents(n: int = 6) -> tuple[list[Genome], list[float]]:
    rng = random.Random(1)
    genomes = [sample_genome(Config().space, rng) for _ in range(n)]
    return genomes, [0.1 * (i + 1) for i in range(n)]


def test_elites_come_first_unchanged_and_children_are_new_repaired_genomes():
    genomes, fitness = parents()
    config = Config(population=6, elitism=2, mutation_rate=0.2)
    repaired: list[Genome] = []

    def repair(genome: Genome) -> Genome:
        repaired.append(genome)
        return genome

    known = {g.key() for g in genomes}
    bred = breed(genomes, fitness, config, random.Random(7), repair=repair, known=known)
    assert len(bred) == 6
    assert [g for g, _ in bred[:2]] == [genomes[5], genomes[4]] and [p for _, p in bred[:2]] == [(5,), (4,)]
    for child, pair in bred[2:]:
        assert child in repaired and all(0 <= i < 6 for i in pair) and 1 <= len(pair) <= 2
    assert len({g.key() for g, _ in bred}) == 6


def test_the_same_inputs_breed_the_same_generation_and_another_seed_another():
    genomes, fitness = parents()
    config = Config(population=6, elitism=1)

    def bred_with(seed: int) -> list:
        return breed(genomes, fitness, config, random.Random(seed), repair=lambda g: g, known=set())

    assert bred_with(3) == bred_with(3)
    assert bred_with(3) != bred_with(4)


def test_with_nsga2_ranks_the_elites_are_the_front_s_best():
    genomes, fitness = parents()
    # nsga2_ranks' (front, -crowding): smaller is better
    ranks = [(1, 0.0), (0, -2.0), (0, -5.0), (2, -1.0), (1, -3.0), (0, -1.0)]
    bred = breed(
        genomes,
        fitness,
        Config(population=6, elitism=2),
        random.Random(0),
        repair=lambda g: g,
        known=set(),
        ranks=ranks,
    )
    # Front 0 with the larger crowding distance first: index 2 (5.0), then 1 (2.0), not the fittest (5).
    assert [p for _, p in bred[:2]] == [(2,), (1,)]
