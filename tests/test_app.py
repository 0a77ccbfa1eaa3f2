"""The Streamlit page under streamlit.testing.v1.AppTest: form, presets, validation, buttons, runs.

Each test gets its own database through AUTOMODEL_DB. Launching the search is replaced by a
recorder except in one test that runs a tiny real search to the end; the live view itself is
covered by tests/test_browser.py (AppTest does not simulate ``run_every``).
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from automodel.config import Config, ConfigError
from automodel.page import form as page_form
from automodel.page import sections as page_sections
from automodel.page import views
from automodel.process import jobs
from automodel.store import Store

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
NO_BUDGET = views.budget_choice_for(None)


def page() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30).run()


def open_form(at: AppTest) -> AppTest:
    """Open the sidebar's New search expander (it starts closed when the database has runs)."""
    at.session_state[page_form.FORM_OPEN_KEY] = True
    return at.run()


def show_tab(at: AppTest, label: str) -> AppTest:
    """Open one of the run's tabs (only the open one is drawn)."""
    at.session_state[page_sections.RUN_TAB_KEY] = label
    return at.run()


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def quick_config(**changes) -> dict:
    config = Config(dataset="digits", population=4, generations=2, epochs=1, final_epochs=1, device="cpu")
    data = config.to_dict()
    data.update(changes)
    return data


def add_finished_run(
    store: Store,
    run_id: str,
    created_at: float,
    best: float,
    population: int = 3,
    generations: int = 2,
    status: str = "completed",
) -> None:
    """A run as the engine leaves it, without training anything."""
    genome = {
        "conv": [{"filters": 8, "kernel": 3, "activation": "relu", "pooling": "max", "batch_norm": True}],
        "dense": [],
        "dropout": 0.1,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "weight_decay": 0.0,
    }
    store.create_run(
        run_id, quick_config(population=population, generations=generations), total_generations=generations
    )
    records = []
    for g in range(generations):
        for i in range(population):
            fitness = round(best - 0.1 * (population - 1 - i) - 0.05 * (generations - 1 - g), 4)
            failed = (g, i) == (0, 0)
            records.append(
                {
                    "run_id": run_id,
                    "generation": g,
                    "index": i,
                    "key": f"{run_id}-{g}-{i}",
                    "genome": genome,
                    "summary": f"C8k3relu/max·bn #{g}.{i}",
                    "fitness": 0.0 if failed else fitness,
                    "status": "oom" if failed else "ok",
                    "reason": "CUDA out of memory" if failed else "",
                    "params": 1000 + i,
                    "seconds": 0.5,
                    "epochs": 1,
                    "train_loss": 0.3,
                    "cached": False,
                    "recorded_at": created_at + g,
                }
            )
        store.add_generation(
            {
                "run_id": run_id,
                "generation": g,
                "best": best - 0.05 * (generations - 1 - g),
                "mean": best - 0.2,
                "worst": 0.0,
                "diversity": 0.5,
                "failed": 1 if g == 0 else 0,
                "trained": population,
                "seconds": 2.0,
                "recorded_at": created_at + g,
            }
        )
    store.add_individuals(records)
    store.update_run(
        run_id,
        status=status,
        pid=None,
        created_at=created_at,
        ended_at=created_at + 10,
        elapsed_s=10.0,
        generations_done=generations,
        evaluated=len(records),
        best_fitness=best,
        best_genome=genome,
        best_summary="C8k3relu/max·bn | drop 0.1 | adam 1e-03",
        best_generation=generations - 1,
        best_index=population - 1,
        classes=[str(c) for c in range(10)],
        input_shape=[1, 8, 8],
        train_size=1222,
        val_size=216,
        test_size=359,
        device="cpu",
        test_accuracy=best - 0.01 if status == "completed" else None,
        stage="done" if status == "completed" else None,
    )


# ----------------------------------------------------------------------------- the form


def test_defaults_are_the_quick_demo_and_start_is_ready(db):
    at = page()
    assert not at.exception
    assert at.sidebar.selectbox(key="dataset_choice").value == "Digits (bundled, offline)"
    assert at.sidebar.number_input(key="cfg_population").value == 8
    assert at.sidebar.selectbox(key="cfg_device").value == "cpu"
    assert at.sidebar.number_input(key="cfg_batch_size").value is None  # automatic
    assert texts(at.sidebar.error) == []
    start = at.sidebar.button(key="start")
    assert start.label == "Start" and not start.disabled
    assert any("No runs in this database yet" in text for text in texts(at.info))


def test_every_ga_setting_is_offered(db):
    at = page()
    assert at.sidebar.selectbox(key="cfg_selection").options == [
        "roulette wheel (fitness-proportional)",
        "tournament",
        "rank-based",
        "truncation (best fraction)",
        "stochastic universal sampling",
    ]
    assert at.sidebar.selectbox(key="cfg_crossover").options == ["one point", "two point", "uniform"]
    for key in (
        "cfg_tournament_size",
        "cfg_mutation_rate",
        "cfg_elitism",
        "cfg_seed",
        "cfg_epochs",
        "cfg_final_epochs",
        "cfg_time_limit_s",
    ):
        at.sidebar.number_input(key=key)  # raises if missing
    assert at.sidebar.selectbox(key="cfg_device").options == ["auto", "cpu", "cuda"]
    assert set(at.sidebar.selectbox(key="dataset_choice").options) >= {
        "Digits (bundled, offline)",
        "CIFAR-10",
        "CIFAR-100",
        "MNIST",
        "Fashion-MNIST",
        "Image folder on this server",
        "Upload a .zip of an image folder",
    }


def test_presets_fill_the_form(db):
    at = page()
    at.sidebar.button(key="preset_cifar").click().run()
    assert at.sidebar.selectbox(key="dataset_choice").value == "CIFAR-10"
    values = {
        key: at.sidebar.number_input(key=f"cfg_{key}").value
        for key in ("population", "generations", "epochs", "final_epochs", "batch_size")
    }
    assert values == {"population": 10, "generations": 20, "epochs": 6, "final_epochs": 30, "batch_size": 256}
    assert at.sidebar.number_input(key="cfg_min_epochs").value == 2
    assert at.sidebar.selectbox(key="cfg_device").value == "auto"
    assert texts(at.sidebar.error) == []
    at.sidebar.button(key="preset_quick").click().run()
    assert at.sidebar.selectbox(key="dataset_choice").value == "Digits (bundled, offline)"
    assert at.sidebar.number_input(key="cfg_population").value == 8
    assert at.sidebar.selectbox(key="cfg_device").value == "cpu"
    assert at.sidebar.number_input(key="cfg_batch_size").value is None  # automatic
    at.sidebar.button(key="preset_own").click().run()
    assert at.sidebar.selectbox(key="dataset_choice").value == views.UPLOAD_CHOICE
    assert at.sidebar.number_input(key="cfg_final_epochs").value == 15


def _cli_message(**changes) -> str:
    data = quick_config()
    data.update(changes)
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    return str(info.value)


@pytest.mark.parametrize(
    "key, value, change",
    [
        ("cfg_population", 1, {"population": 1}),
        ("cfg_generations", 0, {"generations": 0}),
        ("cfg_elitism", 8, {"population": 8, "elitism": 8}),
        ("cfg_mutation_rate", 1.5, {"mutation_rate": 1.5}),
        ("cfg_epochs", 0, {"epochs": 0}),
        ("cfg_time_limit_s", 0.0, {"time_limit_s": 0.0}),
    ],
)
def test_bad_values_show_the_cli_sentence_and_block_start(db, key, value, change):
    at = page()
    assert at.sidebar.selectbox(key="budget_choice").value.startswith("no limit")  # the Quick demo's
    at.sidebar.number_input(key=key).set_value(value).run()
    assert texts(at.sidebar.error) == [_cli_message(**change)]
    assert at.sidebar.button(key="start").disabled


def test_pruning_and_back_end_settings(db):
    at = page()
    assert at.sidebar.checkbox(key="cfg_prune").value == Config().prune
    at.sidebar.checkbox(key="cfg_prune").check().run()
    at.sidebar.number_input(key="cfg_prune_fraction").set_value(1.5).run()
    assert texts(at.sidebar.error) == [_cli_message(prune=True, prune_fraction=1.5)]
    at.sidebar.number_input(key="cfg_prune_fraction").set_value(0.5).run()
    assert at.sidebar.number_input(key="cfg_cpus_per_candidate").disabled
    at.sidebar.selectbox(key="cfg_backend").set_value("ray").run()
    assert texts(at.sidebar.error) == [] and not at.sidebar.number_input(key="cfg_cpus_per_candidate").disabled
    at.sidebar.number_input(key="cfg_gpus_per_candidate").set_value(0.5).run()  # with device cpu
    assert texts(at.sidebar.error) == [_cli_message(backend="ray", gpus_per_candidate=0.5, device="cpu")]


def test_an_empty_search_space_choice_is_refused(db):
    at = page()
    at.sidebar.multiselect(key="space_filters").set_value([]).run()
    assert texts(at.sidebar.error) == [_cli_message(space={"filters": []})]
    assert at.sidebar.button(key="start").disabled


def test_folder_dataset_must_exist(db, tmp_path):
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["dataset_roots"] = [str(tmp_path)]
    at.run()
    at.sidebar.selectbox(key="dataset_choice").set_value("Image folder on this server").run()
    assert "folder path is empty" in texts(at.sidebar.error)[0]
    missing = tmp_path / "no-such-folder"
    at.sidebar.text_input(key="folder_path").set_value(str(missing)).run()
    assert texts(at.sidebar.error) == [
        f"dataset path {missing} does not exist; give digits, cifar10, cifar100, "
        "mnist, fashion-mnist, or a path to an image folder or .zip of one."
    ]
    missing.mkdir()
    at.sidebar.text_input(key="folder_path").set_value(str(missing)).run()
    assert texts(at.sidebar.error) == []


def test_server_folders_are_limited_to_the_configured_roots(db, tmp_path):
    allowed, other = tmp_path / "allowed", tmp_path / "private"
    (allowed / "cats").mkdir(parents=True)
    other.mkdir()
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["dataset_roots"] = [str(allowed)]
    at.run()
    at.sidebar.selectbox(key="dataset_choice").set_value("Image folder on this server").run()
    at.sidebar.text_input(key="folder_path").set_value(str(other)).run()
    (error,) = texts(at.sidebar.error)
    assert error.startswith(f"dataset folder {other} is outside the folders this page may read ({allowed})")
    assert at.sidebar.button(key="start").disabled
    at.sidebar.text_input(key="folder_path").set_value(str(allowed / "cats" / ".." / ".." / "private")).run()
    assert "outside the folders" in texts(at.sidebar.error)[0]  # no escape by ..
    at.sidebar.text_input(key="folder_path").set_value(str(allowed / "cats")).run()
    assert texts(at.sidebar.error) == []


def test_a_folder_is_described_before_start_with_its_size_memory_and_imbalance(db, tmp_path):
    root = tmp_path / "photos"
    for cls, n in (("cats", 12), ("dogs", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (80, 60), (i * 10, 40, 90)).save(root / cls / f"{i}.jpg")
    (root / "cats" / "Thumbs.db").write_bytes(b"junk")
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["dataset_roots"] = [str(tmp_path)]
    at.run()
    at.sidebar.selectbox(key="dataset_choice").set_value("Image folder on this server").run()
    at.sidebar.text_input(key="folder_path").set_value(str(root)).run()
    assert at.sidebar.selectbox(key="cfg_image_size").value == "auto"
    captions = [c for c in texts(at.sidebar.caption) if "images in" in c]
    assert captions == [
        "14 images in 2 classes (cats 12, dogs 2) · trained at 64×48, 3 channels · "
        "129.0 kB in memory · 1 not images, ignored (Thumbs.db)"
    ]
    assert any("unbalanced: cats has 12 images, dogs only 2 (6×)" in w for w in texts(at.sidebar.warning))
    at.sidebar.selectbox(key="cfg_image_size").set_value(32).run()
    assert any("trained at 32×24" in c for c in texts(at.sidebar.caption))
    assert texts(at.sidebar.error) == []


def test_a_password_in_the_secrets_guards_the_whole_page(db):
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["password"] = "s3cret"
    at.run()
    assert [t.value for t in at.text_input] == [""] and not at.sidebar.button and not at.subheader
    at.text_input(key="password_entry").set_value("wrong").run()
    assert texts(at.error) == ["That password is not right; ask whoever runs this page for it."]
    assert not at.sidebar.button
    at.text_input(key="password_entry").set_value("s3cret").run()
    assert not at.error and at.sidebar.button(key="start").label == "Start"


# ----------------------------------------------------------------------------- Start


def test_start_claims_the_run_and_launches_the_search(db, launched):
    at = page()
    at.sidebar.button(key="start").click().run()
    assert not at.exception
    store = Store(db)
    (run,) = store.list_runs()
    assert run["status"] == "running" and run.get("pid") is None  # the search process adopts it
    assert run["total_generations"] == views.PRESETS["Quick demo"]["generations"]
    assert run["config"]["dataset"] == "digits"
    (cmd,) = launched
    run_dir = db.parent / "runs" / run["run_id"]
    assert cmd[1:5] == ["-m", "automodel", "run", "--run-id"] and cmd[5] == run["run_id"]
    assert cmd[cmd.index("--db") + 1] == str(db.resolve())
    assert Path(cmd[cmd.index("--config") + 1]) == run_dir.resolve() / "config.json"
    assert json.loads((run_dir / "config.json").read_text()) == run["config"]
    assert f"Started {run['run_id']}." in texts(at.sidebar.success)
    assert at.selectbox(key="run_pick").value == run["run_id"]
    assert "starting" in at.markdown[0].value


def test_the_form_starts_a_search_with_the_chosen_objectives_workers_and_space(db, launched):
    at = page()
    at.sidebar.multiselect(key="cfg_objectives").set_value(["params", "latency"]).run()
    at.sidebar.number_input(key="cfg_max_latency_ms").set_value(5.0).run()
    at.sidebar.selectbox(key="cfg_workers").set_value(2).run()
    at.sidebar.multiselect(key="space_heads").set_value(["flatten", "gap"]).run()
    at.sidebar.number_input(key="space_lr_sgd_high").set_value(0.08).run()
    assert texts(at.sidebar.error) == []
    at.sidebar.button(key="start").click().run()
    (run,) = Store(db).list_runs()
    config = Config.from_dict(run["config"])
    assert config.objectives == ["accuracy", "params", "latency"] and config.max_latency_ms == 5.0
    assert config.workers == 2 and config.space.heads == ["flatten", "gap"]
    assert config.space.learning_rates["sgd"] == [Config().space.learning_rates["sgd"][0], 0.08]


def test_the_form_starts_from_an_earlier_run_when_asked(db, launched):
    store = Store(db)
    add_finished_run(store, "earlier", time.time() - 100, best=0.9)
    at = open_form(page())
    assert "earlier" in at.sidebar.multiselect(key="cfg_warm_start").options
    at.sidebar.multiselect(key="cfg_warm_start").set_value(["earlier"]).run()
    assert texts(at.sidebar.error) == []
    at.sidebar.button(key="start").click().run()
    started = [r for r in store.list_runs() if r["run_id"] != "earlier"]
    assert len(started) == 1 and Config.from_dict(started[0]["config"]).warm_start == ["earlier"]


def test_a_learning_rate_range_upside_down_is_one_sentence(db):
    at = page()
    at.sidebar.number_input(key="space_lr_adam_low").set_value(0.5).run()
    assert texts(at.sidebar.error) == [
        _cli_message(
            space={
                "learning_rates": {
                    **Config().space.learning_rates,
                    "adam": [0.5, Config().space.learning_rates["adam"][1]],
                }
            }
        )
    ]
    assert at.sidebar.button(key="start").disabled


def test_start_is_refused_while_a_run_is_active(db, launched):
    store = Store(db)
    store.claim_run_slot("busy-run", quick_config(), jobs.is_alive, total_generations=2)  # just claimed: active
    at = open_form(page())
    at.sidebar.button(key="start").click().run()
    assert texts(at.sidebar.error) == [
        "Run 'busy-run' is still running; stop it or wait for it to finish before starting another."
    ]
    assert [r["run_id"] for r in store.list_runs()] == ["busy-run"]
    assert launched == []


# ----------------------------------------------------------------------------- uploads


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def _choose_upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.sidebar.selectbox(key="dataset_choice").set_value("Upload a .zip of an image folder").run()
    assert texts(at.sidebar.error) == ["Choose a .zip file of an image folder to upload."]
    at.sidebar.file_uploader(key="upload").upload(name, data, "application/zip").run()
    assert texts(at.sidebar.error) == []
    return at


def test_an_upload_is_unpacked_inside_its_run_folder(db, launched):
    at = _choose_upload(
        page(),
        "pets.zip",
        _zip({"pets/cat/a.png": _png(), "pets/dog/b.png": _png(), "pets/notes.txt": b"not an image"}),
    )
    at.sidebar.button(key="start").click().run()
    (run,) = Store(db).list_runs()
    run_dir = (db.parent / "runs" / run["run_id"]).resolve()
    assert run["status"] == "running" and run["config"]["dataset"] == str(run_dir / "upload")
    assert (run_dir / "upload" / "pets" / "cat" / "a.png").is_file()
    assert not (run_dir / "upload.zip").exists()
    assert len(launched) == 1


@pytest.mark.parametrize(
    "entries, words",
    [
        ({"../evil.png": b"x"}, "unsafe entry name"),
        ({"/abs/evil.png": b"x"}, "unsafe entry name"),
        ({f"many/{i}.png": b"x" for i in range(5)}, "more than the limit of 3"),
    ],
)
def test_unsafe_uploads_are_refused_with_one_sentence(db, launched, tmp_path, entries, words):
    at = _choose_upload(page(), "bad.zip", _zip(entries))
    at.sidebar.number_input(key="limit_files").set_value(3).run()
    at.sidebar.button(key="start").click().run()
    (message,) = texts(at.sidebar.error)
    assert words in message
    (run,) = Store(db).list_runs()
    assert run["status"] == "failed" and words in run["reason"]
    assert launched == []
    assert not (tmp_path / "evil.png").exists() and not Path("/abs/evil.png").exists()
    run_dir = db.parent / "runs" / run["run_id"]
    assert not (run_dir / "upload").exists() or not any((run_dir / "upload").rglob("*.png"))
    at.run()
    assert any(words in text for text in texts(at.error))  # the run view says why it failed


# ----------------------------------------------------------------------------- runs


def test_past_runs_can_be_picked_viewed_and_compared(db):
    store = Store(db)
    add_finished_run(store, "run-old", created_at=1_700_000_000.0, best=0.9)
    add_finished_run(store, "run-new", created_at=1_700_000_100.0, best=0.95, population=4, status="stopped")
    at = page()
    assert not at.exception
    picker = at.selectbox(key="run_pick")
    assert picker.options[0].startswith("run-new") and picker.value == "run-new"
    assert "stopped" in at.markdown[0].value and "run-new" in at.markdown[0].value
    assert not at.button(key="resume").disabled and at.button(key="stop").disabled
    picker.set_value("run-old").run()
    assert "completed" in at.markdown[0].value and "test 0.8900" in at.markdown[0].value
    # Only the open tab (Population, the first) is drawn beside the fitness chart.
    (population,) = at.dataframe
    assert len(population.value) == 3 and population.value["Fitness"].iloc[0] == pytest.approx(0.9)
    assert len(at.get("vega_lite_chart")) == 1
    assert at.button(key="resume").disabled  # completed runs do not resume
    at.selectbox(key="pop_gen_run-old").set_value(0).run()
    assert at.dataframe[0].value["Status"].tolist()[-1] == "✗ out of memory"
    at.session_state["failures_open"] = True
    population, failures = at.run().dataframe
    assert failures.value["Reason"].tolist() == ["CUDA out of memory"]

    (layers,) = show_tab(at, "Best model").dataframe
    assert layers.value["Layer"].iloc[-1] == "Total"
    assert [b.label for b in at.get("download_button")] == [
        "Best model (.pt, final model)",
        "ONNX export",
        "Candidates (.csv)",
    ]
    # fitness per generation, genes against fitness, diversity per generation
    assert len(show_tab(at, "Which genes matter").get("vega_lite_chart")) == 3

    at.session_state["all_runs"] = True
    all_runs = at.run().dataframe[-1]
    assert all_runs.value["Run"].tolist() == ["run-new", "run-old"]
    assert all_runs.value["Status"].tolist() == ["stopped", "completed"]
    at.multiselect(key="compare").set_value(["run-new", "run-old"]).run()
    charts = at.get("vega_lite_chart")
    assert len(charts) == 4
    compared = charts[-1].proto.SerializeToString()  # the data travels as Arrow beside the spec
    assert b"run-new" in compared and b"run-old" in compared and b'"Run"' in charts[-1].proto.spec.encode()


def test_a_corrupt_database_is_reported_and_left_untouched(db, tmp_path):
    db.parent.mkdir(parents=True)
    db.write_bytes(b"{ this is not json")
    at = page()
    assert not at.exception
    (message,) = texts(at.error)
    assert str(db.resolve()) in message and "is not a valid AutoModel database" in message
    assert at.sidebar.button(key="start").disabled
    assert db.read_bytes() == b"{ this is not json"
    at.sidebar.text_input(key="db_path").set_value(str(tmp_path / "other.json")).run()
    assert texts(at.error) == []
    assert not at.sidebar.button(key="start").disabled
    assert db.read_bytes() == b"{ this is not json"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_whose_process_died_shows_interrupted_and_resumes(db, launched):
    store = Store(db)
    add_finished_run(store, "run-dead", created_at=time.time() - 3600, best=0.8, status="running")
    store.update_run("run-dead", pid=_dead_pid(), host=socket.gethostname(), stage=None, test_accuracy=None)
    at = page()
    assert store.get_run("run-dead")["status"] == "interrupted"
    assert "interrupted" in at.markdown[0].value
    assert any("Resume" in text for text in texts(at.warning))
    at.button(key="resume").click().run()
    (cmd,) = launched
    assert cmd[3:5] == ["resume", "run-dead"] and "--data-dir" in cmd
    assert "starting" in at.markdown[0].value
    assert store.get_run("run-dead")["status"] == "running"  # claimed: no other tab can resume it too


def test_resume_is_refused_while_another_run_is_active(db, launched):
    store = Store(db)
    add_finished_run(store, "run-stopped", created_at=1_700_000_000.0, best=0.8, status="stopped")
    store.claim_run_slot("run-busy", quick_config(), jobs.is_alive, total_generations=2)
    at = page()
    at.selectbox(key="run_pick").set_value("run-stopped").run()
    at.button(key="resume").click().run()
    assert any(
        "Run run-busy is active" in text and "stop it before resuming another" in text for text in texts(at.error)
    )
    assert launched == []


def test_stop_ends_the_run_within_five_seconds(db):
    # A stand-in for the search: a process whose command line names automodel, in its own group.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "automodel-stand-in"], start_new_session=True
    )
    try:
        store = Store(db)
        store.create_run(
            "run-live",
            quick_config(),
            total_generations=2,
            pid=stand_in.pid,
            host=socket.gethostname(),
            started_at=time.time(),
            resumed_at=time.time(),
        )
        at = page()
        assert "running" in at.markdown[0].value
        assert not at.button(key="stop").disabled and at.button(key="resume").disabled
        started = time.monotonic()
        at.button(key="stop").click().run()
        assert time.monotonic() - started < 6
        assert store.get_run("run-live")["status"] == "stopped"
        assert stand_in.poll() is not None  # SIGTERM reached the process group
        assert "Run run-live stopped." in texts(at.success)
        assert "stopped" in at.markdown[0].value
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
        stand_in.wait()


def test_a_tiny_real_search_runs_to_the_end(db, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    at = page()
    at.sidebar.selectbox(key="budget_choice").set_value(NO_BUDGET).run()  # exactly these settings
    for key, value in (("cfg_population", 2), ("cfg_generations", 1), ("cfg_epochs", 1), ("cfg_final_epochs", 1)):
        at.sidebar.number_input(key=key).set_value(value).run()
    at.sidebar.button(key="start").click().run()
    store = Store(db)
    (run,) = store.list_runs()
    deadline = time.monotonic() + 90
    while store.get_run(run["run_id"])["status"] in ("running", "stopping") and time.monotonic() < deadline:
        time.sleep(0.5)
    final = store.get_run(run["run_id"])
    assert final["status"] == "completed", final.get("reason")
    at.run()
    assert "completed" in at.markdown[0].value
    assert len(at.dataframe[0].value) == 2
    assert not show_tab(at, "Best model").download_button(key="download_pt").disabled
    assert Path(final["best_model_path"]).is_file()


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory) -> Path:
    """A completed tiny search, recorded by the real command line."""
    db = tmp_path_factory.mktemp("finished") / "automodel.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "automodel",
            "run",
            "--dataset",
            "digits",
            "--population",
            "4",
            "--generations",
            "2",
            "--epochs",
            "2",
            "--final-epochs",
            "1",
            "--seed",
            "4",
            "--run-id",
            "done",
            "--db",
            str(db),
            "--quiet",
            "--workers",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return db


@pytest.mark.slow
def test_a_finished_run_shows_its_network_test_results_and_genes(finished_db, monkeypatch):
    monkeypatch.setenv("AUTOMODEL_DB", str(finished_db))
    at = page()
    assert not at.exception
    assert [t.label for t in at.tabs] == list(page_sections.RUN_TABS[:4]) + ["Test results", "Try the model"]
    headings = [h.value for h in at.subheader]
    for label in ("Architecture", "Which genes matter", "Test results", "Try the model"):
        assert label not in headings  # a closed tab is not drawn
        headings = [h.value for h in show_tab(at, label).subheader]
        assert "Fitness per generation" in headings and label in headings
    diagram = show_tab(at, "Architecture").get("graphviz_chart")
    assert diagram and "digraph architecture" in diagram[0].proto.spec
    run = Store(finished_db).get_run("done")
    report = run["test_report"]
    assert sum(sum(row) for row in report["confusion"]) == run["test_size"]
    assert report["accuracy"] == pytest.approx(run["test_accuracy"])
    assert any("misclassified" in c.value for c in show_tab(at, "Test results").caption)


@pytest.mark.slow
def test_try_the_model_predicts_an_uploaded_image_and_refuses_other_files(finished_db, monkeypatch):
    monkeypatch.setenv("AUTOMODEL_DB", str(finished_db))
    at = show_tab(page(), "Try the model")
    image = io.BytesIO()
    from PIL import Image

    Image.new("L", (8, 8), 30).save(image, format="PNG")
    uploader = at.get("file_uploader")[-1]
    uploader.set_value([("digit.png", image.getvalue(), "image/png"), ("notes.txt", b"hello", "text/plain")]).run()
    shown = " ".join(m.value for m in at.markdown)
    assert "digit.png" in shown and "Prediction:" in shown
    assert any("notes.txt is not an image" in e.value for e in at.error)


def test_a_large_generation_is_paged_in_the_table(db):
    store = Store(db)
    add_finished_run(store, "big", created_at=1_700_000_000.0, best=0.9, population=450, generations=1)
    at = page()
    table = at.dataframe[0].value
    assert len(table) == 200
    assert any("Rows 1–200 (page 1 of 3)" in c.value for c in at.caption)
    at.number_input(key="pop_page_big").set_value(3).run()
    assert len(at.dataframe[0].value) == 50


def test_the_form_starts_closed_when_there_are_runs_and_keeps_its_values_while_closed(db):
    add_finished_run(Store(db), "run-old", created_at=1_700_000_000.0, best=0.9)
    at = page()
    assert not at.sidebar.number_input  # closed: the form is not drawn at all
    open_form(at).sidebar.selectbox(key="budget_choice").set_value("5 minutes").run()
    at.sidebar.checkbox(key="budget_manual").check().run()
    at.sidebar.number_input(key="cfg_population").set_value(7).run()
    at.session_state[page_form.FORM_OPEN_KEY] = False
    at.run().run()
    assert not at.sidebar.number_input
    assert open_form(at).sidebar.number_input(key="cfg_population").value == 7
    assert at.sidebar.checkbox(key="budget_manual").value
