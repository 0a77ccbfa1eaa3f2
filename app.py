"""AutoModel's page: start, watch, stop, resume and download a search.

Run with ``streamlit run app.py``. The page never trains: Start launches
``python -m automodel run --run-id ...`` as its own process and the page redraws itself from
the store about once a second (``st.fragment(run_every=1)``) while the run is active. The run's
pid lives in the store, so closing the tab does not stop it and any browser sees it live.
Data shaping lives in :mod:`automodel.views`; this file lays it out.
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import streamlit as st

from automodel import jobs, views
from automodel.config import (ACTIVATIONS, AUGMENTATIONS, BACKENDS, BLOCK_KINDS, CROSSOVER_METHODS, DEVICES,
                              DOWNSAMPLING, HEADS, OPTIMIZERS, SELECTION_METHODS, Config, ConfigError)
from automodel.errors import ImageInputError
from automodel.store import ACTIVE_STATUSES, Store, StoreError, default_db_path

REPO = Path(__file__).resolve().parent
DATA_DIR = REPO / "data"          # where built-in datasets are read or downloaded
LAUNCH_GRACE_S = 90.0             # how long a launched search may take to show up in the store
TABLE_PAGE_ROWS = 200             # rows of the population table sent to the browser at once

# Choices offered for the search space (the defaults are a subset of each).
SPACE_OPTIONS: dict[str, list[Any]] = {
    "filters": [4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512],
    "kernel_sizes": [1, 3, 5, 7, 9, 11],
    "activations": list(ACTIVATIONS),
    "block_kinds": list(BLOCK_KINDS),
    "downsampling": list(DOWNSAMPLING),
    "heads": list(HEADS),
    "batch_norm": [True, False],
    "dense_units": [16, 32, 64, 128, 256, 512, 1024, 2048],
    "dropout": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    "optimizers": list(OPTIMIZERS),
    "weight_decays": [0.0, 1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2],
}
BLOCK_HELP = {"plain": "plain (conv, BN, activation)", "residual": "residual (two convs + skip)",
              "separable": "depthwise-separable"}
WORKER_CHOICES = ["auto", 1, 2, 3, 4, 6, 8, 12, 16]
HEAD_HELP = {"flatten": "flatten (map ≤ 4×4)", "avgmax": "global average + max pool", "gap": "global average pool"}
SELECTION_HELP = {"roulette": "roulette wheel (fitness-proportional)", "tournament": "tournament",
                  "rank": "rank-based", "truncation": "truncation (best fraction)",
                  "sus": "stochastic universal sampling"}
CROSSOVER_HELP = {"one_point": "one point", "two_point": "two point", "uniform": "uniform"}
USAGE_SNIPPET = 'from automodel import load_model\nmodel = load_model("{name}")'


# ============================================================================ state and store

def _defaults_into_state() -> None:
    """Put the Quick demo settings into the form's widget state once per browser session."""
    if st.session_state.get("_form_ready"):
        return
    _apply_config(views.preset_config("Quick demo"))
    st.session_state.setdefault("db_path", os.environ.get("AUTOMODEL_DB") or str(default_db_path()))
    st.session_state["_form_ready"] = True


def _conditional_defaults() -> None:
    """Widgets drawn only for some choices lose their state while hidden: give it back."""
    st.session_state.setdefault("folder_path", "")
    st.session_state.setdefault("limit_mb", 2048)
    st.session_state.setdefault("limit_files", 200_000)


def _apply_config(config: dict[str, Any]) -> None:
    """Set every form widget from a config dict (used by the presets)."""
    st.session_state["dataset_choice"] = views.dataset_choice_for(config["dataset"])
    if st.session_state["dataset_choice"] == views.FOLDER_CHOICE:
        st.session_state["folder_path"] = config["dataset"]
    for name in views.FORM_FIELDS:
        value = config[name]
        if name == "objectives":
            value = [v for v in value if v != "accuracy"]
        st.session_state[f"cfg_{name}"] = "" if value is None and name == "ray_address" else value
    for name, value in config["space"].items():
        if name == "learning_rates":
            for optimizer in OPTIMIZERS:
                low, high = value.get(optimizer, value.get("sgd"))
                st.session_state[f"space_lr_{optimizer}_low"] = float(low)
                st.session_state[f"space_lr_{optimizer}_high"] = float(high)
            continue
        st.session_state[f"space_{name}"] = tuple(value) if name in ("conv_blocks", "dense_layers") else list(value)


def _apply_preset(name: str) -> None:
    _apply_config(views.preset_config(name))
    if name == "Your own images":
        st.session_state["dataset_choice"] = views.UPLOAD_CHOICE
    st.session_state["preset_note"] = name


def _flash(kind: str, text: str) -> None:
    """A message to show once on the next full redraw."""
    st.session_state.setdefault("_flash", []).append((kind, text))


def _show_flash() -> None:
    for kind, text in st.session_state.pop("_flash", []):
        getattr(st, kind)(text)


@st.cache_resource(show_spinner=False)
def _store_for(path: str) -> Store:
    # One Store per file and server: it keeps the parsed tables while the bytes are unchanged.
    return Store(path)


def _db_path() -> Path:
    return Path(st.session_state.get("db_path") or default_db_path()).expanduser().resolve()


def _run_dir(store: Store, run_id: str) -> Path:
    return jobs.run_dir_for(store, run_id)


@st.cache_resource(show_spinner=False)
def _warm_imports() -> threading.Thread:
    """Import torch (2-3 s) in the background once per server, so the first layer table is quick."""
    def work() -> None:
        try:
            import automodel.model  # noqa: F401
        except Exception:  # noqa: BLE001 - only a warm-up; the real import reports any problem
            pass
    thread = threading.Thread(target=work, name="automodel-warm-imports", daemon=True)
    thread.start()
    return thread


@st.cache_data(show_spinner=False, max_entries=64)
def _layer_rows(genome_json: str, input_shape: tuple[int, ...], num_classes: int) -> list[dict]:
    from automodel.genome import Genome
    from automodel.model import layer_table
    return layer_table(Genome.from_dict(json.loads(genome_json)), list(input_shape), max(num_classes, 2))


# ============================================================================ sidebar

def sidebar_form(store: Store | None) -> None:
    """The settings form, presets and the Start button."""
    st.header("New search")
    st.caption("Presets")
    left, right = st.columns(2)
    left.button("Quick demo", key="preset_quick", on_click=_apply_preset, args=("Quick demo",), width="stretch",
                help="Bundled digits on the CPU: under a minute, no network, no GPU.")
    st.button("Your own images", key="preset_own", on_click=_apply_preset, args=("Your own images",),
              width="stretch", help="Upload a .zip of your image folder: a few minutes for a few thousand "
                                    "small images on a CPU.")
    right.button("CIFAR-10", key="preset_cifar", on_click=_apply_preset, args=("CIFAR-10",), width="stretch",
                 help="CIFAR-10 sized for one GPU (downloads the data on first use).")
    # Parts drawn only for some choices sit in containers of their own, so that the elements after
    # them keep their places (Streamlit can leave a moved element behind while a fragment redraws).
    with st.container():
        if st.session_state.get("preset_note"):
            st.caption(f"Loaded the **{st.session_state['preset_note']}** preset; change anything below.")

    choice = st.selectbox("Dataset", list(views.DATASET_CHOICES), key="dataset_choice")
    upload = None
    with st.container():
        if choice == views.FOLDER_CHOICE:
            st.text_input("Folder path on the server", key="folder_path", placeholder="/path/to/images",
                          help="Class sub-folders of images, or train/ and test/ folders holding them.")
        elif choice == views.UPLOAD_CHOICE:
            upload = st.file_uploader("Image folder as .zip", type=["zip"], key="upload",
                                      help="Class folders of images (flat) or train/ and test/ folders of them.")
            with st.expander("Upload limits"):
                st.number_input("Largest unpacked size (MB)", min_value=1, step=256, key="limit_mb")
                st.number_input("Most files in the archive", min_value=1, step=10_000, key="limit_files")
                st.caption("Checked before anything is unpacked. Entries with absolute paths, '..' or links "
                           "are refused; files that are not images are ignored and counted.")

    st.subheader("Genetic algorithm")
    a, b = st.columns(2)
    a.number_input("Population", step=1, key="cfg_population", help="Candidates per generation.")
    b.number_input("Generations", step=1, key="cfg_generations")
    selection = st.selectbox("Selection", SELECTION_METHODS, key="cfg_selection",
                             format_func=lambda m: SELECTION_HELP.get(m, m))
    a, b = st.columns(2)
    a.number_input("Tournament size", step=1, key="cfg_tournament_size", disabled=selection != "tournament")
    b.number_input("Truncation fraction", step=0.05, format="%.2f", key="cfg_truncation_fraction",
                   disabled=selection != "truncation")
    a, b = st.columns(2)
    a.selectbox("Crossover", CROSSOVER_METHODS, key="cfg_crossover", format_func=lambda m: CROSSOVER_HELP.get(m, m))
    b.number_input("Crossover rate", step=0.05, format="%.2f", key="cfg_crossover_rate")
    a, b = st.columns(2)
    a.number_input("Mutation rate", step=0.05, format="%.2f", key="cfg_mutation_rate")
    b.number_input("Elitism", step=1, key="cfg_elitism", help="Best candidates copied unchanged.")
    st.number_input("Seed", step=1, key="cfg_seed", help="The same seed gives the same search.")

    st.subheader("Training budget")
    a, b = st.columns(2)
    a.number_input("Epochs per candidate", step=1, key="cfg_epochs", help="The full budget of a candidate.")
    b.number_input("Final epochs", step=1, key="cfg_final_epochs", help="Training of the best architecture at the end.")
    a, b = st.columns(2)
    a.number_input("First rung (epochs)", step=1, key="cfg_min_epochs",
                   help="Successive halving: every new candidate trains this many epochs first; equal to the "
                        "epochs per candidate turns it off.")
    b.number_input("Keep 1 in", step=1, key="cfg_reduction_factor",
                   help="The best 1 in this many of each rung trains on to the next (epochs × this factor).")
    a, b = st.columns(2)
    a.number_input("Time limit per candidate (s)", step=30.0, format="%.1f", key="cfg_time_limit_s")
    b.selectbox("Device", DEVICES, key="cfg_device")
    with st.expander("More training settings"):
        st.number_input("Batch size", value=None, step=1, key="cfg_batch_size", placeholder="auto",
                        help="Empty: chosen from the training set's size (16 to 256).")
        st.number_input("Validation fraction", step=0.05, format="%.2f", key="cfg_val_fraction",
                        help="Share of the training data held out to measure fitness.")
        st.selectbox("Augmentation", AUGMENTATIONS, key="cfg_augment")
        st.number_input("Label smoothing", step=0.05, format="%.2f", key="cfg_label_smoothing")
        st.number_input("Gradient clipping (norm)", step=1.0, format="%.1f", key="cfg_clip_grad_norm",
                        help="0 turns clipping off.")
        st.multiselect("Trade accuracy against", ["params", "macs", "latency"], key="cfg_objectives",
                       format_func=lambda c: views.COST_LABELS[c][1],
                       help="Several objectives: the search looks for the Pareto front (NSGA-II) and you pick "
                            "a member to finalize.")
        st.number_input("Slowest model (ms per image)", value=None, step=0.5, format="%.2f",
                        key="cfg_max_latency_ms", placeholder="no limit",
                        help="Inference at batch 1 on the search's device; slower networks are refused before "
                             "training.")
        st.number_input("Largest model (parameters)", step=1_000_000, key="cfg_max_params")
        st.number_input("Most multiply-accumulates per image", value=None, step=1_000_000, key="cfg_max_macs",
                        placeholder="auto: 20,000 × pixels",
                        help="Genomes above it are repaired (more downsampling, fewer filters) before training.")
        st.number_input("Stop at validation accuracy", value=None, step=0.01, format="%.2f",
                        key="cfg_target_fitness", placeholder="none")
        st.number_input("Time budget for the search (s)", value=None, step=60.0, format="%.0f",
                        key="cfg_time_budget_s", placeholder="none")
        prune = st.checkbox("Prune hopeless candidates after their first epoch", key="cfg_prune",
                            help="A candidate whose first-epoch accuracy is far below the earlier "
                                 "generations' median stops there and keeps its partial score.")
        st.number_input("Prune below this share of the median", step=0.05, format="%.2f",
                        key="cfg_prune_fraction", disabled=not prune)

    with st.expander("Where candidates train"):
        backend = st.selectbox("Back end", BACKENDS, key="cfg_backend",
                               format_func=lambda b: {"local": "this machine",
                                                      "ray": "Ray (a cluster, or this machine)"}.get(b, b))
        st.selectbox("Candidates at once (this machine)", WORKER_CHOICES, key="cfg_workers",
                     disabled=backend != "local",
                     help="auto: one per CPU core with one thread each (4 per GPU); 1: one at a time with "
                          "all threads.")
        off = backend != "ray"
        st.text_input("Ray address", key="cfg_ray_address", disabled=off, placeholder="start a local Ray",
                      help="auto or host:port to join a running cluster; empty starts a local Ray.")
        st.number_input("CPUs per candidate", step=1.0, format="%.1f", key="cfg_cpus_per_candidate", disabled=off)
        st.number_input("GPUs per candidate", value=None, step=0.25, format="%.2f", disabled=off,
                        key="cfg_gpus_per_candidate", placeholder="1 on cuda, else 0",
                        help="Fractions let candidates share a GPU (0.25: four at once).")
        st.number_input("Retries of a lost candidate", step=1, key="cfg_retries", disabled=off)

    with st.expander("Search space"):
        st.slider("Convolution blocks", 1, 12, key="space_conv_blocks")
        st.multiselect("Filters", SPACE_OPTIONS["filters"], key="space_filters")
        st.multiselect("Kernel sizes", SPACE_OPTIONS["kernel_sizes"], key="space_kernel_sizes")
        st.multiselect("Block kinds", SPACE_OPTIONS["block_kinds"], key="space_block_kinds",
                       format_func=lambda v: BLOCK_HELP.get(v, v))
        st.multiselect("Activations", SPACE_OPTIONS["activations"], key="space_activations")
        st.multiselect("Downsampling", SPACE_OPTIONS["downsampling"], key="space_downsampling",
                       help="max or avg: 2×2 pooling after a block; stride: its first convolution has stride 2.")
        st.multiselect("Heads", SPACE_OPTIONS["heads"], key="space_heads", format_func=lambda v: HEAD_HELP.get(v, v))
        st.multiselect("Batch norm", SPACE_OPTIONS["batch_norm"], key="space_batch_norm",
                       format_func=lambda v: "with" if v else "without")
        st.slider("Dense layers", 0, 12, key="space_dense_layers")
        st.multiselect("Dense units", SPACE_OPTIONS["dense_units"], key="space_dense_units")
        st.multiselect("Dropout", SPACE_OPTIONS["dropout"], key="space_dropout", format_func=lambda v: f"{v:g}")
        st.multiselect("Optimizers", SPACE_OPTIONS["optimizers"], key="space_optimizers")
        st.caption("Learning rates: drawn on a log scale between these bounds, given for a batch of 64 and "
                   "scaled with the batch size.")
        for optimizer in OPTIMIZERS:
            a, b = st.columns(2)
            a.number_input(f"{optimizer} from", min_value=0.0, format="%.1e", step=None, key=f"space_lr_{optimizer}_low")
            b.number_input(f"{optimizer} to", min_value=0.0, format="%.1e", step=None, key=f"space_lr_{optimizer}_high")
        st.multiselect("Weight decays", SPACE_OPTIONS["weight_decays"], key="space_weight_decays",
                       format_func=lambda v: f"{v:g}")

    config, problem = _form_config(choice, upload)
    with st.container():
        if problem:
            st.error(problem)
    if st.button("Start", key="start", type="primary", width="stretch", disabled=problem is not None or store is None):
        _start(store, config, upload)
    with st.container():
        for kind, text in st.session_state.pop("_start_messages", []):
            getattr(st, kind)(text)


def _form_config(choice: str, upload) -> tuple[dict[str, Any], str | None]:
    """The form as a validated config dict, or the one sentence saying what is wrong."""
    values = {name: st.session_state.get(f"cfg_{name}") for name in views.FORM_FIELDS}
    values["space"] = {name: st.session_state.get(f"space_{name}") for name in views.SPACE_FIELDS
                       if name != "learning_rates"}
    values["space"]["learning_rates"] = {optimizer: [st.session_state.get(f"space_lr_{optimizer}_low"),
                                                     st.session_state.get(f"space_lr_{optimizer}_high")]
                                         for optimizer in OPTIMIZERS}
    dataset = views.DATASET_CHOICES.get(choice)
    problem = None
    if choice == views.FOLDER_CHOICE:
        dataset = (st.session_state.get("folder_path") or "").strip()
        if not dataset:
            problem = "The folder path is empty; give the path of an image folder on the server."
        elif not Path(dataset).expanduser().exists():
            problem = (f"dataset path {dataset} does not exist; give digits, cifar10, cifar100, mnist, "
                       "fashion-mnist, or a path to an image folder or .zip of one.")
        elif not _inside_roots(Path(dataset).expanduser().resolve()):
            roots = ", ".join(str(r) for r in _dataset_roots())
            problem = (f"dataset folder {dataset} is outside the folders this page may read ({roots}); use a folder "
                       "inside them, or ask whoever runs the page to add it to dataset_roots in "
                       ".streamlit/secrets.toml.")
        else:
            dataset = str(Path(dataset).expanduser().resolve())
    elif choice == views.UPLOAD_CHOICE:
        dataset = "upload"  # replaced by the run's own folder at Start
        if upload is None:
            problem = "Choose a .zip file of an image folder to upload."
    config = views.form_config(values, dataset or "")
    try:
        Config.from_dict(config)
    except ConfigError as exc:
        problem = problem or str(exc)
    except TypeError as exc:  # a widget left empty
        problem = problem or f"a setting is missing ({exc})."
    return config, problem


def _start(store: Store, config_dict: dict[str, Any], upload) -> None:
    """Start a search from the form (the rules are jobs.start_search's); say how it went."""
    messages = st.session_state.setdefault("_start_messages", [])
    run_id = jobs.new_run_id()
    if upload is not None:
        config_dict = {**config_dict, "dataset": str((_run_dir(store, run_id) / "upload").resolve())}
    try:
        pending = jobs.start_search(store, run_id, config_dict, data_dir=DATA_DIR, cwd=REPO,
                                    prepare=(lambda run_dir: _unpack_upload(upload, run_dir)) if upload else None)
    except (ConfigError, StoreError) as exc:  # refused before anything was recorded (RunActiveError included)
        if store.get_run(run_id) is None:
            messages.append(("error", str(exc)))
            return
        messages.append(("error", _sentence(store.get_run(run_id).get("reason") or str(exc))))
        st.session_state["run_pick"] = run_id
        return
    except Exception:  # noqa: BLE001 - the run is recorded as failed with the reason; show it
        messages.append(("error", _sentence((store.get_run(run_id) or {}).get("reason") or "the search did not start")))
        st.session_state["run_pick"] = run_id
        return
    st.session_state["launching"] = pending
    st.session_state["run_pick"] = run_id
    messages.append(("success", f"Started {run_id}."))


def _unpack_upload(upload, run_dir: Path) -> None:
    """Save the uploaded zip inside the run folder and unpack it there (DatasetError on refusal)."""
    from automodel.archive import ExtractLimits, safe_extract_zip

    zip_path = run_dir / "upload.zip"
    upload.seek(0)
    with open(zip_path, "wb") as out:
        shutil.copyfileobj(upload, out, length=1 << 20)
    limits = ExtractLimits(max_total_bytes=int(st.session_state["limit_mb"]) * 1024 ** 2,
                           max_files=int(st.session_state["limit_files"]))
    try:
        safe_extract_zip(zip_path, run_dir / "upload", limits)
    finally:
        zip_path.unlink(missing_ok=True)


def sidebar_database() -> Store | None:
    """The database picker; None (with the error shown) when the file cannot be used."""
    st.divider()
    st.text_input("Database file", key="db_path",
                  help="TinyDB file of runs (the command line's --db). A damaged file is never overwritten.")
    try:
        store = _store_for(str(_db_path()))
        store.list_runs()
    except StoreError as exc:
        st.session_state["_db_error"] = str(exc)
        return None
    st.session_state.pop("_db_error", None)
    return store


# ============================================================================ the run view

def _launching_for(run_id: str) -> jobs.Launch | None:
    pending = st.session_state.get("launching")
    return pending if pending is not None and pending.run_id == run_id else None


def _settle_launch(store: Store, run: dict) -> bool:
    """Whether a search this session launched for ``run`` is still on its way to the store."""
    pending = _launching_for(run["run_id"])
    if pending is None:
        return False
    waiting, message = jobs.settle_launch(store, run, pending, LAUNCH_GRACE_S)
    if not waiting:
        st.session_state.pop("launching", None)
    if message:
        _flash("error", message)
    return waiting


def run_panel(db_path: str, run_id: str, live: bool) -> None:
    """Status, buttons, chart, tables and downloads of one run (the live fragment's body).

    Every part that is drawn only sometimes sits in a container of its own, so the parts after it
    keep their places from one redraw to the next (see the note in ``main``).
    """
    store = _store_for(db_path)
    jobs.reap_children()
    problem_slot = st.container()
    try:
        runs = jobs.reconcile(store)
        run = next((r for r in runs if r["run_id"] == run_id), None)
        if run is None:
            problem_slot.warning(f"Run {run_id} is no longer in {store.path}.")
            return
        starting = _settle_launch(store, run)
        if live and not starting and not _busy(run):
            st.rerun()  # the run (or a finalization) has ended: redraw the whole page once, without the timer
        progress = store.progress(run_id) if run.get("status") in ACTIVE_STATUSES else []
        generations = store.generations(run_id)
        records = store.individuals(run_id)
    except StoreError as exc:
        problem_slot.error(str(exc))
        return
    view = views.status_view(run, progress, generations, now=time.time(), starting=starting)
    frame = views.individuals_frame(records)
    config = run.get("config") or {}

    _status_block(store, run, view, others=runs)
    with st.container():
        caption = views.dataset_caption(run)
        if caption:
            st.caption(f"Dataset **{views.dataset_name(config.get('dataset'))}** — {caption}")

    st.subheader("Fitness per generation")
    with st.container():
        if frame.empty and not generations:
            st.info("The first candidates are training; their validation accuracy appears here as each one "
                    "finishes.")
        else:
            chart = views.fitness_chart(generations, frame, total_generations=run.get("total_generations")
                                        or config.get("generations"), population=config.get("population"))
            st.altair_chart(chart, key=f"fitness_chart_{run_id}")
            st.caption(views.chart_caption(frame))
    with st.container():
        _population_block(frame, run_id)
    with st.container():
        _failures_block(frame)
    with st.container():
        _pareto_block(store, run, records)
    with st.container():
        _architecture_block(run, records)
    with st.container():
        _genes_block(records, generations)
    with st.container():
        _test_results_block(run)
    with st.container():
        _try_block(run)
    left, right = st.columns([3, 2], gap="large")
    with left:
        _best_block(run)
    with right:
        _downloads_block(store, run)


def _status_block(store: Store, run: dict, view: views.StatusView, others: list[dict]) -> None:
    run_id = run["run_id"]
    with st.container(border=True, key="status"):
        st.markdown(view.headline)
        with st.container():
            for fraction, text in view.bars:
                st.progress(fraction, text=text)
        with st.container():
            if view.note:
                getattr(st, view.note_kind)(view.note)
        a, b, c = st.columns([1, 1, 4])
        stop = a.button("Stop", key="stop", disabled=run.get("status") != "running" and not view.state == "starting",
                        width="stretch", help="Stop the search (within a few seconds); Resume continues it.")
        resume = b.button("Resume", key="resume", disabled=run.get("status") not in views.RESUMABLE or view.active,
                          width="stretch", help="Continue from the last recorded candidate.")
        c.caption(f"Command line: `python -m automodel show {run_id} --db {store.path}`")
    if stop:
        _stop(store, run_id)
    if resume:
        _resume(store, run_id, others)


def _stop(store: Store, run_id: str) -> None:
    with st.spinner("Stopping the search…"):
        run = jobs.stop_search(store, run_id, _launching_for(run_id))
    if run.get("status") in ACTIVE_STATUSES:
        _flash("warning", f"Run {run_id} is still {run.get('status')}; it stops when the current batch ends.")
    else:
        _flash("success", f"Run {run_id} {run.get('status')}.")
    st.session_state.pop("launching", None)
    st.rerun()


def _resume(store: Store, run_id: str, runs: list[dict]) -> None:
    try:
        st.session_state["launching"] = jobs.resume_search(store, run_id, data_dir=DATA_DIR, cwd=REPO)
    except StoreError as exc:   # atomic claim: a second tab or terminal cannot resume it too
        _flash("error", _sentence(str(exc)))
    st.rerun()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _population_block(frame, run_id: str) -> None:
    st.subheader("Population")
    if frame.empty:
        st.caption("No candidate has finished yet.")
        return
    present = sorted({int(g) for g in frame["generation"]}, reverse=True)
    options = [None] + present
    key = f"pop_gen_{run_id}"
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    # "Latest" keeps one label as generations arrive (a browser keeps a chosen option's old label).
    generation = st.selectbox("Generation", options, key=key,
                              format_func=lambda g: "Latest" if g is None else f"Generation {g + 1}")
    shown = present[0] if generation is None else generation
    table = views.population_table(frame, shown)
    caption = f"Generation {shown + 1}: {len(table)} candidates, best first."
    if len(table) > TABLE_PAGE_ROWS:   # a browser need not receive thousands of rows at once
        pages = -(-len(table) // TABLE_PAGE_ROWS)
        page_number = st.number_input("Page", min_value=1, max_value=pages, value=1, key=f"pop_page_{run_id}")
        start = (int(page_number) - 1) * TABLE_PAGE_ROWS
        table = table.iloc[start:start + TABLE_PAGE_ROWS]
        caption += f" Rows {start + 1}–{start + len(table)} (page {int(page_number)} of {pages})."
    st.caption(caption)
    st.container(key="population_table").dataframe(
        table, hide_index=True, key="population", height=_table_height(len(table), limit=20),
        column_config={
            "Candidate": st.column_config.NumberColumn("#", width=40),
            "Fitness": st.column_config.ProgressColumn("Validation accuracy", min_value=0.0, max_value=1.0,
                                                       format="%.4f", width=150),
            "Status": st.column_config.TextColumn("Status", width=105),
            "Architecture": st.column_config.TextColumn("Architecture", width=330),
            "Parameters": st.column_config.NumberColumn("Parameters", format="localized", width=90),
            "Seconds": st.column_config.NumberColumn("Seconds", format="%.1f", width=65),
            "Reason": st.column_config.TextColumn("Reason", width=120),
            "Reused": st.column_config.CheckboxColumn("Reused", width=65,
                                                      help="Trained before; result taken from the cache."),
        })


def _failures_block(frame) -> None:
    failures = views.failures_table(frame)
    if failures.empty:
        if not frame.empty:
            st.caption("No failed candidates so far (out of memory, NaN loss, time limit, too large).")
        return
    st.subheader(f"Failures ({len(failures)})")
    st.dataframe(failures, hide_index=True, key="failures", height=_table_height(len(failures), limit=10),
                 column_config={"Parameters": st.column_config.NumberColumn(format="localized"),
                                "Architecture": st.column_config.TextColumn(width="large")})


def _pareto_block(store: Store, run: dict, records: list[dict]) -> None:
    """With several objectives: accuracy against a cost, the front highlighted; any member can be
    finalized (in its own process) and then downloaded."""
    objectives = (run.get("config") or {}).get("objectives") or ["accuracy"]
    if len(objectives) < 2:
        return
    run_id = run["run_id"]
    st.subheader("Pareto front")
    frame = views.pareto_frame(records, objectives)
    if frame.empty:
        st.caption("Appears when the first candidate has trained fully.")
        return
    cost = st.selectbox("Cost", objectives[1:], key=f"pareto_cost_{run_id}",
                        format_func=lambda c: views.COST_LABELS[c][1])
    st.altair_chart(views.pareto_chart(frame, cost), key=f"pareto_chart_{run_id}_{cost}")
    members = frame[frame["On the front"]].sort_values("Accuracy", ascending=False)
    labels = {row.key: f"{row.Accuracy:.4f} · {int(row.params or 0):,} parameters · "
                       f"{(row.macs or 0) / 1e6:.1f} M MACs"
                       + (f" · {row.latency_ms:.2f} ms" if row.latency_ms == row.latency_ms and row.latency_ms else "")
                       + f" · {row.Architecture}" for row in members.itertuples()}
    st.caption(f"{len(members)} of {len(frame)} fully trained candidates are on the front: no other is both more "
               "accurate and cheaper. Choose one to train it on train + validation and test it.")
    key = st.selectbox("Member of the front", list(labels), format_func=labels.get, key=f"pareto_member_{run_id}")
    done = (run.get("finalized") or {}).get(key)
    claim = _finalizing(run).get(key)
    if done and Path(done["path"]).is_file():
        a, b = st.columns(2)
        a.metric("Test accuracy (finalized)", views.fmt_fitness(done["test_accuracy"]))
        b.metric("Validation accuracy", views.fmt_fitness(done["val_accuracy"]))
        left, right = st.columns(2)
        left.download_button("This model (.pt)", data=_read_bytes(done["path"]), file_name=f"{run_id}-{key}.pt",
                             mime="application/octet-stream", key=f"download_member_pt_{key}", on_click="ignore",
                             width="stretch")
        right.download_button("This model (ONNX)", data=_onnx_bytes(done["path"]), file_name=f"{run_id}-{key}.onnx",
                              mime="application/octet-stream", key=f"download_member_onnx_{key}", on_click="ignore",
                              width="stretch")
    elif claim:
        progress = [p for p in store.progress(run_id) if p.get("worker") == f"finalize-{key}"]
        where = (f" · epoch {progress[0].get('epoch')}/{progress[0].get('epochs')}" if progress else "")
        st.info(f"Finalizing this candidate{where}…")
        if st.button("Stop finalizing", key=f"stop_finalize_{key}"):
            try:
                os.killpg(claim["pid"], signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            st.rerun()
    elif st.button("Finalize this candidate", key=f"finalize_{key}", type="primary",
                   disabled=run.get("status") in ACTIVE_STATUSES,
                   help="Trains it for the final epochs on train + validation and scores it once on the test "
                        "split, in its own process (it goes on if you close the tab)."
                        + (" Available when the search has ended." if run.get("status") in ACTIVE_STATUSES else "")):
        jobs.launch(jobs.finalize_command(store.path, run_id, key), _run_dir(store, run_id) / f"finalize-{key}.log",
                    cwd=REPO)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and key not in _finalizing(store.get_run(run_id) or {}) \
                and key not in ((store.get_run(run_id) or {}).get("finalized") or {}):
            time.sleep(0.2)
        st.rerun(scope="app")


def _architecture_block(run: dict, records: list[dict]) -> None:
    """The best network, or a candidate of the generation shown in the population table, drawn as a
    diagram, with its learning curve."""
    st.subheader("Architecture")
    if not run.get("best_genome") or not run.get("input_shape"):
        st.caption("Appears when the first candidate has trained fully.")
        return
    run_id = run["run_id"]
    trained = [r for r in records if not r.get("cached") and r.get("genome")]
    present = sorted({r["generation"] for r in trained})
    generation = st.session_state.get(f"pop_gen_{run_id}")
    generation = present[-1] if generation is None and present else generation
    choices = {"best": None} | {f"{r['generation']}-{r['index']}": r for r in trained if r["generation"] == generation}
    best = next((r for r in records if r["key"] == run.get("best_key") and not r.get("cached")), None)

    def label(choice: str) -> str:
        if choice == "best":
            return f"The best · {run.get('best_summary')}"
        r = choices[choice]
        return f"Gen {r['generation'] + 1} · #{r['index'] + 1} · {r['fitness']:.4f} · {r['summary']}"
    key = f"arch_pick_{run_id}"
    if st.session_state.get(key) not in choices:
        st.session_state.pop(key, None)
    choice = st.selectbox("Network", list(choices), format_func=label, key=key,
                          help="The best, or any candidate of the generation chosen in the population table.")
    record = best if choice == "best" else choices[choice]
    genome = run["best_genome"] if choice == "best" else record["genome"]
    rows = _layer_rows(json.dumps(genome, sort_keys=True), tuple(run["input_shape"]), len(run.get("classes") or []))
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.graphviz_chart(views.architecture_dot(rows), width="stretch")
    with right:
        shown = [r for r in (record, best) if r is not None]
        shown = list({id(r): r for r in shown}.values())
        curves = views.learning_curves(shown, ["this network" if r is record else "the best" for r in shown])
        if curves.empty:
            st.caption("No learning curve recorded for this candidate.")
        else:
            st.caption("Learning curve: validation accuracy and training loss after each epoch.")
            accuracy, loss = views.learning_curve_charts(curves)
            st.altair_chart(accuracy, key=f"curves_acc_{run_id}")
            st.altair_chart(loss, key=f"curves_loss_{run_id}")


def _genes_block(records: list[dict], generations: list[dict]) -> None:
    st.subheader("Which genes matter")
    frame = views.gene_frame(records)
    if len(frame) < 3:
        st.caption("Appears when a few candidates have trained.")
        return
    gene = st.selectbox("Gene", list(views.GENES), format_func=lambda g: views.GENES[g][0], key="gene_pick")
    st.altair_chart(views.gene_chart(frame, gene), key="gene_chart")
    st.caption("Validation accuracy of every candidate trained to the run's full budget, by the value of the chosen "
               "gene; red ticks are medians. Below: how varied each generation was (0: all alike).")
    if generations:
        st.altair_chart(views.diversity_chart(generations), key="diversity_chart")


def _test_results_block(run: dict) -> None:
    st.subheader("Test results")
    report = run.get("test_report")
    if not report:
        st.caption("Appears when the final model has been trained and scored once on the test split.")
        return
    st.caption(f"The final model on the {sum(c['count'] for c in report['per_class'])} test images: "
               f"accuracy {views.fmt_fitness(report.get('accuracy'))}, {report.get('misclassified_total', 0)} "
               "misclassified.")
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.dataframe(views.per_class_frame(report), hide_index=True, key="per_class",
                     height=_table_height(len(report["per_class"]), limit=12),
                     column_config={"Accuracy": st.column_config.ProgressColumn("Accuracy", min_value=0.0,
                                                                                max_value=1.0, format="%.3f")})
    with right:
        st.altair_chart(views.confusion_chart(report), key="confusion_chart")
    gallery = [m for m in report.get("misclassified", []) if m.get("path") and Path(m["path"]).is_file()]
    if gallery:
        st.caption("Misclassified test images the model was surest about (true → predicted, confidence):")
        columns = st.columns(8)
        for n, item in enumerate(gallery[:24]):
            columns[n % 8].image(item["path"], caption=f"{item['true']} → {item['predicted']} "
                                                       f"({item['confidence']:.0%})", width=72)


@st.cache_resource(show_spinner=False, max_entries=4)
def _model_for(path: str, mtime: float):
    from automodel import load_model
    return load_model(path)


def _try_block(run: dict) -> None:
    st.subheader("Try the model")
    path = run.get("best_model_path")
    if not path or not Path(path).is_file():
        st.caption("Appears when the first candidate has trained fully.")
        return
    which = "the final model" if run.get("stage") == "done" else "the best model so far"
    files = st.file_uploader(f"Images to classify with {which}", accept_multiple_files=True,
                             key=f"try_{run['run_id']}", help="Each image is converted and resized as the "
                             "training images were.")
    if not files:
        return
    from automodel.report import image_tensor, top_predictions
    model = _model_for(path, Path(path).stat().st_mtime)
    for upload in files:
        try:
            x = image_tensor(upload.getvalue(), model.input_shape, name=upload.name)
        except ImageInputError as exc:
            st.error(str(exc))
            continue
        top = top_predictions(model, x)
        left, right = st.columns([1, 5])
        left.image(upload.getvalue(), width=72)
        right.markdown(f"**{upload.name}** — Prediction: " + " · ".join(f"**{c}** {p:.1%}" if i == 0 else f"{c} {p:.1%}"
                                                                     for i, (c, p) in enumerate(top)))


def _best_block(run: dict) -> None:
    st.subheader("Best architecture")
    with st.container():
        _best_body(run)


def _best_body(run: dict) -> None:
    genome = run.get("best_genome")
    if not genome:
        st.caption("Appears when the first candidate finishes.")
        return
    test = run.get("test_accuracy")
    a, b, c = st.columns(3)
    a.metric("Validation accuracy", views.fmt_fitness(run.get("best_fitness")))
    b.metric("Test accuracy", views.fmt_fitness(test),
             help="Measured once, on the held-out test split, after the final training.")
    generation = run.get("best_generation")
    c.metric("Found in", f"gen {generation + 1} · #{(run.get('best_index') or 0) + 1}"
             if generation is not None else "—")
    st.code(run.get("best_summary") or "", language=None, wrap_lines=True)
    with st.container():
        if run.get("input_shape"):
            rows = _layer_rows(json.dumps(genome, sort_keys=True), tuple(run["input_shape"]),
                               len(run.get("classes") or []))
            layers = views.layer_frame(rows)
            st.container(key="layer_table").dataframe(layers, hide_index=True, key="layers",
                                                      height=_table_height(len(layers)),
                                                      column_config={"Parameters": st.column_config.NumberColumn(
                                                          format="localized")})
    with st.container():
        if test is None:
            st.caption("Test accuracy is measured once the search ends and the best architecture is trained "
                       f"for {(run.get('config') or {}).get('final_epochs', '?')} final epochs.")


def _table_height(rows: int, limit: int = 36) -> int:
    """Pixels that show ``rows`` rows without a scroll bar (up to ``limit`` rows)."""
    return 38 + 35 * min(max(rows, 1), limit)


def _downloads_block(store: Store, run: dict) -> None:
    st.subheader("Downloads")
    run_id = run["run_id"]
    model_path = run.get("best_model_path")
    has_model = bool(model_path) and Path(model_path).is_file()
    final = run.get("stage") == "done"
    label = "final model" if final else "best model so far"
    st.download_button(f"Best model (.pt, {label})", data=_read_bytes(model_path) if has_model else b"",
                       file_name=f"{run_id}.pt", mime="application/octet-stream", key="download_pt",
                       disabled=not has_model, on_click="ignore", width="stretch")
    shape = "×".join(map(str, run.get("input_shape") or ["C", "H", "W"]))
    st.code(USAGE_SNIPPET.format(name=f"{run_id}.pt"), language="python", wrap_lines=True)
    st.caption(f"`model(images)` takes floats N×{shape} in [0, 1] and returns logits over "
               f"{len(run.get('classes') or []) or 'the'} classes (`model.classes`).")
    st.download_button("ONNX export", data=_onnx_bytes(model_path) if has_model else b"",
                       file_name=f"{run_id}.onnx", mime="application/octet-stream", key="download_onnx",
                       disabled=not has_model, on_click="ignore", width="stretch",
                       help="Exported when you click (a few seconds); dynamic batch size, input 'images'.")
    st.download_button("Candidates (.csv)", data=_csv_bytes(store, run_id), file_name=f"{run_id}-candidates.csv",
                       mime="text/csv", key="download_csv", on_click="ignore", width="stretch")


def _read_bytes(path: str):
    def read() -> bytes:
        return Path(path).read_bytes()
    return read


def _onnx_bytes(model_path: str):
    def export() -> bytes:
        from automodel.export import export_onnx
        out = Path(model_path).with_suffix(".onnx")  # beside the checkpoint, in the run's folder
        if not out.is_file() or out.stat().st_mtime < Path(model_path).stat().st_mtime:
            export_onnx(model_path, out)
        return out.read_bytes()  # self-contained: the weights are inside the file
    return export


def _csv_bytes(store: Store, run_id: str):
    def build() -> bytes:
        return views.records_csv(store.individuals(run_id))
    return build


# ============================================================================ page

def _watch_for_changes(db_path: str, signature: tuple) -> None:
    """Fragment body while nothing is live: redraw the page when a run starts or ends elsewhere."""
    try:
        runs = jobs.reconcile(_store_for(db_path))
    except StoreError:
        return
    if _signature(runs) != signature:
        st.rerun()


def _signature(runs: list[dict]) -> tuple:
    return tuple((r["run_id"], r.get("status"), r.get("generations_done"), r.get("stage"),
                  tuple(sorted(r.get("finalizing") or {})), tuple(sorted(r.get("finalized") or {}))) for r in runs)


def _finalizing(run: dict) -> dict:
    """The candidates of the run being finalized now, by key, with their process ids."""
    return {key: claim for key, claim in (run.get("finalizing") or {}).items() if jobs.pid_is_search(claim["pid"])}


def _busy(run: dict) -> bool:
    return run.get("status") in ACTIVE_STATUSES or bool(_finalizing(run))


def runs_block(store: Store, runs: list[dict]) -> None:
    """All runs of the database in one table, and two or more of them compared on one chart."""
    st.divider()
    st.subheader(f"All runs ({len(runs)})")
    st.dataframe(views.runs_table(runs), hide_index=True, key="runs_table", height=_table_height(len(runs), 10),
                 column_config={"Best validation": st.column_config.NumberColumn(format="%.4f"),
                                "Test": st.column_config.NumberColumn(format="%.4f"),
                                "Candidates": st.column_config.NumberColumn(format="localized")})
    if len(runs) < 2:
        return
    st.subheader("Compare runs")
    labels = {r["run_id"]: views.run_label(r) for r in runs}
    chosen = st.multiselect("Runs to compare", list(reversed(list(labels))), key="compare",
                            format_func=lambda rid: labels.get(rid, rid), max_selections=6,
                            placeholder="Pick two or more runs")
    with st.container():
        if not chosen:
            st.caption("Pick runs to draw their best (solid) and mean (dashed) validation accuracy per generation.")
        else:
            curves = {rid: store.generations(rid) for rid in chosen}
            st.altair_chart(views.compare_chart(curves), key="compare_chart")
            st.caption("Solid: the best validation accuracy of each generation; dashed: the generation's mean.")


def _secret(name: str, default=None):
    try:
        return st.secrets.get(name, default)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return default


def _dataset_roots() -> list[Path]:
    """Folders on the server the page may offer as datasets: ``dataset_roots`` in the secrets
    (a list of paths), else the repository's ``data/``."""
    roots = _secret("dataset_roots") or [str(DATA_DIR)]
    return [Path(str(r)).expanduser().resolve() for r in roots]


def _inside_roots(path: Path) -> bool:
    return any(path == root or root in path.parents for root in _dataset_roots())


def _password_gate() -> bool:
    """True when the page may render: no ``password`` in the secrets, or the right one entered
    (compared in constant time). Nothing else of the page is drawn before."""
    password = _secret("password")
    if not password or st.session_state.get("_authenticated"):
        return True
    st.title("AutoModel")
    entered = st.text_input("Password", type="password", key="password_entry")
    if entered:
        if hmac.compare_digest(entered.encode("utf-8"), str(password).encode("utf-8")):
            st.session_state["_authenticated"] = True
            st.session_state.pop("password_entry", None)
            st.rerun()
        st.error("That password is not right; ask whoever runs this page for it.")
    return False


def main() -> None:
    st.set_page_config(page_title="AutoModel", page_icon="🧬", layout="wide")
    if not _password_gate():
        return
    _warm_imports()
    _defaults_into_state()
    _conditional_defaults()
    with st.sidebar:
        form_area = st.container()
        db_area = st.container()
    with db_area:
        store = sidebar_database()
    with form_area:
        sidebar_form(store)

    st.title("AutoModel")
    st.caption("Evolves a convolutional network for an image dataset with a genetic algorithm. "
               "Set up a search in the sidebar and press **Start**; the search runs on in its own process "
               "when you close this tab.")
    # One fixed slot per part, whatever is shown: while a fragment redraws every second, Streamlit
    # may skip removing elements of the previous full run, and an element that moved would then
    # show twice. In fixed slots a part can only be replaced in place.
    flash_slot, picker_slot, notice_slot, panel_slot, watch_slot, settings_slot, compare_slot = (
        st.container() for _ in range(7))
    with flash_slot:
        _show_flash()
    if store is None:
        with notice_slot:
            st.error(st.session_state.get("_db_error", "The database cannot be used."))
            st.info("Pick another file in the sidebar's **Database file** box; the damaged one is left untouched.")
        return
    try:
        runs = jobs.reconcile(store)
    except StoreError as exc:
        notice_slot.error(str(exc))
        return
    db_path = str(store.path)
    if not runs:
        notice_slot.info("No runs in this database yet. The defaults are the **Quick demo**: bundled digits on "
                         "the CPU, about a minute — press **Start** in the sidebar.")
        with watch_slot:
            st.fragment(run_every=2)(_watch_for_changes)(db_path, _signature(runs))
        return

    newest_first = [r["run_id"] for r in reversed(runs)]
    by_id = {r["run_id"]: r for r in runs}
    active = next((r for r in runs if r.get("status") in ACTIVE_STATUSES), None)
    if st.session_state.get("run_pick") not in by_id:
        st.session_state["run_pick"] = active["run_id"] if active else newest_first[0]
    run_id = picker_slot.selectbox("Run", newest_first, key="run_pick",
                                   format_func=lambda rid: views.run_label(by_id[rid]))
    if active and active["run_id"] != run_id:
        with notice_slot:
            st.info(f"Run **{active['run_id']}** is {active['status']}.")
            st.button("Show the active run", key="show_active",
                      on_click=lambda rid=active["run_id"]: st.session_state.update(run_pick=rid))

    run = by_id[run_id]
    live = _busy(run) or _launching_for(run_id) is not None
    # Always a fragment, so the panel keeps its shape when a run goes live or ends; only the timer
    # differs. Idle, a cheap watcher redraws the page when a run starts or ends elsewhere.
    with panel_slot:
        st.fragment(run_every=1 if live else None)(run_panel)(db_path, run_id, live)
    if not live:
        with watch_slot:
            st.fragment(run_every=2)(_watch_for_changes)(db_path, _signature(runs))

    with settings_slot.expander("Run settings"):
        st.json(run.get("config") or {}, expanded=False)
        st.caption(f"Resume from a terminal: `python -m automodel resume {run_id} --db {db_path}`")
        if run.get("status") in ("failed", "interrupted"):
            tail = jobs.log_tail(_run_dir(store, run_id) / "search.log")
            if tail:
                st.caption("End of the search log")
                st.code(tail, language=None)
    with compare_slot:
        runs_block(store, runs)


main()
