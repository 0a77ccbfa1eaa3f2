"""The Python surface of AutoModel, for notebooks and scripts; the command line is built on it.

    import automodel
    run = automodel.search("digits", budget="30s")     # runs here, with progress bars
    run.best.test_accuracy, run.best.model()           # the final model, loaded
    run.records()                                      # every candidate, as a DataFrame
    automodel.predict(run.best.model_path, "photos/")

    run = automodel.search("photos/", budget="1h", background=True)   # the page's subprocess
    run.wait(timeout=60); run.stop(); run.resume(background=True)

``search`` takes any setting of :class:`~automodel.config.Config` by name (``population=16``,
``image_size=128``, ``objectives=["accuracy", "params"]``); a budget plans the ones it is not given,
exactly as ``automodel run`` does. Runs are read from the store (``db``, by default the
``AUTOMODEL_DB`` environment variable or ``data/automodel.json``), so a notebook can open and follow a
run the page started: ``automodel.runs()``, ``automodel.open_run(run_id)``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automodel.config import PLANNED, Config
from automodel.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    StoreError,
    UserFacingError,
    first_line,
    no_run_message,
)
from automodel.process import jobs
from automodel.store import ACTIVE_STATUSES, Store, default_db_path
from automodel.store.records import CandidateRecord, RunRecord

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from automodel.evolution.genome import Genome
    from automodel.evolution.loop import Reporter
    from automodel.training.predict import Prediction

DEFAULT_BUDGET = "5m"  # a search's budget when neither a budget nor any planned setting is given


class RunError(UserFacingError, RuntimeError):
    """A run cannot do what was asked (no model yet, still running, not found)."""


def configure(
    settings: Mapping[str, Any], given: Iterable[str] | None = None, *, default_budget: bool = True
) -> Config:
    """The config for ``settings`` (any Config fields; ``budget_s`` in seconds or a duration such as
    "5m"). ``given`` names the settings a person chose (by default every key of ``settings``): a
    budget's plan keeps those of PLANNED; with no budget and none of PLANNED given, the run gets
    ``DEFAULT_BUDGET`` (unless ``default_budget`` is false: a settings file that says "no budget")."""
    from automodel.evolution.budget import parse_duration

    values = dict(settings)
    chosen = set(values) - {"overrides"} if given is None else set(given)
    if values.get("budget_s") is not None:
        values["budget_s"] = parse_duration(values["budget_s"])
    elif default_budget and not chosen & set(PLANNED):
        values["budget_s"] = parse_duration(DEFAULT_BUDGET)
    values["overrides"] = sorted(chosen & set(PLANNED))
    return Config.from_dict(values)


def claim(store: Store, run_id: str, config: Config) -> bool:
    """Record a new run (one active run per store). False when the page already claimed it and a
    stop came before this process started (the run is then marked stopped)."""
    check_run_id(run_id)
    if config.warm_start:
        from automodel.evolution.warm_start import warm_start_genomes

        warm_start_genomes(store, config.warm_start, limit=1)  # the runs named exist and trained something
    with store.locked():
        existing = store.get_run(run_id)
        if existing is None:
            store.claim_run_slot(run_id, config.to_dict(), jobs.is_alive, total_generations=config.generations)
        elif not jobs.is_new_claim(store, existing):
            raise RunError(f"run {run_id} already exists in {store.path}; use `resume {run_id}` or another run id.")
        elif existing.get("stop_requested"):
            store.update_run(run_id, status="stopped", ended_at=time.time())
            return False
    return True


def execute(
    store: Store, run_id: str, config: Config, *, data_dir: str | Path = "data", reporter: Reporter | None = None
) -> str:
    """Run (or continue) the claimed search ``run_id`` in this process to its end; returns its status.
    Bad data or settings raise their one-sentence error with the run marked failed; so does a store or
    disk failure, as :class:`StoreError`."""
    store.update_run(run_id, data_dir=str(Path(data_dir).resolve()))
    try:
        factory = evaluator_factory(config)
    except UserFacingError as exc:  # e.g. backend ray without Ray: the claimed run must not stay "running"
        mark_failed(store, run_id, str(exc))
        raise
    from automodel.evolution.loop import Search

    search = Search(config, store, run_id, data_dir=data_dir, reporter=reporter, evaluator_factory=factory)
    try:
        return search.run()
    except (DatasetError, ConfigError) as exc:
        mark_failed(store, run_id, str(exc))
        raise
    except (StoreError, CheckpointError, OSError) as exc:
        # e.g. a full disk: what was recorded stays as it was; the run is marked failed if it can be
        reason = first_line(exc, limit=10_000)
        mark_failed(store, run_id, reason)
        raise StoreError(f"run {run_id} failed: {reason}") from exc
    except BaseException as exc:
        mark_failed(store, run_id, f"{type(exc).__name__}: {exc}")
        raise


def evaluator_factory(config: Config):
    """None: the search's default, local evaluator; the Ray one for ``backend="ray"``."""
    if config.backend != "ray":
        return None
    try:
        from automodel.evaluators.ray_cluster import ray_evaluator_factory
    except ImportError:
        raise ConfigError(
            "backend 'ray' needs Ray: pip install -r requirements-ray.txt (or use backend local)."
        ) from None
    return ray_evaluator_factory(config)


def pareto_members(records: Sequence[CandidateRecord], objectives: list[str]) -> list[dict[str, Any]]:
    """The non-dominated fully trained candidates of ``records``, as ``show --json`` gives them."""
    from automodel.evolution.pareto import pareto_front

    return [
        {
            "key": r["key"],
            "fitness": r["fitness"],
            "params": r.get("params"),
            "macs": r.get("macs"),
            "latency_ms": r.get("latency_ms"),
            "summary": r.get("summary"),
            "generation": r["generation"],
            "index": r["index"],
        }
        for r in pareto_front(records, objectives)
    ]


def mark_failed(store: Store, run_id: str, reason: str) -> None:
    try:
        store.update_run(run_id, status="failed", pid=None, reason=reason)
    except StoreError:
        pass  # the store itself cannot be written (full disk); `list` will show it interrupted


def check_run_id(run_id: str) -> None:
    if not run_id or len(run_id) > 100 or not all(ch.isalnum() or ch in "-_." for ch in run_id) or run_id[0] == ".":
        raise ConfigError(f"run id {run_id!r} is not accepted; use up to 100 letters, digits, '-', '_' or '.'.")


def no_run(run_id: str, store: Store) -> RunError:
    return RunError(no_run_message(run_id, store.path))


# ------------------------------------------------------------------------------ the surface


@dataclass(frozen=True)
class Best:
    """A run's best network: its genome, validation fitness, test accuracy (once the final model is
    trained) and checkpoint."""

    genome: Genome
    fitness: float | None
    test_accuracy: float | None
    model_path: Path | None
    summary: str

    def model(self, device: str = "cpu") -> torch.nn.Module:
        """The saved model (``load_model``), in eval mode."""
        if self.model_path is None or not self.model_path.is_file():
            raise RunError("this run has no saved model yet; wait for its first candidate to finish.")
        from automodel.training.export import load_model

        return load_model(self.model_path, map_location=device)


class Run:
    """One search in a store: its state read afresh on every access."""

    def __init__(self, run_id: str, db: str | Path | None = None):
        self.store = Store(db if db is not None else default_db_path())
        self.run_id = run_id
        if self.store.get_run(run_id) is None:
            raise no_run(run_id, self.store)

    def __repr__(self) -> str:
        record = self.record
        best = record.get("best_fitness")
        return (
            f"Run({self.run_id!r}, status={record.get('status')!r}, generations="
            f"{record.get('generations_done', 0)}, best={best if best is None else round(best, 4)})"
        )

    @property
    def record(self) -> RunRecord:
        """The run's record as stored (liveness reconciled: a run whose process died reads interrupted)."""
        jobs.reconcile(self.store)
        return self.store.get_run(self.run_id) or {}

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def config(self) -> Config:
        return Config.from_dict(self.record["config"])

    @property
    def best(self) -> Best | None:
        """The best candidate so far (None before the first finishes)."""
        record = self.record
        genome = record.get("best_genome")
        if not genome:
            return None
        from automodel.evolution.genome import Genome

        path = record.get("best_model_path")
        return Best(
            Genome.from_dict(genome),
            record.get("best_fitness"),
            record.get("test_accuracy"),
            Path(path) if path else None,
            record.get("best_summary") or "",
        )

    def records(self) -> pd.DataFrame:
        """Every candidate, one row each (the columns of ``export --format csv``)."""
        import io

        import pandas as pd

        from automodel.store.csv_export import records_csv

        return pd.read_csv(io.BytesIO(records_csv(self.store.individuals(self.run_id))))

    def generations(self) -> pd.DataFrame:
        """One row per generation: best, mean and worst fitness, diversity, seconds."""
        import pandas as pd

        return pd.DataFrame(self.store.generations(self.run_id))

    def pareto(self) -> list[dict[str, Any]]:
        """With several objectives, the non-dominated fully trained candidates (``show --json``'s ``pareto``)."""
        return pareto_members(self.store.individuals(self.run_id), self.config.objectives)

    def wait(self, timeout: float | None = None, poll_s: float = 1.0) -> str:
        """Wait until the run is no longer active (or ``timeout`` seconds pass); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.status in ACTIVE_STATUSES and (deadline is None or time.monotonic() < deadline):
            time.sleep(poll_s)
            jobs.reap_children()
        return self.status

    def stop(self, timeout: float = 10.0) -> str:
        """Ask the run to stop and wait up to ``timeout`` seconds for it; returns its status."""
        if self.status not in ACTIVE_STATUSES:
            return self.status
        return str(jobs.request_stop(self.store, self.run_id, timeout_s=timeout)["status"])

    def resume(self, *, background: bool = False, progress: bool = True) -> Run:
        """Continue a stopped, interrupted or failed run: here (to its end) or in a background process."""
        record = self.record
        data_dir = Path(record.get("data_dir") or "data")
        if background:
            jobs.resume_search(self.store, self.run_id, data_dir=data_dir, cwd=Path.cwd())
            return self
        with self.store.locked():
            record = self.store.get_run(self.run_id) or {}
            if not jobs.is_claim(record):
                record = jobs.claim_resume(self.store, self.run_id)
            if record.get("stop_requested"):
                self.store.update_run(self.run_id, status="stopped", ended_at=time.time())
                return self
        execute(
            self.store, self.run_id, Config.from_dict(record["config"]), data_dir=data_dir, reporter=_reporter(progress)
        )
        return self

    def export(self, path: str | Path | None = None, *, format: str = "pt", candidate: str | None = None) -> Path:
        """Write the best model (or a finalized ``candidate``) as ``pt`` or ``onnx``, or the candidate
        records as ``csv``; returns the path written."""
        import shutil

        if format not in ("pt", "onnx", "csv"):
            raise ConfigError(f"format {format!r} is not accepted; use pt, onnx or csv.")
        record = self.record
        if format == "csv":
            from automodel.store.csv_export import records_csv

            out = Path(path or run_folder(self) / "candidates.csv")
            _write(out, records_csv(self.store.individuals(self.run_id)))
            return out
        if candidate:
            entry = (record.get("finalized") or {}).get(candidate)
            if not entry or not Path(entry["path"]).is_file():
                raise RunError(
                    f"candidate {candidate} of run {self.run_id} is not finalized yet; run "
                    f"`automodel finalize {self.run_id} --candidate {candidate}` first."
                )
            source = Path(entry["path"])
        else:
            source = Path(record.get("best_model_path") or "")
        if not source.is_file():
            raise RunError(f"run {self.run_id} has no saved best model yet; wait for its first candidate to finish.")
        from automodel.training.export import export_onnx, read_checkpoint

        read_checkpoint(source)
        try:
            if format == "pt":
                out = Path(path or source)
                if out.resolve() != source.resolve():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, out)
                return out
            return export_onnx(source, path or source.with_suffix(".onnx"))
        except OSError as exc:
            raise RunError(f"cannot write {path}: {exc.strerror or exc}; give a writable file path.") from None

    def predict(self, images: str | Path | Iterable[str | Path], *, top: int = 3) -> list[Prediction]:
        """The best model's answers for image files or folders (``automodel.predict``)."""
        best = self.best
        if best is None or best.model_path is None:
            raise RunError(f"run {self.run_id} has no saved best model yet; wait for its first candidate to finish.")
        from automodel.training.predict import predict

        return predict(best.model_path, images, top=top)


def search(
    dataset: str | Path,
    *,
    budget: str | float | None = None,
    db: str | Path | None = None,
    run_id: str | None = None,
    background: bool = False,
    progress: bool = True,
    data_dir: str | Path = "data",
    **settings: Any,
) -> Run:
    """Start a search on ``dataset`` (a built-in name, an image folder or a zip of one).

    ``budget`` ("30s", "5m", "1h" or seconds) covers the whole run, final training included; any
    setting of :class:`~automodel.config.Config` may be given by name and is kept by the plan. The
    search runs here to its end (progress bars on stderr unless ``progress=False``), or with
    ``background=True`` in its own process, as the page starts it (``Run.wait``, ``Run.stop``)."""
    store = Store(db if db is not None else default_db_path())
    dataset = str(dataset)
    from automodel.data import is_builtin_dataset

    if not is_builtin_dataset(dataset) and Path(dataset).expanduser().exists():
        dataset = str(Path(dataset).expanduser().resolve())  # a resume finds it from any folder
    values = {**settings, "dataset": dataset}
    if budget is not None:
        values["budget_s"] = budget
    config = configure(values, given=set(settings) | ({"budget_s"} if budget is not None else set()))
    run_id = run_id or jobs.new_run_id()
    check_run_id(run_id)
    if background:
        jobs.start_search(store, run_id, config.to_dict(), data_dir=Path(data_dir).resolve(), cwd=Path.cwd())
        return Run(run_id, store.path)
    if claim(store, run_id, config):
        execute(store, run_id, config, data_dir=data_dir, reporter=_reporter(progress))
    return Run(run_id, store.path)


def runs(db: str | Path | None = None) -> list[Run]:
    """Every run in the store, oldest first."""
    store = Store(db if db is not None else default_db_path())
    return [Run(r["run_id"], store.path) for r in jobs.reconcile(store)]


def open_run(run_id: str, db: str | Path | None = None) -> Run:
    """The run ``run_id`` of the store (one sentence when there is none)."""
    return Run(run_id, db)


def run_folder(run: Run) -> Path:
    return jobs.run_dir_for(run.store, run.run_id)


def _reporter(progress: bool) -> Reporter | None:
    if not progress:
        return None
    from automodel.cli.progress import BarReporter

    return BarReporter(sys.stderr)


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror or exc}; give a writable file path.") from None
