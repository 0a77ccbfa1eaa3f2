"""What the benchmarks share: a search without its final training, a random search's share of
a training budget, and Optuna's TPE sampler as the search's breeder.

``pip install -r requirements-bench.txt``, then ``python bench/searches.py tpe run --dataset … --budget …``
runs the search of ``automodel run`` (the same plan, trainer, successive halving, records and final
training) with every generation after the first asked of Optuna's TPE sampler instead of bred by
the GA.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automodel.evolution.genome import ConvBlock, DenseLayer, Genome  # noqa: E402
from automodel.evolution.loop import CONTINUABLE, NOVELTY_TRIES, Search, derive_seed  # noqa: E402
from automodel.evolution.operators import equal_fidelity_fitness  # noqa: E402


class SearchOnly(Search):
    """The generations only: the benchmarks compare what the search found, not its final model."""

    def _final_training(self, evaluator) -> str:
        return "completed"


def within_epochs(rows: list[dict], epochs: int) -> list[dict]:
    """The first ``rows`` (in sampling order) whose trained epochs together stay within ``epochs``:
    random search given the training budget another search had (still a random search)."""
    kept, spent = [], 0
    for row in sorted(rows, key=lambda r: r["index"]):
        spent += row.get("trained_epochs", 0)
        if spent > epochs:
            break
        kept.append(row)
    return kept


# ---------------------------------------------------------------------------------- TPE


def _nearest(value, choices):
    if value in choices:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(choices, key=lambda c: abs(math.log(c + 1e-12) - math.log(value + 1e-12)))
    return choices[0]


def tpe_params(genome: Genome, space) -> dict:
    """The genome as TPE parameters (conditional: a block's genes only where the block exists)."""
    low, high = space.learning_rate_range(genome.optimizer)
    scale = (math.log(genome.learning_rate) - math.log(low)) / max(1e-12, math.log(high) - math.log(low))
    params = {
        "blocks": _nearest(len(genome.conv), list(range(space.conv_blocks[0], space.conv_blocks[1] + 1))),
        "dense": _nearest(len(genome.dense), list(range(space.dense_layers[0], space.dense_layers[1] + 1))),
        "head": _nearest(genome.head, space.heads),
        "dropout": _nearest(genome.dropout, space.dropout),
        "optimizer": genome.optimizer,
        "lr_scale": min(1.0, max(0.0, scale)),
        "weight_decay": _nearest(genome.weight_decay, space.weight_decays),
    }
    for i, block in enumerate(genome.conv[: params["blocks"]]):
        params.update(
            {
                f"filters_{i}": _nearest(block.filters, space.filters),
                f"kernel_{i}": _nearest(block.kernel, space.kernel_sizes),
                f"activation_{i}": _nearest(block.activation, space.activations),
                f"downsample_{i}": _nearest(block.downsample, space.downsampling),
                f"kind_{i}": _nearest(block.kind, space.block_kinds),
            }
        )
    for j, layer in enumerate(genome.dense[: params["dense"]]):
        params.update(
            {
                f"units_{j}": _nearest(layer.units, space.dense_units),
                f"dense_activation_{j}": _nearest(layer.activation, space.activations),
            }
        )
    return params


def tpe_distributions(params: dict, space) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    choices = {
        "blocks": list(range(space.conv_blocks[0], space.conv_blocks[1] + 1)),
        "dense": list(range(space.dense_layers[0], space.dense_layers[1] + 1)),
        "head": space.heads,
        "dropout": space.dropout,
        "optimizer": space.optimizers,
        "weight_decay": space.weight_decays,
        "filters": space.filters,
        "kernel": space.kernel_sizes,
        "activation": space.activations,
        "downsample": space.downsampling,
        "kind": space.block_kinds,
        "units": space.dense_units,
        "dense_activation": space.activations,
    }
    out = {}
    for name in params:
        if name == "lr_scale":
            out[name] = FloatDistribution(0.0, 1.0)
        else:
            out[name] = CategoricalDistribution(list(choices[name.rsplit("_", 1)[0] if name[-1].isdigit() else name]))
    return out


def ask_genome(trial, space) -> Genome:
    """One genome from a TPE trial, blocks widest last as the GA samples them."""
    blocks = trial.suggest_categorical("blocks", list(range(space.conv_blocks[0], space.conv_blocks[1] + 1)))
    conv = [
        ConvBlock(
            filters=trial.suggest_categorical(f"filters_{i}", space.filters),
            kernel=trial.suggest_categorical(f"kernel_{i}", space.kernel_sizes),
            activation=trial.suggest_categorical(f"activation_{i}", space.activations),
            downsample=trial.suggest_categorical(f"downsample_{i}", space.downsampling),
            batch_norm=space.batch_norm[0],
            kind=trial.suggest_categorical(f"kind_{i}", space.block_kinds),
        )
        for i in range(blocks)
    ]
    widths = sorted(b.filters for b in conv)
    conv = [ConvBlock(w, b.kernel, b.activation, b.downsample, b.batch_norm, b.kind) for b, w in zip(conv, widths)]
    dense = [
        DenseLayer(
            units=trial.suggest_categorical(f"units_{j}", space.dense_units),
            activation=trial.suggest_categorical(f"dense_activation_{j}", space.activations),
        )
        for j in range(
            trial.suggest_categorical("dense", list(range(space.dense_layers[0], space.dense_layers[1] + 1)))
        )
    ]
    optimizer = trial.suggest_categorical("optimizer", space.optimizers)
    low, high = space.learning_rate_range(optimizer)
    rate = math.exp(math.log(low) + trial.suggest_float("lr_scale", 0.0, 1.0) * (math.log(high) - math.log(low)))
    return Genome(
        conv=tuple(conv),
        dense=tuple(dense),
        head=trial.suggest_categorical("head", space.heads),
        dropout=trial.suggest_categorical("dropout", space.dropout),
        optimizer=optimizer,
        learning_rate=float(f"{rate:.2g}"),
        weight_decay=trial.suggest_categorical("weight_decay", space.weight_decays),
    )


class TPESearch(Search):
    """Generation 0 as the GA samples it; every later generation asked of a TPE sampler told all the
    candidates so far (their fitness at equal fidelity, within their generation). No elitism and no
    inheritance: TPE proposes, the same trainer and successive halving judge."""

    def population(self, generation: int) -> list[Genome]:
        if generation == 0:
            return super().population(0)
        import optuna
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._parents = {}
        sampler = optuna.samplers.TPESampler(
            seed=derive_seed(self.config.seed, "tpe", generation) % 2**32,
            constant_liar=True,
            n_startup_trials=self.config.population,
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        earlier = [r for r in self.store.individuals(self.run_id) if r["generation"] < generation and not r["cached"]]
        for g in sorted({r["generation"] for r in earlier}):
            rows = [r for r in earlier if r["generation"] == g]
            values = equal_fidelity_fitness(
                [r["fitness"] if r["status"] in CONTINUABLE else 0.0 for r in rows],
                [r.get("epochs") or 0 for r in rows],
            )
            for row, value in zip(rows, values):
                params = tpe_params(Genome.from_dict(row["genome"]), self.space)
                study.add_trial(
                    create_trial(
                        params=params,
                        distributions=tpe_distributions(params, self.space),
                        value=value,
                        state=TrialState.COMPLETE,
                    )
                )
        known = {r["key"] for r in earlier}
        population: list[Genome] = []
        while len(population) < self.config.population:
            for _ in range(NOVELTY_TRIES):
                genome = self.fit(ask_genome(study.ask(), self.space))
                if genome.key() not in known and genome not in population:
                    break
            population.append(genome)
        return population


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "tpe":
        print("usage: python bench/searches.py tpe run --dataset … [automodel run flags]", file=sys.stderr)
        return 2
    import automodel.evolution.loop
    from automodel.cli import commands as cli

    automodel.evolution.loop.Search = TPESearch  # the CLI builds its search from the loop module's Search
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
