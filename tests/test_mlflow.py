"""MLflow tracking against a real MLflow tracking store on disk (SQLite), read back with MLflow's own
client: the run and its candidates as child runs, the final model as artifacts, a resume that logs
nothing twice, and a tracker that fails without stopping the search."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient  # requirements-dev.txt installs requirements-mlflow.txt

from automodel.config import Config, ConfigError
from automodel.evolution.loop import Search
from automodel.store import Store
from automodel.tracking import BackgroundTracker
from automodel.tracking.mlflow_tracker import MlflowTracker, genome_params, tracking_uri, ui_command
from automodel.training.model import build_model
from automodel.training.trainer import TrainResult

REPO = Path(__file__).resolve().parent.parent


def history_fitness(genome) -> list[float]:
    """A deterministic learning curve: wider nets learn faster."""
    width = sum(b.filters for b in genome.conv) / (128 * len(genome.conv))
    return [round(0.3 + 0.2 * width * epoch, 6) for epoch in (1, 2, 3)]


class CurveEvaluator:
    """Scores genomes without training, with a learning curve per epoch; dies after ``die_after``."""

    def __init__(self, data, die_after=None):
        self.data, self.die_after, self.trained = data, die_after, 0

    def evaluate(self, tasks, on_result, on_progress, should_stop):
        for task in tasks:
            if self.die_after is not None and self.trained >= self.die_after:
                raise SystemExit("killed")
            self.trained += 1
            curve = history_fitness(task.genome)
            epochs = task.epochs or 3
            history = [
                {
                    "epoch": e + 1,
                    "train_loss": 2.0 - curve[min(e, 2)],
                    "val_accuracy": curve[min(e, 2)],
                    "seconds": 0.01,
                }
                for e in range(epochs)
            ]
            model = build_model(task.genome, self.data.input_shape, self.data.classes, self.data.mean, self.data.std)
            on_result(
                task,
                TrainResult(
                    "ok",
                    history[-1]["val_accuracy"],
                    params=7,
                    seconds=0.05,
                    epochs_done=epochs,
                    history=history,
                    state_dict=model.state_dict(),
                ),
            )

    def close(self):
        pass


def tracked_config(uri: str) -> Config:
    return Config(
        population=4, generations=2, elitism=1, seed=5, epochs=3, final_epochs=1, mlflow=uri, mlflow_experiment="tests"
    )


def search(store: Store, config: Config, run_id="r1", die_after=None) -> Search:
    if store.get_run(run_id) is None:
        store.create_run(run_id, config.to_dict())
    return Search(
        config,
        store,
        run_id,
        data_dir=REPO / "data",
        evaluator_factory=lambda data, _settings: CurveEvaluator(data, die_after),
    )


def mlflow_runs(uri: str, experiment="tests") -> tuple[MlflowClient, object, list]:
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("automodel.kind") == "search"]
    assert len(parents) == 1
    return client, parents[0], [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]


@pytest.fixture
def uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


def test_a_search_appears_in_mlflow_with_its_candidates_and_model(tmp_path, uri):
    (tmp_path / "mlflow").mkdir()
    store = Store(tmp_path / "db.json")
    assert search(store, tracked_config(uri)).run() == "completed"

    client, parent, children = mlflow_runs(uri)
    run = store.get_run("r1")
    records = store.individuals("r1")
    assert parent.info.status == "FINISHED" and parent.info.run_name == "r1"
    assert parent.data.tags["automodel.status"] == "completed"
    assert parent.data.params["population"] == "4" and parent.data.params["generations"] == "2"
    assert parent.data.metrics["test_accuracy"] == pytest.approx(run["test_accuracy"])
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "generation_best")] == [0, 1]
    assert [m.value for m in client.get_metric_history(parent.info.run_id, "generation_best")] == pytest.approx(
        [g["best"] for g in store.generations("r1")]
    )

    assert len(children) == len(records) == 8
    by_position = {(int(c.data.tags["automodel.generation"]), int(c.data.tags["automodel.index"])): c for c in children}
    for record in records:
        child = by_position[(record["generation"], record["index"])]
        assert child.info.status == "FINISHED"
        assert child.data.tags["automodel.status"] == record["status"]
        assert child.data.tags["automodel.key"] == record["key"]
        assert child.data.params == {k: str(v) for k, v in genome_params(record["genome"]).items()}
        assert child.data.metrics["fitness"] == pytest.approx(record["fitness"])
        assert child.data.metrics["macs"] == record["macs"]
        curve = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in curve] == [p["epoch"] for p in record["history"]]
        assert [m.value for m in curve] == pytest.approx([p["val_accuracy"] for p in record["history"]])

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "model")}
    assert artifacts == {"model/model.pt", "model/model.onnx"}
    local = Path(client.download_artifacts(parent.info.run_id, "model/model.onnx", str(tmp_path / "down")))
    import onnx

    onnx.checker.check_model(onnx.load(str(local)))

    tracking = run["tracking"]
    assert tracking["run_id"] == parent.info.run_id and tracking["errors"] == 0 and tracking["error"] is None
    assert tracking["ui"] == f"mlflow ui --backend-store-uri {uri}"
    # Artifacts live beside the database, wherever the search process ran.
    assert (tmp_path / "mlflow" / "mlartifacts").is_dir()


def test_a_killed_search_resumed_logs_each_candidate_once(tmp_path, uri):
    (tmp_path / "mlflow").mkdir()
    store = Store(tmp_path / "db.json")
    killed = search(store, tracked_config(uri), die_after=5)
    with pytest.raises(SystemExit):
        killed.run()
    _client, _parent, before = mlflow_runs(uri)
    assert 0 < len(before) < 8

    assert search(store, tracked_config(uri)).run() == "completed"
    client, parent, children = mlflow_runs(uri)
    positions = [(c.data.tags["automodel.generation"], c.data.tags["automodel.index"]) for c in children]
    assert len(positions) == len(set(positions)) == len(store.individuals("r1"))
    assert parent.info.status == "FINISHED"
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert steps == sorted(set(steps)), "an epoch was logged twice"
    assert len(client.get_metric_history(parent.info.run_id, "generation_best")) == 2


def test_a_candidate_seen_again_at_a_higher_rung_adds_only_its_new_epochs(tmp_path, uri):
    (tmp_path / "mlflow").mkdir()
    tracker = MlflowTracker(uri, "tests", "r9")
    tracker.start({"config": Config().to_dict()}, [], [])
    genome = {
        "conv": [
            {"filters": 16, "kernel": 3, "activation": "relu", "downsample": "max", "batch_norm": True, "kind": "plain"}
        ],
        "dense": [128],
        "head": "flatten",
        "dropout": 0.1,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "weight_decay": 0.0,
    }
    record = {
        "generation": 0,
        "index": 3,
        "key": "k",
        "genome": genome,
        "summary": "s",
        "status": "partial",
        "fitness": 0.4,
        "epochs": 1,
        "history": [{"epoch": 1, "val_accuracy": 0.4, "train_loss": 1.5}],
    }
    tracker.candidate(record)
    tracker.candidate(record)  # the same record again (a replay): nothing new
    promoted = {
        **record,
        "status": "ok",
        "fitness": 0.6,
        "epochs": 3,
        "history": [
            {"epoch": 1, "val_accuracy": 0.4, "train_loss": 1.5},
            {"epoch": 2, "val_accuracy": 0.5, "train_loss": 1.2},
            {"epoch": 3, "val_accuracy": 0.6, "train_loss": 1.0},
        ],
    }
    tracker.candidate(promoted)

    client, _parent, children = mlflow_runs(uri)
    assert len(children) == 1
    child = children[0]
    assert child.data.tags["automodel.status"] == "ok"
    assert child.data.params["dense.0.units"] == "128" and child.data.params["conv.0.filters"] == "16"
    curve = client.get_metric_history(child.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in curve] == [(1, 0.4), (2, 0.5), (3, 0.6)]


def test_an_unreachable_tracker_is_reported_once_and_the_search_completes(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    store = Store(tmp_path / "db.json")
    messages: list[str] = []
    s = search(store, tracked_config("http://127.0.0.1:9"))  # the discard port: nothing listens
    s.reporter.message = messages.append
    assert s.run() == "completed"
    run = store.get_run("r1")
    assert run["test_accuracy"] is not None and len(store.individuals("r1")) == 8
    failures = [m for m in messages if "MLflow logging failed" in m]
    assert len(failures) == 1 and "the search goes on" in failures[0]
    assert run["tracking"]["errors"] >= 1 and run["tracking"]["run_id"] is None
    assert run["tracking"]["error"] == failures[0]


def test_a_failing_tracker_reports_once_and_a_hung_one_is_left_behind_in_bounded_time():
    class Flaky:
        def start(self, run, individuals, generations):
            return {"run_id": "x"}

        def candidate(self, record):
            raise ConnectionError("tracking server went away\nsecond line")

        def generation(self, record):
            pass

        def finish(self, run, run_dir):
            pass

    messages: list[str] = []
    tracker = BackgroundTracker(Flaky, messages.append, name="Flaky")
    tracker.start({}, [], [])
    for i in range(3):
        tracker.candidate({"index": i})
    assert tracker.close(10.0)
    assert tracker.errors == 3 and len(messages) == 1
    assert messages[0] == (
        "Flaky logging failed (ConnectionError: tracking server went away); the search goes on without it"
    )

    release = threading.Event()

    class Hung(Flaky):
        def candidate(self, record):
            release.wait(30)

    tracker = BackgroundTracker(Hung, messages.append, name="Hung")
    tracker.start({}, [], [])
    tracker.candidate({})
    started = time.monotonic()
    assert not tracker.close(0.5)
    assert time.monotonic() - started < 5
    assert messages[-1].startswith("Hung did not finish logging within 0.5 s")
    release.set()


def test_default_uri_is_the_environment_s_or_an_sqlite_file_beside_the_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    expected = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert tracking_uri("default", tmp_path / "automodel.json") == expected
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri("default", tmp_path / "automodel.json") == "http://127.0.0.1:5000"
    assert tracking_uri("sqlite:///x.db", tmp_path / "automodel.json") == "sqlite:///x.db"
    assert ui_command("http://127.0.0.1:5000") == "open http://127.0.0.1:5000"


def test_tracking_settings_are_validated_in_one_sentence(monkeypatch):
    with pytest.raises(ConfigError, match="mlflow = ' ' is not accepted"):
        Config(mlflow=" ").validate()
    with pytest.raises(ConfigError, match="mlflow_experiment = '' is not accepted"):
        Config(mlflow_experiment="").validate()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install -r requirements-mlflow.txt"):
        Config(mlflow="default").validate()
    Config().validate()  # off: MLflow is not needed


def test_the_command_line_flag_takes_an_optional_uri():
    from automodel.cli.commands import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "--mlflow"]).mlflow == "default"
    assert parser.parse_args(["run", "--mlflow", "sqlite:///m.db"]).mlflow == "sqlite:///m.db"
    assert parser.parse_args(["run"]).mlflow is None


def test_the_page_starts_a_tracked_search_and_says_where_it_is_logged(db, launched, new_page):
    at = new_page()
    at.sidebar.text_input(key="cfg_mlflow").input("default").run()
    at.sidebar.text_input(key="cfg_mlflow_experiment").input("photos").run()
    assert [e.value for e in at.sidebar.error] == []
    at.sidebar.button(key="start").click().run()
    (run,) = Store(db).list_runs()
    config = Config.from_dict(run["config"])
    assert config.mlflow == "default" and config.mlflow_experiment == "photos"

    at.sidebar.text_input(key="cfg_mlflow").input("not a uri").run()
    assert [e.value for e in at.sidebar.error] == [
        "mlflow = 'not a uri' is not accepted; give default or a tracking URI such as sqlite:///mlflow.db or "
        "http://127.0.0.1:5000, or leave it out."
    ]


def test_the_page_caption_names_the_tracking_store_and_its_failure():
    from automodel.page.views import tracking_caption

    assert tracking_caption({}) is None
    tracking = {
        "uri": "sqlite:///data/mlflow.db",
        "experiment": "automodel",
        "ui": "mlflow ui --backend-store-uri sqlite:///data/mlflow.db",
        "error": None,
    }
    assert tracking_caption({"tracking": tracking}) == (
        "Also logged to MLflow experiment *automodel* at `sqlite:///data/mlflow.db`; see it with "
        "`mlflow ui --backend-store-uri sqlite:///data/mlflow.db`."
    )
    failed = {**tracking, "error": "MLflow logging failed (ConnectionError: refused); the search goes on without it"}
    assert tracking_caption({"tracking": failed}).endswith("the search goes on without it.")
