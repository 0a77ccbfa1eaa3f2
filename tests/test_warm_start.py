"""Starting from earlier runs: which genomes seed generation 0, that they are recorded and kept on
resume, and one sentence for runs that cannot be started from."""

from __future__ import annotations

import pytest

from automodel.cli import commands as cli
from automodel.config import Config
from automodel.errors import ConfigError
from automodel.evolution.genome import ConvBlock, Genome
from automodel.evolution.loop import Search
from automodel.evolution.warm_start import warm_start_genomes
from automodel.store import Store
from automodel.training.model import build_model
from automodel.training.trainer import TrainResult


def genome(filters: int, blocks: int = 1) -> Genome:
    return Genome(
        conv=tuple(ConvBlock(filters, 3, "relu", "max", True) for _ in range(blocks)),
        dense=(),
        dropout=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=0.0,
    )


def earlier_run(store: Store, run_id: str, scored: list[tuple[Genome, float, int, str]], best: Genome | None = None):
    store.create_run(
        run_id, Config().to_dict(), status="completed", **({"best_genome": best.to_dict()} if best is not None else {})
    )
    store.add_individuals(
        [
            {
                "run_id": run_id,
                "generation": 0,
                "index": i,
                "key": g.key(),
                "genome": g.to_dict(),
                "fitness": f,
                "epochs": e,
                "status": status,
                "cached": False,
            }
            for i, (g, f, e, status) in enumerate(scored)
        ]
    )


def test_the_best_distinct_genomes_come_first_one_from_each_run_in_turn(tmp_path):
    store = Store(tmp_path / "db.json")
    a1, a2, a3, b1 = genome(16), genome(32), genome(48), genome(64)
    earlier_run(
        store,
        "a",
        [
            (a2, 0.9, 1, "pruned"),
            (a3, 0.7, 3, "ok"),
            (a1, 0.8, 3, "ok"),
            (a1, 0.8, 3, "ok"),
            (genome(8), 0.0, 0, "oom"),
        ],
        best=a1,
    )
    earlier_run(store, "b", [(b1, 0.5, 3, "ok")])
    chosen = warm_start_genomes(store, ["a", "b"], limit=3)
    # a's winner, b's best, then a's next at equal fidelity (3 epochs before a higher score at 1)
    assert chosen == [a1, b1, a3]
    assert warm_start_genomes(store, ["a", "b"], limit=10) == [a1, b1, a3, a2]


@pytest.mark.parametrize("run_id, words", [("nope", "is not in"), ("empty", "has no trained candidate yet")])
def test_a_run_that_cannot_be_started_from_is_one_sentence(tmp_path, run_id, words, capsys):
    db = tmp_path / "db.json"
    store = Store(db)
    store.create_run("empty", Config().to_dict(), status="stopped")
    with pytest.raises(ConfigError, match=words):
        warm_start_genomes(store, [run_id], limit=2)
    assert cli.main(["run", "--warm-start", run_id, "--population", "2", "--db", str(db), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert [r["run_id"] for r in store.list_runs()] == ["empty"]  # nothing else recorded


class ScoreByWidth:
    def __init__(self, data, settings):
        self.data = data

    def evaluate(self, tasks, on_result, on_progress, should_stop):
        for task in tasks:
            model = build_model(task.genome, self.data.input_shape, self.data.classes, self.data.mean, self.data.std)
            on_result(
                task,
                TrainResult(
                    "ok", sum(b.filters for b in task.genome.conv) / 1000, params=1, state_dict=model.state_dict()
                ),
            )

    def close(self):
        pass


def test_generation_zero_holds_the_earlier_winners_and_a_resume_keeps_them(tmp_path):
    store = Store(tmp_path / "db.json")
    winner, second = genome(48, 2), genome(24, 2)
    earlier_run(store, "before", [(winner, 0.95, 3, "ok"), (second, 0.9, 3, "ok")], best=winner)
    config = Config(population=6, generations=1, epochs=1, final_epochs=1, warm_start=["before"], seed=4)
    store.create_run("warm", config.to_dict())
    search = Search(config, store, "warm", evaluator_factory=ScoreByWidth)
    assert search.run() == "completed"
    first = [r["key"] for r in store.individuals("warm", 0)]
    fitted = search.warm_genomes()  # fitted to the digits' 8×8 images
    assert len(fitted) == 2 and all(g.key() in first for g in fitted) and len(set(first)) == 6
    recorded = store.get_run("warm")["warm_genomes"]
    assert [Genome.from_dict(d) for d in recorded] == [winner, second]
    # The source run changes afterwards; a search resumed from the record starts from the same genomes.
    earlier_run(store, "before2", [(genome(96), 0.99, 3, "ok")])
    cold = Config(population=6, generations=1, epochs=1, final_epochs=1, seed=4)
    store.create_run("cold", cold.to_dict())
    Search(cold, store, "cold", evaluator_factory=ScoreByWidth).run()
    assert not {g.key() for g in fitted} & {r["key"] for r in store.individuals("cold", 0)}
    again = Search(config, store, "warm", evaluator_factory=ScoreByWidth)
    assert [g.key() for g in again.warm_genomes()] == [winner.key(), second.key()]
