"""Starting a search from earlier runs: the best distinct genomes of runs in the same store seed
generation 0 (Optuna's ``enqueue_trial``, a seeded NSGA-II population, KerasTuner's and
AutoKeras's warm starts)."""

from __future__ import annotations

from collections.abc import Sequence

from automodel.errors import ConfigError
from automodel.evolution.genome import Genome
from automodel.store import Store

SCORED = ("ok", "partial", "pruned")  # statuses whose fitness ranks a genome


def warm_start_genomes(store: Store, run_ids: Sequence[str], limit: int) -> list[Genome]:
    """Up to ``limit`` distinct genomes from ``run_ids``, best first: each run's winner, then every
    scored candidate compared at equal fidelity (more epochs first, then fitness), the runs taken
    in turn. A run that does not exist or has no scored candidate is one sentence."""
    ranked: list[list[Genome]] = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None:
            raise ConfigError(
                f"warm_start names run {run_id!r}, which is not in {store.path}; give runs of this "
                f"store (`automodel list`)."
            )
        scored = sorted(
            (r for r in store.individuals(run_id) if r["status"] in SCORED and r.get("fitness")),
            key=lambda r: (-(r.get("epochs") or 0), -r["fitness"], r["generation"], r["index"]),
        )
        best = run.get("best_genome")
        genomes = ([Genome.from_dict(best)] if best else []) + [Genome.from_dict(r["genome"]) for r in scored]
        if not genomes:
            raise ConfigError(
                f"warm_start names run {run_id!r}, which has no trained candidate yet; give runs "
                f"that trained at least one."
            )
        ranked.append(genomes)
    chosen: list[Genome] = []
    seen: set[str] = set()
    for depth in range(max((len(g) for g in ranked), default=0)):
        for genomes in ranked:  # one from each run in turn, so every run contributes its best
            if depth < len(genomes) and len(chosen) < limit and genomes[depth].key() not in seen:
                seen.add(genomes[depth].key())
                chosen.append(genomes[depth])
    return chosen
