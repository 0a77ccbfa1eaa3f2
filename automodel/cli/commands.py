"""Command line: ``python -m automodel run|resume|stop|list|show|export``.

Exit codes: 0 success, 1 a run that failed, 2 bad input (one sentence on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from automodel import api
from automodel.config import GROUPS, Config, read_settings_file, setting_help
from automodel.errors import ConfigError, UserFacingError
from automodel.evolution.genome import Genome
from automodel.process import jobs
from automodel.process.jobs import new_run_id
from automodel.store import ACTIVE_STATUSES, Store, StoreError, default_db_path
from automodel.store.records import RunRecord

# The modules that need torch are imported where they are used, so that `stop`, `list` and
# `show` answer at once instead of paying seconds for importing torch.

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UserError(UserFacingError):
    """Bad input a person caused, found by the command line itself: printed as one line, exit code 2."""


def _whole(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} takes auto or a whole number, not {text!r}") from None


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _duration(text: str) -> float:
    from automodel.evolution.budget import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _auto_or_whole(flag: str):
    return lambda text: text if text == "auto" else _whole(text, flag)


def run_flags() -> dict[str, dict]:
    """The flags of `run`, one per Config field (``--population`` for ``population``), with their
    argument parsing derived from the field's type: the config is the one place they are defined.
    A field of a type with no parser here is an error at once, naming the field."""
    hints = typing.get_type_hints(Config)
    flags = {}
    for f in fields(Config):
        if f.name in ("space", "overrides"):  # the space comes from --config; overrides from what is given
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        plain = (
            [t for t in typing.get_args(kind) if t is not type(None)]
            if typing.get_origin(kind) in (types.UnionType, typing.Union)
            else [kind]
        )
        if f.name == "budget_s":
            flags[f.name] = {"flag": "--budget", "type": _duration, "metavar": "DURATION"}
        elif f.name == "mlflow":
            flags[f.name] = {"flag": flag, "type": str, "nargs": "?", "const": "default", "metavar": "URI"}
        elif plain == [bool]:
            flags[f.name] = {"flag": flag, "action": argparse.BooleanOptionalAction}
        elif sorted(plain, key=str) == sorted([int, str], key=str):
            flags[f.name] = {"flag": flag, "type": _auto_or_whole(flag)}
        elif kind == list[str]:
            flags[f.name] = {"flag": flag, "type": _comma_list}
        elif len(plain) == 1 and plain[0] in (str, int, float):
            flags[f.name] = {"flag": flag, "type": plain[0]}
        else:
            raise TypeError(
                f"Config.{f.name} has type {kind}, which the command line cannot parse; add it to run_flags"
            )
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automodel", description="Evolve a CNN for an image dataset.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", type=Path, default=default_db_path(), help="TinyDB file (default data/automodel.json)")

    run = sub.add_parser("run", help="start a search")
    common(run)
    run.add_argument("--run-id", help="the run's name (default: run-DATE-TIME and four random hex digits)")
    run.add_argument("--config", type=Path, help="JSON file of settings (flags override it)")
    run.add_argument("--data-dir", type=Path, default=Path("data"), help="where datasets are read or downloaded")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    groups = {group: run.add_argument_group(f"{group} settings") for group in GROUPS}
    meta = {f.name: f.metadata for f in fields(Config)}
    for name, spec in run_flags().items():
        options = {k: v for k, v in spec.items() if k != "flag"}
        groups[meta[name]["group"]].add_argument(
            spec["flag"], dest=name, default=None, help=setting_help(name), **options
        )

    resume = sub.add_parser("resume", help="continue a stopped or interrupted search")
    common(resume)
    resume.add_argument("run_id")
    resume.add_argument("--data-dir", type=Path, default=None, help="default: the folder the run started with")
    resume.add_argument("--quiet", action="store_true")

    stop = sub.add_parser("stop", help="ask a running search to stop")
    common(stop)
    stop.add_argument("run_id")
    stop.add_argument("--timeout", type=float, default=10.0)

    lst = sub.add_parser("list", help="list runs")
    common(lst)
    lst.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="show one run")
    common(show)
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="write the best model as .pt or ONNX, or the candidate records as CSV")
    common(export)
    export.add_argument("run_id")
    export.add_argument("--candidate", metavar="KEY", help="a finalized candidate instead of the run's best")
    export.add_argument("--format", choices=("pt", "onnx", "csv"), default="pt")
    export.add_argument("--out", type=Path)
    predict = sub.add_parser(
        "predict",
        help="classify image files with a saved model",
        description="Classify image files (or folders of them) with a saved model, "
        "read as training read its images (EXIF orientation, mode, size).",
    )
    common(predict)
    predict.add_argument("model", help="a .pt checkpoint saved by AutoModel, or a run ID (its best model)")
    predict.add_argument("images", nargs="+", help="image files or folders of them")
    predict.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    predict.add_argument("--csv", type=Path, help="write one row per image to this CSV file instead")

    finalize = sub.add_parser("finalize", help="train a chosen candidate on train + validation and test it")
    common(finalize)
    finalize.add_argument("run_id")
    finalize.add_argument("--candidate", metavar="KEY", required=True, help="the candidate's key (show --json)")
    finalize.add_argument("--data-dir", type=Path, default=None, help="default: the folder the run started with")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserFacingError as exc:
        print(f"automodel: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


# ---------------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = Store(args.db)
    run_id = args.run_id or new_run_id()
    api.check_run_id(run_id)
    from automodel.data import is_builtin_dataset

    if not is_builtin_dataset(config.dataset) and Path(config.dataset).expanduser().exists():
        config.dataset = str(Path(config.dataset).expanduser().resolve())  # resume finds it from any folder
    if not api.claim(store, run_id, config):  # Stop was pressed between the page's claim and this process
        print(f"run {run_id}: stopped before it started")
        return EXIT_OK
    return _execute(store, run_id, config, args)


def cmd_resume(args: argparse.Namespace) -> int:
    store = Store(args.db)
    with store.locked():
        run = _get_run(store, args.run_id)
        if not jobs.is_claim(run):  # the page claims before launching; a terminal does not
            run = jobs.claim_resume(store, args.run_id)
        if run.get("stop_requested"):  # Stop was pressed before this process started
            store.update_run(args.run_id, status="stopped", ended_at=time.time())
            print(f"run {args.run_id}: stopped before it resumed")
            return EXIT_OK
    if args.data_dir is None:
        args.data_dir = Path(run.get("data_dir") or "data")
    return _execute(store, args.run_id, Config.from_dict(run["config"]), args)


def _execute(store: Store, run_id: str, config: Config, args: argparse.Namespace) -> int:
    reporter = None
    if not args.quiet:
        from automodel.cli.progress import BarReporter

        reporter = BarReporter()
    try:
        status = api.execute(store, run_id, config, data_dir=args.data_dir, reporter=reporter)
    except StoreError as exc:
        print(f"automodel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print_outcome(_get_run(store, run_id), store)
    return EXIT_OK if status in ("completed", "stopped") else EXIT_FAILED


def cmd_stop(args: argparse.Namespace) -> int:
    store = Store(args.db)
    run = _get_run(store, args.run_id)
    if run["status"] not in ACTIVE_STATUSES:
        print(f"run {args.run_id} is not running (status: {run['status']}).")
        return EXIT_OK
    run = jobs.request_stop(store, args.run_id, timeout_s=args.timeout)
    print(f"run {args.run_id}: {run['status']}")
    return EXIT_OK if run["status"] not in ACTIVE_STATUSES else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    store = Store(args.db)
    runs = [run_summary(r) for r in jobs.reconcile(store)]
    if args.json:
        print(json.dumps(runs, indent=2))
        return EXIT_OK
    if not runs:
        print(f"no runs in {store.path}")
        return EXIT_OK
    print(f"{'run':32} {'status':12} {'gens':>7} {'evaluated':>9} {'best':>7} {'test':>7}  dataset")
    for r in runs:
        print(
            f"{r['run_id']:32} {r['status']:12} {r['generations_done']:>3}/{r['generations']:<3} "
            f"{r['evaluated']:>9} {_fmt(r['best_fitness']):>7} {_fmt(r['test_accuracy']):>7}  {r['dataset']}"
        )
    return EXIT_OK


def candidates_per_node(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many candidates each Ray node trained (copies not counted); empty for a local run."""
    counts: dict[str, int] = {}
    for r in records:
        if r.get("node") and not r.get("cached"):
            counts[r["node"]] = counts.get(r["node"], 0) + 1
    return dict(sorted(counts.items()))


def cmd_show(args: argparse.Namespace) -> int:
    store = Store(args.db)
    _get_run(store, args.run_id)
    jobs.reconcile(store)
    run = _get_run(store, args.run_id)
    summary = run_summary(run)
    summary["generation_records"] = store.generations(args.run_id)
    summary["config"] = run.get("config")
    summary["best_genome"] = run.get("best_genome")
    summary["reason"] = run.get("reason", "")
    if run.get("plan"):
        summary["plan"] = run["plan"]
    if run.get("data"):
        summary["data"] = run["data"]  # classes with counts, input shape, split sizes, skipped and ignored
    if run.get("tracking"):
        summary["tracking"] = run["tracking"]  # where the run is mirrored (MLflow) and what failed there
    nodes = candidates_per_node(store.individuals(args.run_id))
    if nodes:
        summary["nodes"] = nodes  # a cluster run: how many candidates each Ray node trained
    objectives = (run.get("config") or {}).get("objectives") or ["accuracy"]
    if len(objectives) > 1:
        summary["objectives"] = objectives
        summary["pareto"] = api.pareto_members(store.individuals(args.run_id), objectives)
        summary["finalized"] = run.get("finalized") or {}
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"run {summary['run_id']} — {summary['status']} on {summary['dataset']}")
    if plan := run.get("plan"):
        from automodel.evolution.budget import Plan

        print(f"budget {Plan.from_dict(plan).summary()}")
    if run.get("input_shape"):
        from automodel.page.views import dataset_caption

        print(f"data: {dataset_caption(run)}")
    print(f"generations {summary['generations_done']}/{summary['generations']}, {summary['evaluated']} candidates")
    for g in summary["generation_records"]:
        print(
            f"  gen {g['generation']:>3}: best {g['best']:.4f}  mean {g['mean']:.4f}  worst {g['worst']:.4f}  "
            f"diversity {g['diversity']:.2f}  {g['seconds']:.1f}s"
        )
    if best := run.get("best_genome"):
        print(
            f"best: {run.get('best_summary')}  (validation {_fmt(run.get('best_fitness'))}, "
            f"test {_fmt(run.get('test_accuracy'))})"
        )
        shape = run.get("input_shape")
        if shape:
            _print_layers(Genome.from_dict(best), shape, len(run.get("classes") or []))
    if nodes:
        print("trained on: " + ", ".join(f"{node} ({count})" for node, count in nodes.items()))
    tracking = run.get("tracking")
    if tracking:
        logged = f"run {tracking['run_id']}" if tracking.get("run_id") else "a run"
        print(
            f"MLflow: {logged} in experiment {tracking.get('experiment')} at {tracking.get('uri')}; "
            f"see {tracking.get('ui')}"
        )
        if tracking.get("error"):
            print(f"MLflow logging: {tracking['error']}")
    if summary["reason"]:
        print(f"note: {summary['reason']}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    store = Store(args.db)
    _get_run(store, args.run_id)
    if args.format == "csv":
        return _export_csv(store, args)
    print(api.Run(args.run_id, args.db).export(args.out, format=args.format, candidate=args.candidate))
    return EXIT_OK


def _export_csv(store: Store, args: argparse.Namespace) -> int:
    """The run's candidate records: the same CSV as the page's download; to stdout without --out."""
    from automodel.store.csv_export import records_csv

    data = records_csv(store.individuals(args.run_id))
    if args.out is None:
        sys.stdout.write(data.decode("utf-8"))
        return EXIT_OK
    try:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(data)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}; give a writable file path.") from None
    print(args.out)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    model = Path(args.model).expanduser()
    if not model.is_file():
        if model.suffix or not args.model.strip() or not Path(args.db).is_file():
            raise UserError(
                f"model {args.model} is neither a checkpoint file nor a run ID in {args.db}; give "
                f"the .pt file of a saved model or the ID of a run (`automodel list`)."
            )
        run = _get_run(Store(args.db), args.model)
        saved = run.get("best_model_path")
        if not saved or not Path(saved).is_file():
            raise UserError(f"run {args.model} has no saved best model yet; wait for its first candidate to finish.")
        model = Path(saved)
    from automodel.training.predict import predict

    predictions = predict(model, args.images, top=args.top)
    if args.csv is not None:
        try:
            args.csv.parent.mkdir(parents=True, exist_ok=True)
            with open(args.csv, "w", newline="", encoding="utf-8") as out:
                _prediction_rows(out, predictions, args.top)
        except OSError as exc:
            raise UserError(f"cannot write {args.csv}: {exc.strerror or exc}; give a writable file path.") from None
        print(args.csv)
        return EXIT_OK
    for p in predictions:
        answer = ", ".join(f"{label} {prob:.3f}" for label, prob in p.top) if p.top else f"error: {p.error}"
        print(f"{p.path}: {answer}")
    return EXIT_OK


def _prediction_rows(out, predictions, top: int) -> None:
    import csv

    writer = csv.writer(out)
    ranks = [f"{name}_{k}" for k in range(2, top + 1) for name in ("label", "confidence")]
    writer.writerow(["path", "label", "confidence", *ranks, "error"])
    for p in predictions:
        cells = [str(v) if isinstance(v, str) else f"{v:.6f}" for pair in p.top for v in pair]
        writer.writerow([p.path, *cells, *[""] * (2 * top - len(cells)), p.error])


def cmd_finalize(args: argparse.Namespace) -> int:
    from automodel.process.finalize import finalize_candidate

    store = Store(args.db)
    _get_run(store, args.run_id)
    outcome = finalize_candidate(store, args.run_id, args.candidate, data_dir=args.data_dir)
    if outcome["status"] == "stopped":
        print(f"run {args.run_id}: finalizing {args.candidate} stopped")
        return EXIT_OK
    verb = {"done": "already finalized", "waited": "finalized by another process", "finalized": "finalized"}
    print(f"candidate {outcome['key']}: {verb[outcome['status']]}; test accuracy {outcome['test_accuracy']:.4f}")
    print(f"model: {outcome['path']}")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "resume": cmd_resume,
    "stop": cmd_stop,
    "list": cmd_list,
    "show": cmd_show,
    "export": cmd_export,
    "predict": cmd_predict,
    "finalize": cmd_finalize,
}

# ---------------------------------------------------------------------------------- helpers


def load_config(args: argparse.Namespace) -> Config:
    """The config file, then the flags. A budget's plan keeps the planned settings the person gave
    (by a flag, or in a file that does not list its ``overrides``); with no budget anywhere and none
    of them given, the run gets the default budget."""
    settings = read_settings_file(args.config) if args.config else {}
    base = Config.from_dict(settings).to_dict()
    # A file that lists its overrides (the page writes every setting) says itself what was given.
    given = set(settings) if "overrides" not in settings else set(settings["overrides"] or [])
    for name in run_flags():
        value = getattr(args, name)
        if value is not None:
            base[name] = value
            given.add(name)
    return api.configure(base, given, default_budget="budget_s" not in settings)


def run_summary(run: RunRecord) -> dict[str, Any]:
    """The keys `show --json` always has (README's *Records*), plus a few for `list`."""
    config = run.get("config") or {}
    return {
        "run_id": run["run_id"],
        "status": run.get("status"),
        "dataset": config.get("dataset"),
        "generations_done": run.get("generations_done", 0),
        "generations": config.get("generations"),
        "evaluated": run.get("evaluated", 0),
        "best_fitness": run.get("best_fitness"),
        "test_accuracy": run.get("test_accuracy"),
        "best_model_path": run.get("best_model_path"),
        "best_summary": run.get("best_summary"),
        "device": run.get("device"),
        "created_at": run.get("created_at"),
        "ended_at": run.get("ended_at"),
        "pid": run.get("pid"),
    }


def _get_run(store: Store, run_id: str) -> RunRecord:
    run = store.get_run(run_id)
    if run is None:
        raise api.no_run(run_id, store)
    return run


def _print_outcome(run: RunRecord, store: Store) -> None:
    print(f"\nrun {run['run_id']}: {run['status']}" + (f" ({run['reason']})" if run.get("reason") else ""))
    if best := run.get("best_genome"):
        print(f"best architecture: {run.get('best_summary')}")
        if shape := run.get("input_shape"):
            _print_layers(Genome.from_dict(best), shape, len(run.get("classes") or []))
        print(f"validation accuracy: {_fmt(run.get('best_fitness'))}")
        print(f"test accuracy (final model): {_fmt(run.get('test_accuracy'))}")
        if run.get("best_model_path"):
            print(f"model: {run['best_model_path']}")


def _print_layers(genome: Genome, input_shape: list[int], num_classes: int) -> None:
    from automodel.training.model import layer_table

    for row in layer_table(genome, input_shape, max(num_classes, 2)):
        print(f"    {row['layer']:32} {row['output_shape']:>14} {row['parameters']:>10,}")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
