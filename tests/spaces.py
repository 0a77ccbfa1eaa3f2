"""A fixed search space for the tests that sample, breed and build genomes (imported by them; not a
test module itself)."""

from __future__ import annotations

from automodel.config import BLOCK_KINDS, DOWNSAMPLING, HEADS, OPTIMIZERS, SearchSpace


def make_space(**changes) -> SearchSpace:
    """A fixed search space with ``changes``: the tests do not lean on the package's default space,
    whose values are retuned from benchmarks over time."""
    settings = dict(
        conv_blocks=[1, 6],
        filters=[16, 32, 64, 128],
        kernel_sizes=[3, 5],
        block_kinds=list(BLOCK_KINDS),
        activations=["relu", "leaky_relu", "elu", "gelu", "silu"],
        downsampling=list(DOWNSAMPLING),
        batch_norm=[True],
        heads=list(HEADS),
        dense_layers=[0, 2],
        dense_units=[64, 128, 256, 512],
        dropout=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        optimizers=list(OPTIMIZERS),
        learning_rates={"sgd": [0.01, 0.2], "adam": [3e-4, 3e-3], "adamw": [3e-4, 3e-3]},
        weight_decays=[0.0, 1e-5, 1e-4, 5e-4],
    )
    settings.update(changes)
    space = SearchSpace(**settings)
    space.validate()
    return space
