"""A search planned from a time budget: durations, the plan, the search following it (with a fake
evaluator), the command line, the page's form, and one real run that must end in time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from automodel.cli import commands as cli
from automodel.config import PLANNED, Config, ConfigError
from automodel.errors import ConfigError as SameError
from automodel.evolution.budget import (
    DIRECT_POPULATION,
    FINAL_SHARE,
    MAX_FINAL_EPOCHS,
    START_UP_S,
    Plan,
    generation_epochs,
    make_plan,
    parse_duration,
)
from automodel.evolution.genome import Genome
from automodel.evolution.loop import MAX_GENERATIONS_FACTOR, PROBE_GENERATION, PROBE_GENOMES_PER_WORKER, Search
from automodel.store import Store
from automodel.training.model import build_model
from automodel.training.trainer import TrainResult

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90),
        (90, 90),
        ("90s", 90),
        ("5m", 300),
        ("5 min", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2.5m", 150),
        ("10", 10),
    ],
)
def test_a_budget_is_read_as_a_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text, words",
    [
        ("5x", "not a duration"),
        ("", "not a duration"),
        ("m5", "not a duration"),
        ("1h 30", "not a duration"),
        ("9s", "too short"),
        ("-5m", "not a duration"),
    ],
)
def test_a_bad_budget_is_one_sentence_saying_what_is_accepted(text, words):
    with pytest.raises(ConfigError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert words in message and "5m" in message and "\n" not in message and ConfigError is SameError


def fidelities(epochs, min_epochs):
    return Config(epochs=epochs, min_epochs=min_epochs).fidelities()


def plan(budget_s, epoch_s=1.0, **given):
    return make_plan(
        budget_s,
        elapsed_s=2.0,
        epoch_s=epoch_s,
        final_epoch_s=epoch_s * 1.2,
        workers=2,
        fidelities_for=fidelities,
        reduction_factor=3,
        given=given,
    )


def test_a_generation_under_successive_halving_costs_each_rung_once():
    assert generation_epochs(8, [3], 3) == 24
    assert generation_epochs(9, [1, 3, 9], 3) == 9 * 1 + 3 * 2 + 1 * 6


def test_a_larger_budget_buys_more_and_the_plan_fits_its_budget():
    small, large = plan(60), plan(3600)
    assert large.candidate_epochs > small.candidate_epochs
    assert (large.population, large.generations, large.epochs) >= (small.population, small.generations, small.epochs)
    assert large.epochs == 9 and fidelities(large.epochs, large.min_epochs) == [1, 3, 9]
    for p in (small, large):
        cost = generation_epochs(p.population, fidelities(p.epochs, p.min_epochs), 3) * p.generations * p.epoch_s / 2
        assert cost <= p.search_s - 2.0 + 1e-6  # the generations fit the search's share
        assert p.search_s + p.final_s <= p.budget_s  # and the final training after it
        assert 1 <= p.final_epochs <= MAX_FINAL_EPOCHS
    assert large.final_s == pytest.approx(large.final_epochs * large.final_epoch_s)
    assert large.final_s <= FINAL_SHARE * large.budget_s


@pytest.mark.parametrize("budget_s", [150, 200, 260, 900, 3600])
def test_the_plan_spends_what_its_generations_leave_on_more_candidates(budget_s):
    p = plan(budget_s)
    assert not p.direct
    rungs = fidelities(p.epochs, p.min_epochs)
    bought = p.generations * generation_epochs(p.population, rungs, 3)
    assert bought <= p.candidate_epochs < p.generations * generation_epochs(p.population + 1, rungs, 3)
    assert p.candidate_epochs - bought < p.generations * p.epochs  # less than one more candidate a generation


def test_a_budget_too_short_to_search_trains_one_network_with_all_of_it():
    tiny = plan(20, epoch_s=2.0)
    nine = generation_epochs(DIRECT_POPULATION, fidelities(9, 1), 3)
    assert tiny.candidate_epochs < nine and tiny.direct
    assert tiny.final_epochs == int((20 - 2.0 - START_UP_S) / 2.4)  # all the time left, none kept for a search
    assert "too short to search" in tiny.summary()
    assert (
        not plan(600).direct
        and Plan.from_dict({k: v for k, v in tiny.to_dict().items() if k != "direct"}).direct is False
    )  # plans recorded before direct plans existed were searches


def test_a_budget_too_small_for_a_generation_of_the_given_epochs_trains_fewer_candidates():
    tiny = plan(20, epoch_s=5.0, epochs=3)
    assert not tiny.direct and tiny.generations == 1 and tiny.epochs == 3 and 2 <= tiny.population < 8


def test_settings_a_person_gave_are_kept_by_the_plan():
    kept = plan(600, population=5, epochs=2, final_epochs=4)
    assert (kept.population, kept.epochs, kept.final_epochs) == (5, 2, 4)
    assert Plan.from_dict(json.loads(json.dumps(kept.to_dict()))).population == 5


def test_a_batch_chosen_by_time_gets_epochs_and_a_first_rung_of_the_same_time():
    scaled = make_plan(
        3600,
        elapsed_s=2.0,
        epoch_s=1.0,
        final_epoch_s=1.2,
        workers=2,
        fidelities_for=lambda epochs, low: Config(epochs=epochs, min_epochs=low).fidelities(steps_per_epoch=100),
        reduction_factor=3,
        given={},
        batch_size=64,
        epoch_scale=1.5,
    )
    # The automatic size's first rung is 3 epochs (300 steps at 100 a epoch): 4.5 → 5 at batch 64.
    assert (scaled.epochs, scaled.min_epochs, scaled.batch_size) == (14, 5, 64)
    assert scaled.summary().endswith("(batch 64)")
    again = Plan.from_dict(json.loads(json.dumps(scaled.to_dict())))
    assert (again.batch_size, again.epoch_scale) == (64, 1.5)
    assert plan(3600).batch_size is None and "batch" not in plan(3600).summary()


# ------------------------------------------------------------------------ the search following a plan


def width(genome) -> int:
    return sum(b.filters for b in genome.conv)


class TimedFakeEvaluator:
    """Probes take 0.01 s per 16 images a step (a final's ``final_step`` times that); candidates score
    by width and report ``epoch_s(genome)`` seconds an epoch (0.05)."""

    workers = 2

    def __init__(self, data, settings, batch_exponent=1.0, final_step=1.0, epoch_s=lambda genome: 0.05):
        self.data, self.settings, self.tasks, self.calls = data, settings, [], []
        self.batch_exponent = batch_exponent  # below 1: a larger batch trains more images a second
        self.final_step, self.epoch_s = final_step, epoch_s

    def evaluate(self, tasks, on_result, on_progress, should_stop):
        self.calls.append(list(tasks))
        for task in tasks:
            self.tasks.append(task)
            if task.probe_steps is not None:
                batch = task.batch_size or self.settings.batch_size
                step = 0.01 * (batch / 16) ** self.batch_exponent * (self.final_step if task.final else 1.0)
                on_result(task, TrainResult("probed", 0.0, step_seconds=step))
                continue
            epochs = task.pause_after or task.epochs
            seconds = self.epoch_s(task.genome)
            history = [
                {"epoch": e + 1, "train_loss": 1.0, "val_accuracy": 0.5, "seconds": seconds} for e in range(epochs)
            ]
            model = build_model(task.genome, self.data.input_shape, self.data.classes)
            on_result(
                task,
                TrainResult(
                    "ok",
                    0.5 + width(task.genome) / 1000,
                    params=1,
                    seconds=seconds * epochs,
                    epochs_done=epochs,
                    history=history,
                    state_dict=model.state_dict(),
                ),
            )

    def close(self):
        pass


def budget_search(tmp_path, run_id="b", batch_exponent=1.0, fake=None, **settings):
    config = Config.from_dict({"dataset": "digits", "seed": 1, "budget_s": 120.0, **settings})
    store = Store(tmp_path / "db.json")
    if store.get_run(run_id) is None:
        store.create_run(run_id, config.to_dict())
    made = []

    def factory(data, train_settings):
        made.append(TimedFakeEvaluator(data, train_settings, batch_exponent, **(fake or {})))
        return made[-1]

    status = Search(config, store, run_id, evaluator_factory=factory).run()
    return status, store, made[-1]


def test_a_search_with_a_budget_plans_itself_records_the_plan_and_follows_it(tmp_path):
    status, store, evaluator = budget_search(tmp_path)
    assert status == "completed"
    run = store.get_run("b")
    plan = Plan.from_dict(run["plan"])
    config = Config.from_dict(run["config"])
    assert (config.population, config.epochs, config.min_epochs) == (plan.population, plan.epochs, plan.min_epochs)
    assert config.final_epochs == run["plan"]["final_epochs"] and run["plan"]["final_threads"] >= 1
    probes = [t for t in evaluator.tasks if t.probe_steps is not None]
    assert probes and all(t.generation == PROBE_GENERATION for t in probes)
    candidates = [t for t in evaluator.tasks if t.probe_steps is None and not t.final]
    assert all(t.epochs == plan.epochs and t.time_limit_s is not None for t in candidates)
    # Candidates that cost far less than the timing said leave time for more generations than planned.
    assert plan.generations < len(store.generations("b")) == run["total_generations"] == config.generations
    final = next(t for t in evaluator.tasks if t.final and t.probe_steps is None)
    assert final.epochs == config.final_epochs and final.threads == run["plan"]["final_threads"]
    # The final's timings (one worker's threads, all threads) run one at a time, never side by side.
    assert all(len([t for t in call if t.final]) <= 1 for call in evaluator.calls)


def test_the_timing_trains_generation_zeros_first_genomes_and_the_reference_as_a_final(tmp_path):
    """A candidate's cost is timed on the networks generation 0 starts with (their mean), and the
    final's on the reference CNN trained as the final training is: alone, on all threads."""
    _, store, evaluator = budget_search(tmp_path, fake={"final_step": 0.25})
    plan = Plan.from_dict(store.get_run("b")["plan"])
    first = [t for t in evaluator.tasks if t.generation == PROBE_GENERATION]
    probes = [t for t in first if not t.final]
    assert [t.genome.key() for t in probes] == [r["key"] for r in store.individuals("b", 0)][: len(probes)]
    assert len(probes) == PROBE_GENOMES_PER_WORKER * evaluator.workers
    final_timings = first[len(probes) : len(probes) + 2]
    assert all(t.final and t.genome.key() == probes[0].genome.key() for t in final_timings)
    assert {t.threads for t in final_timings} == {1, torch.get_num_threads()}
    data = evaluator.data
    steps = (len(data.train_x) + len(data.val_x)) // evaluator.settings.batch_size
    assert plan.final_epoch_s == pytest.approx(0.0025 * steps, abs=1e-3)  # not the candidates' 0.01 a step


def test_the_search_share_follows_what_the_best_candidate_costs_against_the_reference(tmp_path):
    """The final's reserve is re-sized from the candidates trained: the best (the widest here) costs
    width/224 of the reference CNN's seconds an epoch, and so does its final."""
    _, store, evaluator = budget_search(tmp_path, fake={"epoch_s": lambda genome: 0.05 * width(genome) / 224})
    run = store.get_run("b")
    plan, config = Plan.from_dict(run["plan"]), Config.from_dict(run["config"])
    best = max((r for r in store.individuals("b") if r["status"] == "ok"), key=lambda r: r["fitness"])
    ratio = width(Genome.from_dict(best["genome"])) / 224
    assert ratio > 1.2  # the test means something: the best is slower than the reference
    # The final's own timing rewrote the plan's final seconds; the fake's final steps do not depend on
    # the genome, so they are the start's.
    final_s = config.final_epochs * plan.final_epoch_s * ratio
    assert config.time_budget_s == pytest.approx(plan.budget_s - START_UP_S / 2 - final_s, abs=0.01)
    assert config.time_budget_s < plan.search_s


def test_the_search_share_never_passes_a_search_time_a_person_gave(tmp_path):
    """The fake's best (widest) candidate trains faster than the reference: re-sized, the search's share grows."""
    fast_best = {"epoch_s": lambda genome: 0.05 * 224 / width(genome)}
    _, free, _ = budget_search(tmp_path / "free", fake=fast_best)
    plan = Plan.from_dict(free.get_run("b")["plan"])
    assert Config.from_dict(free.get_run("b")["config"]).time_budget_s > plan.search_s > 60.0
    _, store, _ = budget_search(tmp_path, time_budget_s=60.0, fake=fast_best)
    assert store.get_run("b")["plan"]["search_limit_s"] == 60.0
    assert Config.from_dict(store.get_run("b")["config"]).time_budget_s == 60.0


def test_a_budget_too_short_to_search_trains_the_reference_network_as_the_final_model(tmp_path):
    status, store, evaluator = budget_search(tmp_path, budget_s=10.0)
    assert status == "completed"
    run = store.get_run("b")
    assert run["plan"]["direct"] and store.individuals("b") == [] and store.generations("b") == []
    trained = [t for t in evaluator.tasks if t.probe_steps is None]
    assert len(trained) == 1 and trained[0].final
    assert trained[0].genome.summary() == run["best_summary"]
    # The plain CNN, fitted to 8×8 images (no pooling below a 4-pixel map).
    assert trained[0].genome.summary().startswith("C32k3relu/max·bn C64k3relu/max·bn C128k3relu·bn")
    assert run["test_accuracy"] is not None and run.get("best_fitness") is None


def test_a_resumed_budget_run_keeps_its_plan(tmp_path):
    budget_search(tmp_path)
    store = Store(tmp_path / "db.json")
    before = store.get_run("b")["plan"]
    store.update_run("b", status="stopped")
    _, store, evaluator = budget_search(tmp_path)
    assert store.get_run("b")["plan"] == before
    assert not [t for t in evaluator.tasks if t.probe_steps is not None and not t.final]  # no new timing


def test_generations_go_on_past_the_plan_while_the_ones_so_far_say_another_fits(tmp_path, monkeypatch):
    """The plan's generations come from one short timing; when the generations trained say another
    ends within the search's share, it is trained too, up to MAX_GENERATIONS_FACTOR times the plan."""
    _, store, _ = budget_search(tmp_path)
    plan = Plan.from_dict(store.get_run("b")["plan"])
    assert len(store.generations("b")) == MAX_GENERATIONS_FACTOR * plan.generations  # the fake costs nothing

    fits = plan.generations + 1  # one more than planned fits, the one after does not
    monkeypatch.setattr(Search, "_no_time_for", lambda self, generation: generation > fits - 1)
    _, store, _ = budget_search(tmp_path / "one")
    assert [g["generation"] for g in store.generations("b")] == list(range(fits))
    assert store.get_run("b")["total_generations"] == fits


def test_generations_a_person_gave_are_not_extended(tmp_path):
    _, store, _ = budget_search(tmp_path, generations=2, overrides=["generations"])
    assert len(store.generations("b")) == 2 and store.get_run("b")["total_generations"] == 2


@pytest.mark.parametrize("fake", [None, {"epoch_s": lambda genome: 0.05 * width(genome) / 224}])
def test_a_run_resumed_after_an_extra_generation_ends_where_the_uninterrupted_one_does(tmp_path, monkeypatch, fake):
    """Also when the search's share was re-sized (a best slower than the reference: ``fake``)."""
    _, reference, _ = budget_search(tmp_path / "ref", fake=fake)
    plan = Plan.from_dict(reference.get_run("b")["plan"])
    with monkeypatch.context() as patched:  # the first session ends after one extra generation
        patched.setattr(Search, "_no_time_for", lambda self, generation: generation > plan.generations)
        _, store, _ = budget_search(tmp_path / "cut", fake=fake)
    assert len(store.generations("b")) == plan.generations + 1
    store.update_run("b", status="stopped")
    _, store, _ = budget_search(tmp_path / "cut", fake=fake)
    shares = [Config.from_dict(s.get_run("b")["config"]).time_budget_s for s in (store, reference)]
    assert shares[0] == shares[1] and (fake is None) == (shares[0] == plan.search_s)
    assert [g["generation"] for g in store.generations("b")] == [g["generation"] for g in reference.generations("b")]
    assert [(r["key"], r["fitness"]) for r in store.individuals("b")] == [
        (r["key"], r["fitness"]) for r in reference.individuals("b")
    ]


def test_batch_by_time_takes_batch_64_when_it_trains_more_images_a_second(tmp_path):
    status, store, evaluator = budget_search(tmp_path, batch_exponent=0.7, batch_by_time=True)
    assert status == "completed"
    run = store.get_run("b")
    plan = Plan.from_dict(run["plan"])
    assert plan.batch_size == 64 and plan.epoch_scale == pytest.approx(4**0.3, rel=1e-3)
    assert Config.from_dict(run["config"]).batch_size == 64
    probes = [t for t in evaluator.tasks if t.probe_steps is not None and not t.final]
    assert {t.batch_size for t in probes} == {None, 64}  # timed at the automatic size, then at 64
    trained = [t for t in evaluator.tasks if t.probe_steps is None or t.final]
    assert trained and all(t.batch_size == 64 for t in trained)  # candidates, final and its timing
    first = [t for t in evaluator.tasks if t.probe_steps is None and not t.final and t.generation == 0]
    assert min(t.pause_after or t.epochs for t in first) == plan.min_epochs


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_exponent": 1.0},
        {"batch_size": 16, "overrides": []},
        {"batch_exponent": 0.7, "epochs": 3, "overrides": ["epochs"]},
    ],
)
def test_batch_by_time_keeps_the_automatic_size_when_64_is_no_faster_or_a_setting_says_so(tmp_path, settings):
    _, store, evaluator = budget_search(tmp_path, batch_by_time=True, **settings)
    assert store.get_run("b")["plan"]["batch_size"] is None
    assert Config.from_dict(store.get_run("b")["config"]).batch_size == settings.get("batch_size")
    if "batch_exponent" in settings and "epochs" not in settings:
        assert {t.batch_size for t in evaluator.tasks if t.probe_steps and not t.final} == {None, 64}
    else:  # a batch size or epochs the person set: no second timing
        assert {t.batch_size for t in evaluator.tasks if t.probe_steps and not t.final} <= {None, 16}


def test_planned_settings_the_person_gave_stay_as_given(tmp_path):
    _, store, _ = budget_search(tmp_path, population=5, final_epochs=2, overrides=["population", "final_epochs"])
    config = Config.from_dict(store.get_run("b")["config"])
    assert config.population == 5 and config.final_epochs == 2
    assert len(store.individuals("b", 0)) == 5


# ------------------------------------------------------------------------ command line and page


def test_the_command_line_gives_a_default_budget_only_when_nothing_of_the_plan_is_set(tmp_path):
    parse = lambda *argv: cli.load_config(cli.build_parser().parse_args(["run", "--dataset", "digits", *argv]))  # noqa: E731
    assert parse().budget_s == 300 and parse().overrides == []
    assert parse("--budget", "2m", "--epochs", "2").overrides == ["epochs"]
    assert parse("--population", "4").budget_s is None
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"generations": 2}))
    assert parse("--config", str(settings), "--budget", "1m").overrides == ["generations"]
    written = tmp_path / "page.json"  # the page writes every setting and lists what the person set
    written.write_text(Config(budget_s=None, overrides=[]).to_json())
    assert parse("--config", str(written)).budget_s is None and parse("--config", str(written)).overrides == []
    with pytest.raises(ConfigError):
        Config.from_dict({"overrides": ["seed"]})
    assert set(PLANNED) == {"population", "generations", "epochs", "min_epochs", "final_epochs"}


def test_the_form_asks_how_long_the_search_may_take(db, launched, new_page):
    at = new_page()
    # The Quick demo: three small generations, no limit.
    assert at.sidebar.selectbox(key="budget_choice").value == "no limit: the settings below"
    assert not at.sidebar.number_input(key="cfg_population").disabled
    at.sidebar.selectbox(key="budget_choice").set_value("5 minutes").run()
    assert at.sidebar.number_input(key="cfg_population").disabled  # the plan chooses them
    at.sidebar.button(key="start").click().run()
    (run,) = Store(db).list_runs()
    assert run["config"]["budget_s"] == 300 and run["config"]["overrides"] == []
    at.sidebar.checkbox(key="budget_manual").check().run()
    assert not at.sidebar.number_input(key="cfg_population").disabled


@pytest.mark.slow
def test_a_thirty_second_budget_on_the_bundled_digits_ends_in_its_time_with_a_model(tmp_path):
    db = tmp_path / "db.json"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "automodel",
            "run",
            "--dataset",
            "digits",
            "--budget",
            "30s",
            "--seed",
            "0",
            "--run-id",
            "demo",
            "--db",
            str(db),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    run = Store(db).get_run("demo")
    assert run["status"] == "completed" and run["test_accuracy"] > 0.9
    assert run["elapsed_s"] <= 30 * 1.1 + 5, f"{run['elapsed_s']:.1f} s for a 30 s budget (wall {wall:.1f} s)"
    shown = json.loads(
        subprocess.run(
            [sys.executable, "-m", "automodel", "show", "demo", "--db", str(db), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert shown["plan"]["budget_s"] == 30 and shown["plan"]["population"] >= 2


def test_a_budget_too_short_to_search_trains_the_best_network_of_the_runs_it_starts_from(tmp_path):
    from automodel.evolution.genome import ConvBlock, Genome

    store = Store(tmp_path / "db.json")
    winner = Genome(
        conv=(ConvBlock(24, 3, "gelu", "max", True), ConvBlock(48, 3, "gelu", "max", True)),
        dense=(),
        dropout=0.1,
        optimizer="adamw",
        learning_rate=2e-3,
        weight_decay=1e-4,
    )
    store.create_run("earlier", Config().to_dict(), status="completed", best_genome=winner.to_dict())
    status, store, evaluator = budget_search(tmp_path, budget_s=10.0, warm_start=["earlier"])
    assert status == "completed"
    run = store.get_run("b")
    assert run["plan"]["direct"]
    (final,) = [t for t in evaluator.tasks if t.probe_steps is None]
    # The winner fitted to the digits' 8×8 images (downsampling may be dropped), nothing else changed.
    assert final.final and run["best_key"] == final.genome.key()
    assert [(b.filters, b.activation) for b in final.genome.conv] == [(24, "gelu"), (48, "gelu")]
    assert (final.genome.optimizer, final.genome.learning_rate) == ("adamw", 2e-3)
    assert run["warm_genomes"] == [winner.to_dict()]
