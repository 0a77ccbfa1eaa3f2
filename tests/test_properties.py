"""Property tests (Hypothesis): round trips and invariants that must hold for any input."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from automodel.config import Config, SearchSpace
from automodel.evolution.genome import Genome, gene_slots, sample_genome
from automodel.evolution.operators import CROSSOVERS, equal_fidelity_fitness, mutate
from automodel.evolution.pareto import dominates, nondominated_sort

spaces = st.builds(
    lambda low, extra, filters, kernels, kinds, heads, sgd: SearchSpace(
        conv_blocks=[low, low + extra],
        filters=sorted(set(filters)),
        kernel_sizes=sorted(set(kernels)),
        block_kinds=sorted(set(kinds)),
        heads=sorted(set(heads)),
        learning_rates={"sgd": sorted(sgd), "adam": [1e-4, 1e-3], "adamw": [1e-4, 1e-3]},
    ),
    st.integers(1, 4),
    st.integers(0, 3),
    st.lists(st.sampled_from([4, 8, 16, 32, 64]), min_size=1, max_size=4),
    st.lists(st.sampled_from([1, 3, 5, 7]), min_size=1, max_size=3),
    st.lists(st.sampled_from(["plain", "residual", "separable"]), min_size=1, max_size=3),
    st.lists(st.sampled_from(["flatten", "avgmax", "gap"]), min_size=1, max_size=3),
    st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(space=spaces, seed=st.integers(0, 2**32))
def test_a_sampled_genome_survives_json_and_keeps_its_key(space, seed):
    space.validate()
    genome = sample_genome(space, random.Random(seed))
    again = Genome.from_dict(json.loads(json.dumps(genome.to_dict())))
    assert again == genome and again.key() == genome.key()
    low, high = space.conv_blocks
    assert low <= len(genome.conv) <= high
    lo, hi = space.learning_rate_range(genome.optimizer)
    assert lo <= genome.learning_rate <= hi


@settings(max_examples=60, deadline=None)
@given(space=spaces, seed=st.integers(0, 2**32), rate=st.floats(0.0, 1.0), method=st.sampled_from(sorted(CROSSOVERS)))
def test_children_stay_in_the_space_and_take_every_slot_from_a_parent(space, seed, rate, method):
    rng = random.Random(seed)
    a, b = sample_genome(space, rng), sample_genome(space, rng)
    for child in CROSSOVERS[method](a, b, space, rng):
        sa, sb, sc = gene_slots(a, space), gene_slots(b, space), gene_slots(child, space)
        conv_slots = space.conv_blocks[1]
        # the dense and scalar slots come from a parent (a child out of bounds keeps its first parent's layers)
        assert all(c in (x, y) for x, y, c in zip(sa[conv_slots:], sb[conv_slots:], sc[conv_slots:]))
        mutated = mutate(child, space, rate, rng)
        assert space.conv_blocks[0] <= len(mutated.conv) <= space.conv_blocks[1]
        assert all(block.kind in space.block_kinds and block.kernel in space.kernel_sizes for block in mutated.conv)
        lo, hi = space.learning_rate_range(mutated.optimizer)
        assert mutated.optimizer in space.optimizers and lo <= mutated.learning_rate <= hi


@settings(max_examples=80, deadline=None)
@given(
    population=st.integers(2, 500),
    generations=st.integers(1, 1000),
    epochs=st.integers(1, 50),
    min_epochs=st.integers(1, 50),
    factor=st.integers(2, 9),
    objectives=st.sampled_from([["accuracy"], ["accuracy", "params"], ["accuracy", "macs", "latency"]]),
    workers=st.one_of(st.just("auto"), st.integers(1, 64)),
    batch=st.one_of(st.none(), st.integers(1, 4096)),
)
def test_any_valid_config_round_trips_through_json(
    population, generations, epochs, min_epochs, factor, objectives, workers, batch
):
    config = Config.from_dict(
        {
            "population": population,
            "generations": generations,
            "epochs": epochs,
            "min_epochs": min_epochs,
            "reduction_factor": factor,
            "objectives": objectives,
            "workers": workers,
            "batch_size": batch,
            "elitism": 1,
        }
    )
    assert Config.from_dict(json.loads(config.to_json())) == config
    rungs = config.fidelities(steps_per_epoch=100)
    assert rungs[-1] == epochs and rungs == sorted(set(rungs)) and rungs[0] >= min(min_epochs, epochs)


points = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=15)


@settings(max_examples=100, deadline=None)
@given(points)
def test_fronts_partition_the_points_and_nothing_in_a_front_dominates_its_own(pts):
    fronts = nondominated_sort(pts)
    assert sorted(i for front in fronts for i in front) == list(range(len(pts)))
    for front in fronts:
        assert not any(dominates(pts[i], pts[j]) for i in front for j in front)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.sampled_from([1, 3, 9])), min_size=1, max_size=12))
def test_equal_fidelity_never_ranks_a_lower_rung_above_a_higher(pairs):
    fitness, epochs = [f for f, _ in pairs], [e for _, e in pairs]
    values = equal_fidelity_fitness(fitness, epochs)
    for i in range(len(pairs)):
        assert values[i] <= fitness[i]
        for j in range(len(pairs)):
            if epochs[i] > epochs[j] and values[i] > 0:
                assert values[i] > values[j]
