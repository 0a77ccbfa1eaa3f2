"""Lamarckian weight inheritance: what a child takes from its parent, and how a search passes it on."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from automodel.config import Config
from automodel.data import load_dataset
from automodel.evolution.genome import Genome, sample_genome
from automodel.evolution.loop import Search
from automodel.store import Store
from automodel.training.inheritance import WeightStore, choose_parent, inherit_weights, parameter_shapes, shared_share
from automodel.training.model import build_model
from automodel.training.trainer import DeviceData, TrainResult, TrainSettings, train_candidate

SHAPE, CLASSES = (1, 16, 16), [str(i) for i in range(10)]


def genome(seed: int = 0) -> Genome:
    return sample_genome(Config().space, random.Random(seed))


def widened(g: Genome, block: int) -> Genome:
    conv = list(g.conv)
    conv[block] = dataclasses.replace(conv[block], filters=conv[block].filters * 2)
    return dataclasses.replace(g, conv=tuple(conv))


def test_matching_tensors_are_copied_and_the_rest_keep_fresh_values():
    parent_genome = genome(1)
    child_genome = widened(parent_genome, len(parent_genome.conv) - 1)  # the last block (and the head) change
    parent = build_model(parent_genome, SHAPE, CLASSES)
    with torch.no_grad():
        for p in parent.parameters():
            p.fill_(0.125)
    child = build_model(child_genome, SHAPE, CLASSES)
    fresh = {k: v.clone() for k, v in child.state_dict().items()}
    share = inherit_weights(child, parent.state_dict())
    assert 0.0 < share < 1.0
    copied = fresh_left = 0
    for name, value in child.state_dict().items():
        source = parent.state_dict().get(name)
        if source is not None and source.shape == value.shape:
            assert torch.equal(value, source), name
            copied += 1
        else:
            assert torch.equal(value, fresh[name]), f"{name} changed though its shape differs from the parent's"
            fresh_left += 1
    assert copied and fresh_left
    expected = shared_share(parameter_shapes(child_genome, SHAPE, 10), parameter_shapes(parent_genome, SHAPE, 10))
    assert share == pytest.approx(expected)


def test_the_same_genome_inherits_everything():
    g = genome(2)
    parent, child = build_model(g, SHAPE, CLASSES), build_model(g, SHAPE, CLASSES)
    assert inherit_weights(child, parent.state_dict()) == 1.0
    assert all(torch.equal(a, b) for a, b in zip(child.state_dict().values(), parent.state_dict().values()))


def test_the_parent_that_gives_most_is_chosen():
    child = genome(3)
    near = widened(child, len(child.conv) - 1)  # differs in its last block only
    far = widened(child, 0)  # differs from the first block on
    assert choose_parent(child, [far, near], SHAPE, 10) == 1
    assert choose_parent(child, [near, far], SHAPE, 10) == 0
    assert choose_parent(child, [child, near], SHAPE, 10) == 0
    assert choose_parent(child, [], SHAPE, 10) is None


def test_weight_store_keeps_what_it_is_told_and_survives_a_damaged_file(tmp_path):
    store = WeightStore(tmp_path / "weights")
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    store.save("a", state)
    store.save("b", state)
    assert torch.equal(store.load("a")["w"], state["w"])
    store.keep_only(["b"])
    assert store.load("a") is None and store.load("b") is not None
    store.path("b").write_bytes(b"not a checkpoint")
    assert store.load("b") is None
    assert not list((tmp_path / "weights").glob("*.tmp*"))


@pytest.fixture(scope="module")
def digits() -> DeviceData:
    return DeviceData(load_dataset("digits"), torch.device("cpu"))


def test_a_child_that_inherits_learns_sooner_than_one_from_scratch(digits):
    parent_genome = genome(5)
    settings = TrainSettings(epochs=3, batch_size=64, threads=1)
    parent = train_candidate(parent_genome, digits, settings, seed=0, keep_weights=True)
    assert parent.status == "ok"
    child_genome = dataclasses.replace(parent_genome, dropout=0.0 if parent_genome.dropout else 0.1)
    one_epoch = dataclasses.replace(settings, epochs=1)
    scratch = train_candidate(child_genome, digits, one_epoch, seed=1)
    inherited = train_candidate(child_genome, digits, one_epoch, seed=1, inherit=parent.state_dict)
    assert scratch.inherited is None and inherited.inherited == 1.0
    assert inherited.fitness > scratch.fitness


# ---------------------------------------------------------------------------------- in a search


def score(g: Genome) -> float:
    return round(sum(b.filters for b in g.conv) / (128 * len(g.conv)) + 0.3 / len(g.conv), 6)


class WeighingEvaluator:
    """Scores genomes without training; hands back fresh weights and keeps every task it was given."""

    def __init__(self, data, die_after: int | None = None, fail_generation: int | None = None):
        self.data, self.tasks, self.die_after, self.fail_generation = data, [], die_after, fail_generation

    def evaluate(self, tasks, on_result, on_progress, should_stop):
        for task in tasks:
            if self.die_after is not None and len(self.tasks) >= self.die_after:
                raise SystemExit("killed")
            self.tasks.append(task)
            if task.generation == self.fail_generation:
                on_result(task, TrainResult("oom", 0.0, params=1, reason="out of memory (injected)"))
                continue
            model = build_model(task.genome, self.data.input_shape, self.data.classes, self.data.mean, self.data.std)
            share = inherit_weights(model, task.inherit) if task.inherit is not None else None
            on_result(
                task,
                TrainResult(
                    "ok", score(task.genome), params=1, seconds=0.01, state_dict=model.state_dict(), inherited=share
                ),
            )

    def close(self):
        pass


def search(tmp_path, config: Config, store: Store | None = None, **options):
    store = store or Store(tmp_path / "db.json")
    if store.get_run("r") is None:
        store.create_run("r", config.to_dict())
    holder = {}

    def factory(data, settings):
        holder["evaluator"] = WeighingEvaluator(data, **options)
        return holder["evaluator"]

    s = Search(config, store, "r", evaluator_factory=factory)
    return s.run(), store, holder["evaluator"], s


@pytest.fixture
def config() -> Config:
    return Config(
        population=6,
        generations=3,
        elitism=1,
        seed=2,
        mutation_rate=0.2,
        epochs=1,
        final_epochs=1,
        inherit_weights=True,
    )


def test_children_start_from_a_parent_of_the_previous_generation(tmp_path, config):
    status, store, evaluator, s = search(tmp_path, config)
    assert status == "completed"
    rows = store.individuals("r")
    assert all(r["parent"] is None for r in rows if r["generation"] == 0)
    children = [r for r in rows if r["generation"] > 0 and not r["cached"]]
    assert children and all(r["parent"] for r in children)
    for r in children:
        previous = {p["key"] for p in rows if p["generation"] == r["generation"] - 1}
        assert r["parent"] in previous
        assert 0.0 < r["inherited"] <= 1.0
    tasks = [t for t in evaluator.tasks if t.generation > 0 and not t.final]
    assert all(t.inherit is not None and t.parent for t in tasks)
    # Only the last generation's weights are kept: the only ones that could be parents.
    last = {r["key"] for r in store.individuals("r", config.generations - 1)}
    kept = {p.stem for p in s.weights.folder.glob("*.pt")}
    assert kept and kept <= last


def test_no_inheritance_when_it_is_off(tmp_path, config):
    config.inherit_weights, config.final_from = False, "scratch"
    _, store, evaluator, s = search(tmp_path, config)
    assert all(r["parent"] is None and r["inherited"] is None for r in store.individuals("r"))
    assert all(t.inherit is None for t in evaluator.tasks)
    assert not s.weights.folder.exists()


def test_a_resumed_run_inherits_as_the_uninterrupted_one(tmp_path, config):
    _, reference, _, _ = search(tmp_path / "ref", config)
    with pytest.raises(SystemExit):
        search(tmp_path / "kill", config, die_after=9)
    store = Store(tmp_path / "kill" / "db.json")
    status, store, _, _ = search(tmp_path / "kill", config, store=store)
    assert status == "completed"

    def lineage(s: Store):
        return [(r["generation"], r["index"], r["key"], r["parent"], r["inherited"]) for r in s.individuals("r")]

    assert lineage(store) == lineage(reference)


def test_the_final_training_can_start_from_the_winners_weights(tmp_path, config):
    config.inherit_weights, config.final_from = False, "search"
    _, store, evaluator, _ = search(tmp_path, config)
    final = [t for t in evaluator.tasks if t.final]
    run = store.get_run("r")
    assert len(final) == 1 and final[0].parent == run["best_key"] and final[0].inherit is not None
    assert run["final_start"] == "search"
    assert all(r["parent"] is None for r in store.individuals("r"))  # the candidates did not inherit


@pytest.mark.parametrize("final_epochs", [1, 3])
def test_by_default_the_final_continues_from_the_winners_weights(tmp_path, config, final_epochs):
    config.inherit_weights, config.final_epochs = False, final_epochs
    assert config.final_from == "auto"
    _, store, evaluator, _ = search(tmp_path, config)
    final = [t for t in evaluator.tasks if t.final]
    run = store.get_run("r")
    assert run["final_start"] == "search" and final[0].inherit is not None and final[0].parent == run["best_key"]


def test_the_final_training_starts_from_scratch_when_asked(tmp_path, config):
    config.final_from = "scratch"
    _, store, evaluator, _ = search(tmp_path, config)
    final = [t for t in evaluator.tasks if t.final]
    assert final[0].inherit is None and store.get_run("r")["final_start"] == "scratch"


def test_a_generation_in_which_every_candidate_failed_leaves_nothing_to_inherit(tmp_path, config):
    status, store, evaluator, s = search(tmp_path, config, fail_generation=0)
    assert status == "completed"
    assert all(r["status"] == "oom" for r in store.individuals("r", 0))
    assert all(t.inherit is None for t in evaluator.tasks if t.generation == 1)
    assert store.get_run("r")["test_accuracy"] is not None
