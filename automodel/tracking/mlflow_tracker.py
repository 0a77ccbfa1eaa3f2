"""MLflow as a tracker: the run as an MLflow run, each candidate as a child run.

The search's run carries its settings as params, each generation's best, mean and worst fitness as
metrics by generation, and at the end the test accuracy and the final model (``model/model.pt``
and its ONNX export ``model/model.onnx``, with the test report). A candidate's child run carries
its genes as params, its validation accuracy and training loss per epoch as metrics by epoch, its
parameters, MACs, latency and training seconds, and its AutoModel status as a tag (its MLflow status
is FINISHED, or FAILED for a candidate that did not train).

Everything logged is tagged with the AutoModel run ID and the candidate's (generation, index), so a
resumed run — in another process, or days later — finds its MLflow runs and adds only what is new:
a candidate promoted to a higher rung gets its further epochs, nothing is logged twice.

Only :class:`mlflow.MlflowClient` is used, never MLflow's global active run, so a notebook's own
``mlflow.start_run()`` is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from automodel.tracking import Record

RUN_TAG = "automodel.run_id"
KIND_TAG = "automodel.kind"  # search or candidate
GENERATION_TAG = "automodel.generation"
INDEX_TAG = "automodel.index"
STATUS_TAG = "automodel.status"
EPOCHS_TAG = "automodel.epochs_logged"  # the learning curve's epochs already logged
PARENT_TAG = "mlflow.parentRunId"
DEFAULT_URI = "default"
TRAINED = ("ok", "partial", "pruned")  # candidate statuses whose child run is FINISHED, not FAILED
GENERATION_METRICS = ("best", "mean", "worst", "diversity", "failed", "pruned", "trained", "seconds")
RUN_METRICS = ("best_fitness", "test_accuracy", "final_seconds", "elapsed_s", "evaluated")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param's value
BATCH = 100  # params or tags per log_batch call (MLflow accepts at most 100 of each)
METRIC_BATCH = 1000


def tracking_uri(setting: str, store_path: str | Path) -> str:
    """The tracking URI a setting names: ``default`` is ``$MLFLOW_TRACKING_URI`` when set, else an
    SQLite file ``mlflow.db`` beside the store (MLflow's file store is deprecated)."""
    if setting != DEFAULT_URI:
        return setting
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(store_path).resolve().parent / 'mlflow.db'}"


def ui_command(uri: str) -> str:
    """The command that shows a tracking URI's runs in MLflow's UI."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


def genome_params(genome: dict) -> dict[str, Any]:
    """A genome's genes as flat params: ``blocks``, ``conv.0.filters`` …, ``dense.0.units`` …"""
    params: dict[str, Any] = {"blocks": len(genome.get("conv") or []), "dense_layers": len(genome.get("dense") or [])}
    for i, block in enumerate(genome.get("conv") or []):
        for name, value in block.items():
            params[f"conv.{i}.{name}"] = value
    for i, layer in enumerate(genome.get("dense") or []):
        for name, value in layer.items() if isinstance(layer, dict) else [("units", layer)]:
            params[f"dense.{i}.{name}"] = value
    for name, value in genome.items():
        if name not in ("conv", "dense"):
            params[name] = value
    return params


def config_params(config: dict) -> dict[str, Any]:
    """A run's settings as params (the search space as one JSON value)."""
    params = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in config.items() if k != "space"}
    params["space"] = json.dumps(config.get("space") or {}, sort_keys=True)
    return params


class MlflowTracker:
    """Logs one AutoModel run to an MLflow tracking store."""

    def __init__(self, uri: str, experiment: str, run_id: str):
        from mlflow import MlflowClient  # imported here: MLflow is optional and slow to import

        self.uri, self.experiment_name, self.run_id = uri, experiment, run_id
        self.client = MlflowClient(tracking_uri=uri)
        self.parent = ""  # the search's MLflow run, once started
        self.experiment_id = ""
        self.children: dict[tuple[int, int], tuple[str, int, str]] = {}  # (gen, index) → (MLflow run, epochs, status)
        self.generations_logged: set[int] = set()

    # ------------------------------------------------------------------ the run
    def start(self, run: Record, individuals: Sequence[Record], generations: Sequence[Record]) -> dict:
        """Open (or find again) the run's MLflow run, then log whatever of the records is not there yet."""
        self.experiment_id = self._experiment()
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{RUN_TAG}` = '{self.run_id}' and tags.`{KIND_TAG}` = 'search'", max_results=1
        )
        if found:
            self.parent = found[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
            self._find_children()
            self.generations_logged = {
                int(m.step) for m in self.client.get_metric_history(self.parent, "generation_best")
            }
        else:
            self.parent = self.client.create_run(
                self.experiment_id,
                run_name=self.run_id,
                tags={
                    RUN_TAG: self.run_id,
                    KIND_TAG: "search",
                    "automodel.dataset": str(run.get("config", {}).get("dataset", "")),
                },
            ).info.run_id
        self._log_params(self.parent, config_params(run.get("config") or {}))
        for record in individuals:
            self.candidate(record)
        for record in generations:
            self.generation(record)
        return {
            "uri": self.uri,
            "experiment": self.experiment_name,
            "experiment_id": self.experiment_id,
            "run_id": self.parent,
        }

    def generation(self, record: Record) -> None:
        generation = int(record["generation"])
        if generation in self.generations_logged:
            return
        self._log_metrics(
            self.parent,
            {f"generation_{name}": record[name] for name in GENERATION_METRICS if record.get(name) is not None},
            step=generation,
        )
        self.generations_logged.add(generation)

    def finish(self, run: Record, run_dir: Path) -> None:
        status = run.get("status")
        self._log_metrics(
            self.parent, {name: run[name] for name in RUN_METRICS if isinstance(run.get(name), (int, float))}, step=0
        )
        tags = {STATUS_TAG: str(status), "automodel.best_summary": str(run.get("best_summary") or "")}
        if run.get("final_start"):
            tags["automodel.final_start"] = str(run["final_start"])
        self._log_tags(self.parent, tags)
        for point in run.get("final_history") or []:
            if point.get("train_loss") is not None:
                self._log_metrics(self.parent, {"final_train_loss": point["train_loss"]}, step=int(point["epoch"]))
        if status == "completed":
            self._log_model(run, run_dir)
        mlflow_status = {"completed": "FINISHED", "stopped": "KILLED"}.get(str(status), "FAILED")
        self.client.set_terminated(self.parent, status=mlflow_status)

    # ------------------------------------------------------------------ candidates
    def candidate(self, record: Record) -> None:
        """One candidate's child run; a record seen again adds only the epochs trained since."""
        key = (int(record["generation"]), int(record["index"]))
        history = [p for p in record.get("history") or [] if p.get("epoch") is not None]
        status = str(record["status"])
        known = self.children.get(key)
        if known is not None and known[1] >= len(history) and known[2] == status:
            return
        if known is None:
            child = self.client.create_run(
                self.experiment_id,
                run_name=f"gen {key[0]} · candidate {key[1]}",
                tags={
                    PARENT_TAG: self.parent,
                    RUN_TAG: self.run_id,
                    KIND_TAG: "candidate",
                    GENERATION_TAG: str(key[0]),
                    INDEX_TAG: str(key[1]),
                    "automodel.key": record["key"],
                    "automodel.summary": record.get("summary", ""),
                    "automodel.cached": str(bool(record.get("cached"))),
                },
            ).info.run_id
            self._log_params(child, genome_params(record["genome"]))
            logged = 0
        else:
            child, logged = known[0], known[1]
            self.client.update_run(child, status="RUNNING")
        for point in history[logged:]:
            self._log_metrics(
                child,
                {
                    name: point[name]
                    for name in ("val_accuracy", "train_loss", "seconds")
                    if point.get(name) is not None
                },
                step=int(point["epoch"]),
            )
        self._log_metrics(
            child,
            {
                name: record[name]
                for name in ("fitness", "params", "macs", "latency_ms", "seconds", "epochs", "inherited")
                if isinstance(record.get(name), (int, float))
            },
            step=len(history),
        )
        self._log_tags(
            child,
            {
                STATUS_TAG: status,
                EPOCHS_TAG: str(len(history)),
                "automodel.reason": str(record.get("reason") or "")[:5000],
            },
        )
        self.client.set_terminated(child, status="FINISHED" if status in TRAINED else "FAILED")
        self.children[key] = (child, len(history), status)

    def _find_children(self) -> None:
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], f"tags.`{PARENT_TAG}` = '{self.parent}'", max_results=1000, page_token=token
            )
            for child in page:
                tags = child.data.tags
                if GENERATION_TAG in tags and INDEX_TAG in tags:
                    self.children[(int(tags[GENERATION_TAG]), int(tags[INDEX_TAG]))] = (
                        child.info.run_id,
                        int(tags.get(EPOCHS_TAG, 0)),
                        tags.get(STATUS_TAG, ""),
                    )
            token = page.token
            if not token:
                return

    # ------------------------------------------------------------------ MLflow calls
    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            # Beside the database, not in the working directory of whichever process creates it.
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        # Tagged as model training, so that MLflow 3's UI opens it on its runs, not on GenAI traces.
        return self.client.create_experiment(
            self.experiment_name, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"}
        )

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Params not yet on the run (params cannot change in MLflow: a resume keeps the first value)."""
        from mlflow.entities import Param

        have = self.client.get_run(run_id).data.params
        new = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items() if k not in have]
        for i in range(0, len(new), BATCH):
            self.client.log_batch(run_id, params=new[i : i + BATCH])

    def _log_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, tags=items[i : i + BATCH])

    def _log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), METRIC_BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + METRIC_BATCH])

    def _log_model(self, run: Record, run_dir: Path) -> None:
        from automodel.training.export import export_onnx

        checkpoint = Path(run.get("best_model_path") or run_dir / "best.pt")
        if not checkpoint.is_file():
            return
        with tempfile.TemporaryDirectory() as folder:
            shutil.copyfile(checkpoint, Path(folder) / "model.pt")
            self.client.log_artifact(self.parent, str(Path(folder) / "model.pt"), "model")
            onnx = export_onnx(checkpoint, Path(folder) / "model.onnx")
            self.client.log_artifact(self.parent, str(onnx), "model")
            if run.get("test_report"):
                report = Path(folder) / "test_report.json"
                report.write_text(json.dumps(run["test_report"], indent=2, default=str))
                self.client.log_artifact(self.parent, str(report))
