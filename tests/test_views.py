"""The page's data shaping (automodel.page.views): tables, chart specs, status lines, form settings."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest

from automodel.config import Config, ConfigError
from automodel.page import views

NOW = 1_800_000_000.0


def make_run(**fields) -> dict:
    config = Config(population=4, generations=3, epochs=2, final_epochs=5).to_dict()
    run = {
        "run_id": "run-a",
        "status": "running",
        "config": config,
        "pid": 1234,
        "host": "h",
        "created_at": NOW - 100,
        "started_at": NOW - 100,
        "resumed_at": NOW - 60,
        "elapsed_s": 40.0,
        "total_generations": 3,
        "generations_done": 1,
        "evaluated": 4,
        "device": "cpu",
    }
    run.update(fields)
    return run


def make_individual(generation: int, index: int, fitness: float, status: str = "ok", **fields) -> dict:
    record = {
        "run_id": "run-a",
        "generation": generation,
        "index": index,
        "key": f"k{generation}{index}",
        "genome": {"conv": [{"filters": 8}], "dropout": 0.1},
        "summary": f"C8k3relu g{generation}i{index}",
        "fitness": fitness,
        "status": status,
        "reason": "" if status == "ok" else f"{status} happened",
        "params": 1000 + index,
        "seconds": 1.5,
        "epochs": 2,
        "train_loss": 0.5,
        "cached": False,
        "recorded_at": NOW,
    }
    record.update(fields)
    return record


def make_generation(generation: int, best: float, mean: float, worst: float, seconds: float = 10.0) -> dict:
    return {
        "run_id": "run-a",
        "generation": generation,
        "best": best,
        "mean": mean,
        "worst": worst,
        "diversity": 0.5,
        "failed": 0,
        "trained": 4,
        "seconds": seconds,
        "recorded_at": NOW - 30,
    }


def population() -> list[dict]:
    return [
        make_individual(0, 0, 0.5),
        make_individual(0, 1, 0.9),
        make_individual(0, 2, 0.0, "oom"),
        make_individual(0, 3, 0.7),
        make_individual(1, 0, 0.95),
        make_individual(1, 1, 0.0, "nan"),
        make_individual(1, 2, 0.8, cached=True),
    ]


# ----------------------------------------------------------------------------- small formatting


@pytest.mark.parametrize(
    "seconds, text", [(0, "0:00"), (75, "1:15"), (3725, "1:02:05"), (None, "—"), (float("nan"), "—"), (-1, "—")]
)
def test_fmt_duration(seconds, text):
    assert views.fmt_duration(seconds) == text


def test_generations_are_shown_from_one():
    assert views.gen_label(0) == 1


def test_run_label_holds_nothing_that_changes_while_the_run_goes_on():
    assert views.run_label(make_run()) == "run-a · digits"
    assert views.run_label(make_run(status="completed", best_fitness=0.9)) == "run-a · digits"


def test_run_label_shortens_upload_paths():
    run = make_run(status="stopped", config={**make_run()["config"], "dataset": "/srv/data/runs/run-a/upload"})
    assert views.run_label(run) == "run-a · uploaded zip"


def test_runs_table_lists_every_run_newest_first():
    older = make_run(
        run_id="run-old",
        status="completed",
        generations_done=3,
        evaluated=12,
        best_fitness=0.9,
        test_accuracy=0.88,
        elapsed_s=75.0,
        created_at=NOW - 500,
    )
    table = views.runs_table([older, make_run()])
    assert list(table["Run"]) == ["run-a", "run-old"]
    assert table.loc[1, "Status"] == "completed" and table.loc[1, "Generations"] == "3/3"
    assert table.loc[1, "Best validation"] == 0.9 and table.loc[1, "Test"] == 0.88 and table.loc[1, "Took"] == "1:15"
    assert views.runs_table([]).empty


# ----------------------------------------------------------------------------- status line


def test_status_while_training_a_candidate():
    progress = [
        {
            "generation": 1,
            "generations": 3,
            "index": 2,
            "population": 4,
            "final": False,
            "epoch": 1,
            "epochs": 2,
            "batch": 10,
            "batches": 20,
            "loss": 0.4321,
            "elapsed_s": 3.0,
            "eta_s": 9.0,
            "worker": "main",
        }
    ]
    view = views.status_view(make_run(), progress, [make_generation(0, 0.9, 0.6, 0.1)], now=NOW)
    assert view.state == "running" and view.active
    assert "generation 2/3" in view.headline
    assert "candidate 3/4" in view.headline
    assert "epoch 1/2" in view.headline
    assert "elapsed 1:40" in view.headline  # 40 s before + 60 s since resuming
    assert "ETA ≈" in view.headline and "cpu" in view.headline
    overall, candidate = view.bars
    assert overall == (pytest.approx((1 * 4 + 2) / 12), "search: 1 of 3 generations done")
    assert candidate[0] == pytest.approx(10 / 40)  # half of the first of two epochs
    assert "batch 10/20" in candidate[1] and "loss 0.432" in candidate[1]


def test_status_with_several_candidates_training_at_once():
    progress = [
        {
            "generation": 0,
            "index": i,
            "population": 4,
            "final": False,
            "epoch": 1,
            "epochs": 2,
            "batch": 5,
            "batches": 10,
            "worker": f"w{i}",
        }
        for i in (2, 0)
    ]
    view = views.status_view(make_run(generations_done=0), progress, [], now=NOW)
    assert "candidates 1, 3 of 4 training" in view.headline
    assert [text.split(" ·")[0] for _, text in view.bars[1:]] == ["candidate 1 (w0)", "candidate 3 (w2)"]


def test_status_of_a_claimed_run_whose_process_is_starting():
    view = views.status_view(make_run(pid=None, generations_done=0), [], [], now=NOW)
    assert "starting: loading the dataset" in view.headline


def test_status_while_a_large_folder_is_decoded_shows_how_far_it_is():
    view = views.status_view(
        make_run(stage="data", loading={"done": 4000, "total": 20000}, generations_done=0), [], [], now=NOW
    )
    assert "loading the dataset: 4,000 of 20,000 images decoded" in view.headline
    assert view.bars == [(pytest.approx(0.2), "decoding images: 4,000/20,000")]
    assert (
        "loading the dataset" in views.status_view(make_run(stage="data", generations_done=0), [], [], now=NOW).headline
    )


def test_the_folder_preview_names_the_size_the_memory_and_an_imbalance():
    described = {
        "images": 1300,
        "classes": {"cat": 1200, "dog": 100},
        "imbalance": 12.0,
        "image_size": [64, 48],
        "channels": 3,
        "bytes": 1300 * 3 * 64 * 48,
        "skipped": 2,
        "skipped_names": ["a.jpg", "b.jpg"],
        "ignored": 7,
        "ignored_names": ["x.txt", "y.db", "z.ini", "w.ini", "v.ini"],
    }
    caption, warning = views.folder_preview(described)
    assert caption == (
        "1,300 images in 2 classes (cat 1,200, dog 100) · trained at 64×48, 3 channels · "
        "12.0 MB in memory · 2 unreadable, skipped (a.jpg, b.jpg) · "
        "7 not images, ignored (x.txt, y.db, z.ini, w.ini, v.ini, …)"
    )
    assert warning == (
        "The classes are unbalanced: cat has 1,200 images, dog only 100 (12×); accuracy will favour the large classes."
    )
    assert views.folder_preview({**described, "imbalance": 2.0})[1] is None


def test_the_dataset_caption_names_a_few_skipped_and_ignored_files():
    run = make_run(
        input_shape=[3, 8, 8],
        classes=["a", "b"],
        train_size=10,
        val_size=2,
        test_size=3,
        skipped_images=1,
        ignored_files=2,
        data={"skipped_names": ["broken.jpg"], "ignored_names": ["Thumbs.db", ".DS_Store"]},
    )
    assert views.dataset_caption(run).endswith(
        "1 image could not be decoded and was skipped (broken.jpg); "
        "2 files that are not images were ignored (Thumbs.db, .DS_Store)"
    )


def test_status_during_final_training():
    progress = [
        {
            "generation": -1,
            "index": 0,
            "final": True,
            "epoch": 3,
            "epochs": 5,
            "batch": 5,
            "batches": 10,
            "eta_s": 4.0,
            "worker": "main",
        }
    ]
    view = views.status_view(
        make_run(stage="final", generations_done=3),
        progress,
        [make_generation(g, 0.9, 0.6, 0.1) for g in range(3)],
        now=NOW,
    )
    assert "final training of the best architecture" in view.headline
    assert view.bars[0][0] == pytest.approx((2 * 10 + 5) / 50)
    assert "ETA ≈ 0:04" in view.headline


def test_status_while_stopping_says_so():
    view = views.status_view(make_run(status="stopping"), [], [], now=NOW)
    assert view.state == "stopping" and "Stopping" in view.note and view.note_kind == "warning"


@pytest.mark.parametrize(
    "status, words, kind",
    [
        ("stopped", "Resume", "info"),
        ("interrupted", "Interrupted", "warning"),
        ("failed", "Failed: disk full", "error"),
    ],
)
def test_status_of_ended_runs(status, words, kind):
    run = make_run(status=status, pid=None, reason="disk full" if status == "failed" else "")
    view = views.status_view(run, [], [make_generation(0, 0.9, 0.5, 0.1)], now=NOW)
    assert not view.active
    assert words in view.note and view.note_kind == kind


def test_status_of_a_completed_run_shows_both_accuracies():
    run = make_run(
        status="completed",
        pid=None,
        generations_done=3,
        evaluated=12,
        best_fitness=0.97,
        test_accuracy=0.955,
        stage="done",
        elapsed_s=95.0,
    )
    view = views.status_view(run, [], [], now=NOW)
    assert "3/3 generations" in view.headline and "12 candidates" in view.headline
    assert "best validation 0.9700" in view.headline and "test 0.9550" in view.headline
    assert "took 1:35" in view.headline
    assert view.bars == [(1.0, "search and final training done")]


def test_status_of_a_run_whose_budget_was_too_short_to_search():
    plan = {"direct": True, "budget_s": 10.0, "final_epochs": 26}
    progress = [
        {
            "generation": -1,
            "index": 0,
            "final": True,
            "epoch": 3,
            "epochs": 26,
            "batch": 5,
            "batches": 10,
            "eta_s": 4.0,
            "worker": "main",
        }
    ]
    training = views.status_view(
        make_run(stage="final", generations_done=0, evaluated=0, plan=plan), progress, [], now=NOW
    )
    assert "training one plain CNN with the whole budget" in training.headline
    assert "generations" not in training.headline
    done = views.status_view(
        make_run(
            status="completed", pid=None, generations_done=0, evaluated=0, plan=plan, test_accuracy=0.99, stage="done"
        ),
        [],
        [],
        now=NOW,
    )
    assert views.NO_SEARCH in done.headline and "0/3 generations" not in done.headline
    assert "test 0.9900" in done.headline


def test_status_for_a_resume_that_is_launching():
    view = views.status_view(make_run(status="stopped", pid=None), [], [], now=NOW, starting=True)
    assert view.state == "starting" and view.active


def test_eta_from_timed_generations():
    run = make_run(resumed_at=NOW - 5)
    generations = [make_generation(0, 0.9, 0.6, 0.1, seconds=10.0)]
    generations[0]["recorded_at"] = NOW - 5
    # 2 generations left at 10 s, 5 s into the current one; final: 10 s / 4 candidates / 2 epochs * 5 epochs
    assert views.estimate_eta(run, generations, [], now=NOW) == pytest.approx(2 * 10 - 5 + 6.25)


def test_eta_unknown_before_anything_ran():
    assert views.estimate_eta(make_run(), [], [], now=NOW) is None


# ----------------------------------------------------------------------------- tables


def test_population_table_is_one_generation_best_first():
    frame = views.individuals_frame(population())
    table = views.population_table(frame)  # latest generation by default
    assert list(table["Candidate"]) == [1, 3, 2]
    assert list(table.columns) == [
        "Candidate",
        "Fitness",
        "Epochs",
        "Status",
        "Architecture",
        "Parameters",
        "MMACs",
        "Seconds",
        "Started from",
        "Reason",
        "Reused",
    ]
    assert list(table["Status"]) == ["✓ ok", "✓ ok", "✗ NaN loss"]
    assert list(table["Reused"]) == [False, True, False]
    first = views.population_table(frame, 0)
    assert list(first["Fitness"]) == [0.9, 0.7, 0.5, 0.0]
    assert first.loc[3, "Reason"] == "oom happened"


def test_empty_tables_keep_their_columns():
    frame = views.individuals_frame([])
    assert frame.empty
    assert list(views.population_table(frame).columns)[0] == "Candidate"
    assert views.failures_table(frame).empty
    assert views.status_counts(frame) == {}


def test_failures_are_listed_with_their_reasons():
    failures = views.failures_table(views.individuals_frame(population()))
    assert list(failures["Generation"]) == [1, 2]
    assert list(failures["Status"]) == ["✗ out of memory", "✗ NaN loss"]
    assert list(failures["Reason"]) == ["oom happened", "nan happened"]
    assert views.status_counts(views.individuals_frame(population())) == {"ok": 5, "oom": 1, "nan": 1}


def test_pruned_candidates_are_not_failures():
    records = population() + [make_individual(1, 3, 0.12, "pruned", reason="first-epoch accuracy 0.12 below 0.3")]
    frame = views.individuals_frame(records)
    assert list(views.failures_table(frame)["Status"]) == ["✗ out of memory", "✗ NaN loss"]
    assert "✂ pruned" in list(views.population_table(frame)["Status"])
    caption = views.chart_caption(frame)
    assert caption.startswith(
        "8 candidates evaluated · 1 stopped early by successive halving or pruning · 2 failed "
        "(1 out of memory, 1 NaN loss)"
    )


def test_population_table_says_what_each_candidate_started_from():
    records = population()
    parent = next(r for r in records if r["generation"] == 0 and r["index"] == 2)
    child = next(r for r in records if r["generation"] == 1 and r["index"] == 0)
    child["parent"], child["inherited"] = parent["key"], 0.625
    table = views.population_table(views.individuals_frame(records), 1).set_index("Candidate")
    assert table.loc[1, "Started from"] == "62% from candidate 3"
    assert set(table.drop(index=1)["Started from"]) == {"fresh"}
    child["parent"] = "a key of no earlier candidate"
    table = views.population_table(views.individuals_frame(records), 1).set_index("Candidate")
    assert table.loc[1, "Started from"] == "62% from its parent"


def test_population_table_names_the_node_of_each_candidate_only_for_a_cluster_run():
    records = population()
    assert "Node" not in views.population_table(views.individuals_frame(records), 1).columns
    for r in records:
        r["node"] = f"10.0.0.{1 + r['index'] % 2}/abcdef0{r['index'] % 2}"
    table = views.population_table(views.individuals_frame(records), 1).set_index("Candidate")
    assert list(table.columns).index("Node") == list(table.columns).index("Seconds") + 1
    assert table.loc[1, "Node"] == "10.0.0.1/abcdef00" and table.loc[2, "Node"] == "10.0.0.2/abcdef01"


def test_population_table_ranks_by_epochs_trained_then_fitness():
    """Successive halving: a candidate that went on to more epochs ranks above one stopped earlier,
    whatever their scores (they are not comparable); the table says how many epochs each had."""
    records = [make_individual(0, 0, 0.6, "pruned"), make_individual(0, 1, 0.4), make_individual(0, 2, 0.5)]
    for record, epochs, macs in zip(records, (1, 3, 3), (2_500_000, 1_000_000, 7_000_000)):
        record["epochs"], record["macs"] = epochs, macs
    table = views.population_table(views.individuals_frame(records))
    assert list(table["Candidate"]) == [3, 2, 1]
    assert list(table["Epochs"]) == [3, 3, 1] and list(table["MMACs"]) == [7.0, 1.0, 2.5]


def test_chart_caption_without_failures():
    frame = views.individuals_frame([make_individual(0, 0, 0.5)])
    assert views.chart_caption(frame).startswith("1 candidates evaluated · 0 failed.")


def test_unknown_statuses_still_show():
    frame = views.individuals_frame([make_individual(0, 0, 0.0, "exploded")])
    assert list(views.failures_table(frame)["Status"]) == ["exploded"]
    spec = views.fitness_chart([], frame).to_dict()
    assert "exploded" in spec["layer"][0]["encoding"]["color"]["scale"]["domain"]


def test_missing_values_do_not_break_the_frame():
    frame = views.individuals_frame([make_individual(0, 0, None, status=None, params=None, reason=None)])
    assert frame.loc[0, "fitness"] == 0.0 and frame.loc[0, "status"] == "error" and frame.loc[0, "params"] == 0


def test_layer_frame_adds_a_total():
    rows = [
        {"layer": "Input (normalised)", "output_shape": "1×8×8", "parameters": 0},
        {"layer": "Conv2d 8 filters 3×3", "output_shape": "8×8×8", "parameters": 80},
        {"layer": "Linear 10", "output_shape": "10", "parameters": 5130},
    ]
    frame = views.layer_frame(rows)
    assert list(frame.columns) == ["Layer", "Output shape", "Parameters"]
    assert frame.iloc[-1].tolist() == ["Total", "", 5210]


def test_records_csv_round_trips_with_the_genome_as_json():
    from automodel.store.csv_export import records_csv

    data = records_csv(population())
    frame = pd.read_csv(io.BytesIO(data))
    assert len(frame) == 7
    assert frame.loc[0, "run_id"] == "run-a" and frame.loc[2, "status"] == "oom"
    assert json.loads(frame.loc[0, "genome"]) == {"conv": [{"filters": 8}], "dropout": 0.1}
    assert list(frame["generation"].unique()) == [0, 1]  # stored numbering, for tools


def test_dataset_caption_counts_skipped_and_ignored_files():
    run = make_run(
        classes=["cat", "dog"],
        input_shape=[3, 32, 32],
        train_size=1000,
        val_size=200,
        test_size=300,
        skipped_images=2,
        ignored_files=3,
    )
    caption = views.dataset_caption(run)
    assert "2 classes (cat, dog)" in caption and "3×32×32" in caption and "train 1,000" in caption
    assert "2 images could not be decoded" in caption and "3 files that are not images" in caption
    assert views.dataset_caption(make_run()) == ""


# ----------------------------------------------------------------------------- charts


def _layers(chart) -> list[dict]:
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    return spec, spec["layer"]


def _data(spec: dict, layer: dict) -> list[dict]:
    return spec["datasets"][layer["data"]["name"]]


def test_fitness_chart_has_every_candidate_and_the_three_curves():
    generations = [make_generation(0, 0.9, 0.525, 0.0), make_generation(1, 0.95, 0.583, 0.0)]
    chart = views.fitness_chart(generations, views.individuals_frame(population()), total_generations=3, population=4)
    spec, (points, lines) = _layers(chart)
    assert points["mark"]["type"] == "circle" and lines["mark"]["type"] == "line"
    rows = _data(spec, points)
    assert len(rows) == 7
    assert {r["Status"] for r in rows} == {"ok", "oom", "nan"}
    assert all(abs(r["x"] - r["Generation"]) < 0.5 for r in rows)  # spread, but inside its generation
    assert len({r["x"] for r in rows}) == 7
    colour = points["encoding"]["color"]
    assert colour["field"] == "Status"
    domain = colour["scale"]["domain"]
    assert domain == ["ok", "oom", "nan"]  # the statuses present, in the fixed order
    assert colour["scale"]["range"][domain.index("oom")] == views.STATUS_COLORS["oom"]
    curve = _data(spec, lines)
    assert {(r["Statistic"], r["x"]) for r in curve} >= {("best", 1), ("mean", 2), ("worst", 2)}
    assert spec["resolve"]["scale"]["color"] == "independent"
    assert points["encoding"]["x"]["scale"]["domain"] == [0.5, 3.5]


def test_fitness_chart_draws_a_generation_in_progress_from_its_candidates_so_far():
    chart = views.fitness_chart([], views.individuals_frame(population()[:2]), total_generations=5)
    spec, (points, lines) = _layers(chart)
    assert len(_data(spec, points)) == 2
    curve = {r["Statistic"]: r for r in _data(spec, lines)}
    assert {s: (r["x"], r["Fitness"], r["So far"]) for s, r in curve.items()} == {
        "best": (1, 0.9, True),
        "mean": (1, pytest.approx(0.7), True),
        "worst": (1, 0.5, True),
    }


def test_generation_lines_take_a_record_where_there_is_one_and_the_candidates_elsewhere():
    # Generation 1 was cut short by the time budget (or is still training): no record of its own.
    lines = views.generation_lines([make_generation(0, 0.9, 0.525, 0.0)], views.individuals_frame(population()))
    got = {(int(r.Generation), r.Statistic): (round(r.Fitness, 3), bool(r["So far"])) for _, r in lines.iterrows()}
    assert got == {
        (1, "best"): (0.9, False),
        (1, "mean"): (0.525, False),
        (1, "worst"): (0.0, False),
        (2, "best"): (0.95, True),
        (2, "mean"): (0.583, True),  # the failed candidate counts as 0, as in a generation record
        (2, "worst"): (0.0, True),
    }
    assert views.generation_lines([], views.individuals_frame([])).empty


def test_compare_chart_puts_runs_on_one_chart():
    curves = {
        "run-a": [make_generation(0, 0.8, 0.5, 0.1), make_generation(1, 0.9, 0.6, 0.1)],
        "run-b": [make_generation(0, 0.7, 0.4, 0.1)],
    }
    frame = views.compare_frame(curves)
    assert set(frame["Run"]) == {"run-a", "run-b"}
    assert set(frame["Statistic"]) == {"best", "mean"}
    assert len(frame) == 6
    spec = views.compare_chart(curves).to_dict()
    assert spec["encoding"]["color"]["field"] == "Run"
    assert spec["encoding"]["strokeDash"]["field"] == "Statistic"


# ----------------------------------------------------------------------------- form and presets


def test_presets_are_valid_configs():
    quick = Config.from_dict(views.preset_config("Quick demo"))
    assert (quick.dataset, quick.device) == ("digits", "cpu")
    # The demo always searches (a plan for a minute might train one CNN): its own shape, no budget.
    assert quick.budget_s is None and quick.overrides == [] and quick.generations == 3
    cifar = Config.from_dict(views.preset_config("CIFAR-10"))
    assert (
        cifar.dataset,
        cifar.population,
        cifar.generations,
        cifar.epochs,
        cifar.final_epochs,
        cifar.device,
        cifar.batch_size,
    ) == ("cifar10", 10, 20, 6, 30, "auto", 256)
    assert cifar.fidelities() == [2, 6] and "avgmax" in cifar.space.heads
    own = Config.from_dict({**views.preset_config("Your own images"), "dataset": "/some/folder"})
    assert (own.epochs, own.final_epochs, own.batch_size) == (3, 15, None)


def test_form_config_turns_whole_floats_into_ints_and_keeps_the_space():
    values = {
        "population": 6.0,
        "generations": 2,
        "mutation_rate": 0.3,
        "time_limit_s": 120.0,
        "target_fitness": None,
        "space": {"conv_blocks": (1, 3), "filters": [8, 16]},
    }
    config = views.form_config(values, "digits")
    assert config["population"] == 6 and isinstance(config["population"], int)
    assert config["time_limit_s"] == 120.0 and config["target_fitness"] is None
    assert config["space"] == {"conv_blocks": [1, 3], "filters": [8, 16]}
    parsed = Config.from_dict(config)
    assert parsed.space.conv_blocks == [1, 3]


def test_form_config_reads_an_empty_optional_text_as_not_set():
    config = views.form_config({"backend": "ray", "ray_address": "  "}, "digits")
    assert config["ray_address"] is None
    assert Config.from_dict(config).backend == "ray"


def test_form_config_errors_are_the_cli_sentences():
    with pytest.raises(ConfigError, match=r"population = 1 is not accepted"):
        Config.from_dict(views.form_config({"population": 1}, "digits"))


def test_dataset_choice_for_names_and_paths():
    assert views.dataset_choice_for("digits") == "Digits (bundled, offline)"
    assert views.dataset_choice_for("cifar10") == "CIFAR-10"
    assert views.dataset_choice_for("/some/folder") == views.FOLDER_CHOICE
    assert set(views.DATASET_CHOICES.values()) >= {"digits", "cifar10", "cifar100", "mnist", "fashion-mnist"}


# ----------------------------------------------------------------------------- insight


def test_architecture_diagram_has_every_layer_and_the_skips():
    from automodel.evolution.genome import ConvBlock, Genome
    from automodel.training.model import layer_table

    genome = Genome(
        conv=(ConvBlock(16, 3, "relu", "max", True, "residual"), ConvBlock(16, 3, "relu", "none", True, "residual")),
        dense=(),
        dropout=0.0,
        optimizer="sgd",
        learning_rate=0.05,
        weight_decay=0.0,
    )
    rows = layer_table(genome, (1, 8, 8), 3)
    dot = views.architecture_dot(rows, title="best")
    assert dot.startswith("digraph architecture {") and dot.rstrip().endswith("}")
    assert dot.count("[label=") == len(rows)
    assert dot.count("->") == (len(rows) - 1) + 2  # the chain, plus one skip per residual block
    assert 'label="skip (1×1 conv)"' in dot and 'label="skip"' in dot  # projected, then identity


def test_learning_curves_and_their_charts():
    records = [
        make_individual(
            0,
            0,
            0.8,
            history=[
                {"epoch": 1, "train_loss": 2.0, "val_accuracy": 0.5},
                {"epoch": 2, "train_loss": 1.0, "val_accuracy": 0.8},
            ],
        ),
        make_individual(0, 1, 0.6),
    ]
    curves = views.learning_curves(records)
    assert list(curves["Epoch"]) == [1, 2] and list(curves["Validation accuracy"]) == [0.5, 0.8]
    accuracy, loss = views.learning_curve_charts(curves)
    assert accuracy.to_dict()["encoding"]["y"]["field"] == "Validation accuracy"
    assert loss.to_dict()["encoding"]["y"]["field"] == "Training loss"


def test_the_final_training_is_drawn_as_a_loss_curve_of_its_own():
    assert views.final_training_curve({"final_history": []}) is None and views.final_training_curve({}) is None
    run = {
        "final_history": [
            {"epoch": 1, "train_loss": 1.5, "val_accuracy": None},
            {"epoch": 2, "train_loss": 0.9, "val_accuracy": 0.93},  # the test accuracy, scored at its end
        ]
    }
    final = views.final_training_curve(run)
    best = make_individual(0, 0, 0.8, history=[{"epoch": 1, "train_loss": 2.0, "val_accuracy": 0.5}])
    curves = views.learning_curves([best, final], ["the best", views.FINAL_CURVE])
    mine = curves[curves["Candidate"] == views.FINAL_CURVE]
    assert list(mine["Training loss"]) == [1.5, 0.9]
    assert mine["Validation accuracy"].isna().all(), "a test score must not be drawn as validation accuracy"


def test_genes_against_fitness_compare_equal_epochs_only():
    genome = {
        "conv": [
            {"filters": 16, "kernel": 3, "kind": "residual", "downsample": "max"},
            {"filters": 64, "kernel": 5, "kind": "plain", "downsample": "none"},
        ],
        "dense": [],
        "head": "flatten",
        "optimizer": "sgd",
        "learning_rate": 0.03,
        "dropout": 0.1,
    }
    records = [make_individual(0, i, 0.5 + i / 10, genome=genome, epochs=3) for i in range(3)]
    records.append(make_individual(0, 3, 0.99, "pruned", genome={**genome, "head": "gap"}, epochs=1))
    frame = views.gene_frame(records)
    row = frame.iloc[0]
    assert (row["blocks"], row["kind"], row["downsamples"], row["widest"], row["learning_rate"]) == (
        2,
        "residual",
        1,
        64,
        -1.5,
    )
    assert row["residual_share"] == 0.5
    spec = views.gene_chart(frame, "head").to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert {v["Value"] for v in values} == {"flatten"}  # the 1-epoch candidate is not compared
    assert set(values[0]) == {"Value", "Fitness", "Architecture", "Generation"}  # not every gene's column
    assert views.diversity_chart([{"generation": 0, "diversity": 0.6}]).to_dict()["mark"]["type"] == "line"


def test_confusion_matrix_and_per_class_table():
    report = {
        "classes": ["a", "b"],
        "confusion": [[3, 1], [0, 4]],
        "per_class": [{"class": "a", "accuracy": 0.75, "count": 4}, {"class": "b", "accuracy": 1.0, "count": 4}],
    }
    spec = views.confusion_chart(report).to_dict()
    cells = spec["datasets"][next(iter(spec["datasets"]))]
    assert {(c["True"], c["Predicted"]): c["Count"] for c in cells} == {
        ("a", "a"): 3,
        ("a", "b"): 1,
        ("b", "a"): 0,
        ("b", "b"): 4,
    }
    assert next(c["Share"] for c in cells if c["True"] == "a" and c["Predicted"] == "a") == 0.75
    assert list(views.per_class_frame(report)["Accuracy"]) == [0.75, 1.0]


def test_pareto_frame_marks_the_front_and_the_chart_draws_it():
    records = [
        make_individual(0, 0, 0.9, params=1000, macs=5_000_000),
        make_individual(0, 1, 0.8, params=100, macs=400_000),
        make_individual(0, 2, 0.7, params=500, macs=2_000_000),
        make_individual(0, 3, 0.95, "pruned", params=10),
    ]
    frame = views.pareto_frame(records, ["accuracy", "params"])
    assert dict(zip(frame["Candidate"], frame["On the front"])) == {1: True, 2: True, 3: False}
    spec = views.pareto_chart(frame, "macs").to_dict()
    assert spec["layer"][0]["mark"]["interpolate"] == "step-after"
    assert spec["layer"][1]["encoding"]["x"]["scale"]["type"] == "log"


def test_a_large_run_is_thinned_for_the_chart_keeping_each_generations_extremes():
    records = [make_individual(g, i, (g * 7 + i * 13) % 100 / 100) for g in range(100) for i in range(60)]
    frame = views.individuals_frame(records)
    points = views.candidate_points(frame, population=60)
    assert len(points) <= views.MAX_CHART_POINTS
    for g in range(100):
        fitness = frame[frame["generation"] == g]["fitness"]
        shown = points[points["Generation"] == g + 1]["Fitness"]
        assert shown.max() == fitness.max() and shown.min() == fitness.min()
    assert "the chart shows 2,000 of them" in views.chart_caption(frame)
    assert len(views.candidate_points(frame.head(500))) == 500  # small runs keep every point


def test_gene_and_pareto_charts_of_a_large_run_are_thinned_but_keep_medians_and_the_front():
    genome = {
        "conv": [{"filters": 16, "kernel": 3}],
        "dense": [],
        "head": "flatten",
        "optimizer": "sgd",
        "learning_rate": 0.03,
        "dropout": 0.1,
    }
    records = [
        make_individual(
            g,
            i,
            (g * 7 + i * 13) % 100 / 100,
            genome={**genome, "dropout": i % 3 / 10},
            epochs=3,
            params=1000 + (g * 60 + i) * 7 % 5000,
            macs=10_000,
        )
        for g in range(100)
        for i in range(80)
    ]
    frame = views.gene_frame(records)
    spec = views.gene_chart(frame, "dropout").to_dict()  # more than Altair's 5,000 rows would raise here
    datasets = [values for values in spec["datasets"].values()]
    points = max(datasets, key=len)
    medians = min(datasets, key=len)
    assert len(points) <= views.MAX_CHART_POINTS + 2 * 3
    expected = frame.groupby(frame["dropout"].astype(str))["Fitness"].median()
    assert {m["Value"]: m["Median"] for m in medians} == expected.to_dict()  # from every candidate
    assert sum(m["Candidates"] for m in medians) == len(frame)

    pareto = views.pareto_frame(records[:3000], ["accuracy", "params"])
    spec = views.pareto_chart(pareto, "params").to_dict()
    drawn = spec["datasets"][spec["layer"][1]["data"]["name"]]
    assert len(drawn) <= views.MAX_CHART_POINTS + 2 * 100 + int(pareto["On the front"].sum())
    assert set(pareto[pareto["On the front"]]["key"]) <= {d["key"] for d in drawn}


def test_every_status_has_a_label_and_a_colour():
    from automodel.store.records import CandidateStatus, RunStatus

    for status in CandidateStatus:
        assert status in views.STATUS_TEXT and status in views.STATUS_COLORS, status
    assert set(views.CANDIDATE_STATUSES) == set(CandidateStatus)
    for status in RunStatus:
        assert status in views.RUN_BADGES, status


def test_diagram_labels_break_lines_with_dot_s_own_escape_never_a_printed_backslash():
    rows = [
        {"layer": "Input (normalised)", "output_shape": "1×8×8", "parameters": 0},
        {
            "layer": 'Residual 16 filters 3×3, relu, batch norm, max pool 2×2, skip via 1×1 conv "x"',
            "output_shape": "16×4×4",
            "parameters": 2560,
            "kind": "residual",
            "skip": True,
        },
        {"layer": "Linear 10", "output_shape": "10", "parameters": 170},
    ]
    dot = views.architecture_dot(rows)
    labels = re.findall(r'n\d+ \[label="((?:[^"\\]|\\.)*)"', dot)
    assert len(labels) == 3
    for label in labels:
        # Every backslash starts an escape DOT reads (a line break or a quote); none is doubled.
        assert "\\\\" not in label and re.fullmatch(r'(?:[^\\]|\\n|\\")*', label), label
    assert labels[0] == "Input (normalised)\\n1×8×8"
    lines = labels[1].split("\\n")
    assert lines[-1] == "16×4×4 · 2,560 params" and all(len(line) <= views.LABEL_WIDTH + 2 for line in lines)
    assert '\\"x\\"' in labels[1]  # a quote in a layer's text stays escaped
