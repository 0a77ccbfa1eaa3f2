"""The generational loop with a fake evaluator: cache, elitism, determinism, failures, resume."""

from __future__ import annotations

import time

import pytest

from automodel.config import Config
from automodel.evolution.genome import Genome
from automodel.evolution.loop import Search
from automodel.store import Store
from automodel.training.model import build_model
from automodel.training.trainer import TrainResult


def fake_fitness(genome: Genome) -> float:
    """A deterministic score that rewards wide, shallow nets: enough shape for selection to act on."""
    width = sum(b.filters for b in genome.conv) / (128 * len(genome.conv))
    return round(0.5 * width + 0.5 / len(genome.conv) - 0.01 * len(genome.dense), 6)


class FakeEvaluator:
    """Scores genomes without training; records every (genome, rung epochs) it was asked to train."""

    def __init__(self, data, settings, fail_when=None, die_after=None):
        self.data = data
        self.trained: list[str] = []
        self.fail_when = fail_when
        self.die_after = die_after

    def evaluate(self, tasks, on_result, on_progress, should_stop):
        for task in tasks:
            if should_stop():
                return
            if self.die_after is not None and len(self.trained) >= self.die_after:
                raise SystemExit("killed")
            if not task.final:  # the final model is trained again on purpose
                self.trained.append((task.genome.key(), task.pause_after or 3))
            on_progress(task, {"epoch": 1, "epochs": 1, "batch": 1, "batches": 1, "loss": 1.0, "eta_s": 0.0})
            model = build_model(task.genome, self.data.input_shape, self.data.classes, self.data.mean, self.data.std)
            if self.fail_when is not None and self.fail_when(task):
                result = TrainResult("oom", 0.0, params=1, reason="out of memory (injected)")
            else:
                result = TrainResult(
                    "ok", fake_fitness(task.genome), params=1, seconds=0.01, state_dict=model.state_dict()
                )
            on_result(task, result)

    def close(self):
        pass


def run_search(tmp_path, config: Config, run_id="r1", store=None, **fake_options):
    store = store or Store(tmp_path / "db.json")
    if store.get_run(run_id) is None:
        store.create_run(run_id, config.to_dict())
    holder = {}

    def factory(data, settings):
        holder["evaluator"] = FakeEvaluator(data, settings, **fake_options)
        return holder["evaluator"]

    status = Search(config, store, run_id, evaluator_factory=factory).run()
    return status, store, holder["evaluator"]


def genomes_by_generation(store: Store, run_id: str) -> list[list[str]]:
    rows = store.individuals(run_id)
    generations = sorted({r["generation"] for r in rows})
    return [[r["key"] for r in rows if r["generation"] == g] for g in generations]


@pytest.fixture
def config() -> Config:
    return Config(population=8, generations=5, elitism=2, seed=3, mutation_rate=0.3, final_epochs=1)


def test_search_completes_and_records_everything(tmp_path, config):
    status, store, _ = run_search(tmp_path, config)
    assert status == "completed"
    run = store.get_run("r1")
    assert run["generations_done"] == 5 and run["evaluated"] == 40
    assert len(store.generations("r1")) == 5
    assert run["test_accuracy"] is not None and run["best_model_path"]
    for g in store.generations("r1"):
        assert g["worst"] <= g["mean"] <= g["best"]
        assert 0.0 <= g["diversity"] <= 1.0


def test_no_genome_is_trained_twice(tmp_path, config):
    _, store, evaluator = run_search(tmp_path, config)
    assert len(evaluator.trained) == len(set(evaluator.trained)), "a genome trained twice at one rung"
    cached = [r for r in store.individuals("r1") if r["cached"]]
    assert cached, "elites should have come from the cache"
    assert all(r["seconds"] == 0.0 for r in cached)


def test_elites_pass_unchanged_and_best_never_drops(tmp_path, config):
    _, store, _ = run_search(tmp_path, config)
    gens = store.generations("r1")
    assert all(later["best"] >= earlier["best"] for earlier, later in zip(gens, gens[1:]))
    for g in range(4):
        rows = store.individuals("r1", g)
        top = sorted(rows, key=lambda r: (-r["fitness"], r["index"]))[:2]
        next_keys = [r["key"] for r in store.individuals("r1", g + 1)]
        assert next_keys[:2] == [r["key"] for r in top]


def test_same_seed_same_search_other_seed_other_search(tmp_path, config):
    run_search(tmp_path / "a", config)
    run_search(tmp_path / "b", config)
    other = Config(**{**config.to_dict(), "seed": 4, "space": config.space})
    run_search(tmp_path / "c", other)
    a, b, c = (genomes_by_generation(Store(tmp_path / d / "db.json"), "r1") for d in "abc")
    assert a == b
    assert a != c


def test_selection_improves_on_random_search(tmp_path, config):
    """At equal evaluations the GA's last generation is fitter on average than random search's samples
    (one generation of population × generations genomes): selection moves the population. (Whether
    its best beats random search's best is measured on real data by bench/bench_quality.py.)"""
    _, store, _ = run_search(tmp_path / "ga", config)
    random_config = Config(
        **{
            **config.to_dict(),
            "population": config.population * config.generations,
            "generations": 1,
            "elitism": 0,
            "space": config.space,
        }
    )
    _, random_store, _ = run_search(tmp_path / "random", random_config)
    last = store.generations("r1")[-1]
    sampled = [r["fitness"] for r in random_store.individuals("r1")]
    assert len(sampled) == len(store.individuals("r1"))
    assert last["mean"] > sum(sampled) / len(sampled)


def test_failed_candidate_is_recorded_and_search_goes_on(tmp_path, config):
    status, store, _ = run_search(tmp_path, config, fail_when=lambda task: task.index == 3 and task.generation == 0)
    assert status == "completed"
    failed = store.individuals("r1", 0)[3]
    assert failed["status"] == "oom" and failed["fitness"] == 0.0 and "injected" in failed["reason"]
    assert store.generations("r1")[0]["failed"] >= 1


def test_target_fitness_ends_the_search_early(tmp_path, config):
    config.target_fitness = 0.0001
    status, store, _ = run_search(tmp_path, config)
    assert status == "completed"
    assert store.get_run("r1")["generations_done"] == 1


def test_killed_search_resumes_to_the_same_result(tmp_path, config):
    _, reference, _ = run_search(tmp_path / "ref", config)
    with pytest.raises(SystemExit):
        run_search(tmp_path / "kill", config, die_after=13)
    store = Store(tmp_path / "kill" / "db.json")
    recorded_before = {(r["generation"], r["index"]): r["fitness"] for r in store.individuals("r1")}
    rungs_before = {(r["key"], r["epochs"]) for r in store.individuals("r1") if not r["cached"]}
    assert 0 < len(recorded_before) < 40
    status, store, evaluator = run_search(tmp_path / "kill", config, store=store)
    assert status == "completed"
    assert genomes_by_generation(store, "r1") == genomes_by_generation(reference, "r1")
    assert store.get_run("r1")["best_fitness"] == reference.get_run("r1")["best_fitness"]
    assert not rungs_before & set(evaluator.trained), "a rung completed before the kill was trained again"
    after = {(r["generation"], r["index"]): r["fitness"] for r in store.individuals("r1")}
    assert all(after[key] == fitness for key, fitness in recorded_before.items())
    assert [(r["status"], r["epochs"]) for r in store.individuals("r1")] == [
        (r["status"], r["epochs"]) for r in reference.individuals("r1")
    ]


def test_stop_request_from_the_store_stops_the_search(tmp_path, config):
    store2 = Store(tmp_path / "db2.json")
    store2.create_run("r2", config.to_dict())

    class StopMidway(FakeEvaluator):
        def evaluate(self, tasks, on_result, on_progress, should_stop):
            store2.request_stop("r2")
            super().evaluate(tasks, on_result, on_progress, should_stop)

    search = Search(config, store2, "r2", evaluator_factory=lambda d, s: StopMidway(d, s))
    search.stop.poll_every_s = 0.0
    assert search.run() == "stopped"
    assert store2.get_run("r2")["status"] == "stopped"
    assert len(store2.individuals("r2")) < 8


def test_best_model_so_far_is_saved_during_the_search(tmp_path, config):
    from automodel.training.export import read_checkpoint

    store = Store(tmp_path / "db.json")
    store.create_run("r3", config.to_dict())

    class StopAtFinal(FakeEvaluator):
        def evaluate(self, tasks, on_result, on_progress, should_stop):
            if tasks and tasks[0].final:
                store.request_stop("r3")
                return
            super().evaluate(tasks, on_result, on_progress, should_stop)

    search = Search(config, store, "r3", evaluator_factory=lambda d, s: StopAtFinal(d, s))
    search.stop.poll_every_s = 0.0
    assert search.run() == "stopped"
    run = store.get_run("r3")
    saved = read_checkpoint(run["best_model_path"])
    assert saved["metrics"]["stage"] == "search"
    assert saved["metrics"]["val_accuracy"] == run["best_fitness"]
    assert Genome.from_dict(saved["genome"]).key() == run["best_key"]


def test_pruning_threshold_comes_from_earlier_generations_only(tmp_path, config):
    config.prune = True
    config.prune_fraction = 0.5
    store = Store(tmp_path / "db.json")
    store.create_run("p", config.to_dict())
    search = Search(config, store, "p")
    assert search.prune_threshold(0) == 0.0  # measure first epochs, prune nothing
    for generation, scores in [(0, [0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5, 0.7]), (1, [0.9] * 8)]:
        for index, score in enumerate(scores):
            store.add_individual(
                {
                    "run_id": "p",
                    "generation": generation,
                    "index": index,
                    "key": f"{generation}-{index}",
                    "genome": {},
                    "fitness": score,
                    "status": "ok",
                    "first_epoch_fitness": score,
                }
            )
    assert search.prune_threshold(1) == pytest.approx(0.5 * 0.45)
    assert search.prune_threshold(2) == pytest.approx(0.5 * 0.85)
    config.prune = False
    assert search.prune_threshold(2) is None


def test_time_budget_ends_the_search_with_its_last_generation_recorded(tmp_path, config):
    class SlowEvaluator(FakeEvaluator):
        def evaluate(self, tasks, on_result, on_progress, should_stop):
            for task in tasks:
                if not task.final:
                    time.sleep(0.05)
                super().evaluate([task], on_result, on_progress, should_stop)

    config.time_budget_s = 1.0
    store = Store(tmp_path / "db.json")
    store.create_run("t", config.to_dict())
    status = Search(config, store, "t", evaluator_factory=lambda d, s: SlowEvaluator(d, s)).run()
    assert status == "completed"
    run = store.get_run("t")
    assert run.get("generations_done", 0) < config.generations
    recorded = {g["generation"] for g in store.generations("t")}
    complete = {g for g in recorded if len(store.individuals("t", g)) == config.population}
    assert recorded == complete, "every recorded generation is complete"
    assert run["elapsed_s"] >= 1.0
    assert run["test_accuracy"] is not None, "the final training is not cut by the search's budget"


def test_a_pruned_candidate_never_becomes_the_best(tmp_path, config):
    class PrunedHigh(FakeEvaluator):
        def evaluate(self, tasks, on_result, on_progress, should_stop):
            for task in tasks:
                if task.final:
                    super().evaluate([task], on_result, on_progress, should_stop)
                    continue
                status = "pruned" if task.index == 0 else "ok"
                on_result(task, TrainResult(status, 0.99 if status == "pruned" else 0.5, params=1))

    config.generations = 1
    store = Store(tmp_path / "db.json")
    store.create_run("q", config.to_dict())
    assert Search(config, store, "q", evaluator_factory=lambda d, s: PrunedHigh(d, s)).run() == "completed"
    run = store.get_run("q")
    assert run["best_fitness"] == 0.5 and run["best_index"] == 1


def test_when_the_budget_cuts_every_candidate_short_the_furthest_trained_one_wins(tmp_path, config):
    class EveryoneCut(FakeEvaluator):
        def evaluate(self, tasks, on_result, on_progress, should_stop):
            for task in tasks:
                if task.final:
                    super().evaluate([task], on_result, on_progress, should_stop)
                    continue
                # index 2 trained furthest (2 epochs); index 0 scores higher after only 1
                epochs = 2 if task.index == 2 else 1
                fitness = 0.9 if task.index == 0 else 0.4 + 0.01 * task.index
                on_result(
                    task, TrainResult("partial", fitness, params=1, epochs_done=epochs, reason="time budget spent")
                )

    config.generations = 1
    store = Store(tmp_path / "db.json")
    store.create_run("cut", config.to_dict())
    assert Search(config, store, "cut", evaluator_factory=lambda d, s: EveryoneCut(d, s)).run() == "completed"
    run = store.get_run("cut")
    assert run["best_index"] == 2 and run["best_fitness"] == pytest.approx(0.42)
    assert run["test_accuracy"] is not None and run["best_model_path"]
