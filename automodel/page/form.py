"""The page's settings form: presets, every setting of a search with its help, validation to one
sentence, and Start (whose rules are ``jobs.start_search``'s)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, TypedDict

import streamlit as st

from automodel.config import (
    ACTIVATIONS,
    AUGMENTATIONS,
    BACKENDS,
    BLOCK_KINDS,
    CROSSOVER_METHODS,
    DEVICES,
    DOWNSAMPLING,
    FINAL_STARTS,
    HEADS,
    OPTIMIZERS,
    PLANNED,
    SELECTION_METHODS,
    Config,
    ConfigError,
    resolve_image_size,
    setting_help,
)
from automodel.errors import DatasetError
from automodel.page import access as page_access
from automodel.page import sections as page_sections
from automodel.page import views
from automodel.process import jobs
from automodel.store import Store, StoreError, default_db_path

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
BLOCK_HELP = {
    "plain": "plain (conv, BN, activation)",
    "residual": "residual (two convs + skip)",
    "separable": "depthwise-separable",
}
WORKER_CHOICES = ["auto", 1, 2, 3, 4, 6, 8, 12, 16]
IMAGE_SIZE_CHOICES = ["auto", 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 512]
HEAD_HELP = {"flatten": "flatten (map ≤ 4×4)", "avgmax": "global average + max pool", "gap": "global average pool"}
SELECTION_HELP = {
    "roulette": "roulette wheel (fitness-proportional)",
    "tournament": "tournament",
    "rank": "rank-based",
    "truncation": "truncation (best fraction)",
    "sus": "stochastic universal sampling",
}
CROSSOVER_HELP = {"one_point": "one point", "two_point": "two point", "uniform": "uniform"}


def defaults_into_state() -> None:
    """Put the Quick demo settings into the form's widget state once per browser session."""
    if st.session_state.get("_form_ready"):
        return
    _apply_config(views.preset_config("Quick demo"))
    st.session_state.setdefault("db_path", os.environ.get("AUTOMODEL_DB") or str(default_db_path()))
    st.session_state["_form_ready"] = True


def conditional_defaults() -> None:
    """Widgets drawn only for some choices lose their state while hidden: give it back."""
    st.session_state.setdefault("folder_path", "")
    st.session_state.setdefault("limit_mb", 2048)
    st.session_state.setdefault("limit_files", 200_000)
    st.session_state.setdefault("cfg_image_size", "auto")


def _apply_config(config: dict[str, Any]) -> None:
    """Set every form widget from a config dict (used by the presets)."""
    st.session_state["dataset_choice"] = views.dataset_choice_for(config["dataset"])
    if st.session_state["dataset_choice"] == views.FOLDER_CHOICE:
        st.session_state["folder_path"] = config["dataset"]
    st.session_state["budget_choice"] = views.budget_choice_for(config.get("budget_s"))
    st.session_state["budget_manual"] = bool(config.get("overrides"))
    for name in views.FORM_FIELDS:
        if name in ("budget_s", "overrides"):  # the budget's own widgets, above
            continue
        value = config[name]
        if name == "objectives":
            value = [v for v in value if v != "accuracy"]
        st.session_state[f"cfg_{name}"] = "" if value is None and name in ("ray_address", "mlflow") else value
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


FORM_OPEN_KEY = "new_search_open"  # session state: whether the form's expander is open


def keep_form_state() -> None:
    """Keep the form's values while it is not drawn (Streamlit forgets the state of a widget that
    was left out of a run, unless the value is written back at the start of the run)."""
    for key in list(st.session_state):
        if isinstance(key, str) and key.startswith(("cfg_", "space_")) or key in _KEPT_KEYS:
            st.session_state[key] = st.session_state[key]


_KEPT_KEYS = ("dataset_choice", "folder_path", "limit_mb", "limit_files", "budget_choice", "budget_manual")


def sidebar_form(store: Store | None, data_dir: Path, cwd: Path) -> None:
    """The settings form, presets and the Start button, in an expander that is drawn only while open
    (a browser takes a second or more to draw the whole form). It starts open when the database has
    no runs yet. ``data_dir``: where built-in datasets are read (and the default dataset root);
    ``cwd``: the folder a search is started in."""
    if "_form_open_at_start" not in st.session_state:
        st.session_state["_form_open_at_start"] = store is None or not store.list_runs()
    page_sections.lazy_expander(
        "New search",
        FORM_OPEN_KEY,
        lambda: _form(store, data_dir, cwd),
        expanded=st.session_state["_form_open_at_start"],
    )


def _form(store: Store | None, data_dir: Path, cwd: Path) -> None:
    st.caption("Presets")
    left, right = st.columns(2)
    left.button(
        "Quick demo",
        key="preset_quick",
        on_click=_apply_preset,
        args=("Quick demo",),
        width="stretch",
        help="Bundled digits on the CPU: under a minute, no network, no GPU.",
    )
    st.button(
        "Your own images",
        key="preset_own",
        on_click=_apply_preset,
        args=("Your own images",),
        width="stretch",
        help="Upload a .zip of your image folder: a few minutes for a few thousand small images on a CPU.",
    )
    right.button(
        "CIFAR-10",
        key="preset_cifar",
        on_click=_apply_preset,
        args=("CIFAR-10",),
        width="stretch",
        help="CIFAR-10 sized for one GPU (downloads the data on first use).",
    )
    # Parts drawn only for some choices sit in containers of their own, so that the elements after
    # them keep their places (Streamlit can leave a moved element behind while a fragment redraws).
    with st.container():
        if st.session_state.get("preset_note"):
            st.caption(f"Loaded the **{st.session_state['preset_note']}** preset; change anything below.")

    choice = st.selectbox("Dataset", list(views.DATASET_CHOICES), key="dataset_choice")
    upload = None
    with st.container():
        if choice == views.FOLDER_CHOICE:
            st.text_input(
                "Folder path on the server",
                key="folder_path",
                placeholder="/path/to/images",
                help="Class sub-folders of images, or train/ and test/ folders holding them.",
            )
        elif choice == views.UPLOAD_CHOICE:
            upload = st.file_uploader(
                "Image folder as .zip",
                type=["zip"],
                key="upload",
                help="Class folders of images (flat) or train/ and test/ folders of them.",
            )
            with st.expander("Upload limits"):
                st.number_input("Largest unpacked size (MB)", min_value=1, step=256, key="limit_mb")
                st.number_input("Most files in the archive", min_value=1, step=10_000, key="limit_files")
                st.caption(
                    "Checked before anything is unpacked. Entries with absolute paths, '..' or links "
                    "are refused; files that are not images are ignored and counted."
                )
        if choice in (views.FOLDER_CHOICE, views.UPLOAD_CHOICE):
            st.selectbox("Image size (longer side, pixels)", IMAGE_SIZE_CHOICES, **cfg("image_size"))
        if choice == views.FOLDER_CHOICE:
            _folder_preview(data_dir)

    st.subheader("How long may the search take?")
    budget = views.BUDGET_CHOICES[
        st.selectbox(
            "Time budget",
            list(views.BUDGET_CHOICES),
            key="budget_choice",
            label_visibility="collapsed",
            help="The whole run, final training included. The search times a few training steps, then plans "
            "how many candidates, generations and epochs fit, and how long the final training may be.",
        )
    ]
    manual = st.checkbox(
        "Set population, generations and epochs myself",
        key="budget_manual",
        disabled=budget is None,
        help="Keep the values below instead of the plan; the budget still ends the search.",
    )
    planned = budget is not None and not manual  # the plan chooses these: shown, not editable
    with st.container():
        if planned:
            st.caption(
                "Population, generations, epochs and final epochs below are chosen from the budget "
                "when the search starts."
            )

    st.subheader("Genetic algorithm")
    a, b = st.columns(2)
    a.number_input("Population", step=1, **cfg("population"), disabled=planned)
    b.number_input("Generations", step=1, **cfg("generations"), disabled=planned)
    selection = st.selectbox(
        "Selection", SELECTION_METHODS, **cfg("selection"), format_func=lambda m: SELECTION_HELP.get(m, m)
    )
    a, b = st.columns(2)
    a.number_input("Tournament size", step=1, **cfg("tournament_size"), disabled=selection != "tournament")
    b.number_input(
        "Truncation fraction",
        step=0.05,
        format="%.2f",
        **cfg("truncation_fraction"),
        disabled=selection != "truncation",
    )
    a, b = st.columns(2)
    a.selectbox("Crossover", CROSSOVER_METHODS, **cfg("crossover"), format_func=lambda m: CROSSOVER_HELP.get(m, m))
    b.number_input("Crossover rate", step=0.05, format="%.2f", **cfg("crossover_rate"))
    a, b = st.columns(2)
    a.number_input("Mutation rate", step=0.05, format="%.2f", **cfg("mutation_rate"))
    b.number_input("Elitism", step=1, **cfg("elitism"))
    st.number_input("Seed", step=1, **cfg("seed"))
    earlier = [r["run_id"] for r in (store.list_runs() if store is not None else []) if r.get("best_genome")]
    st.session_state["cfg_warm_start"] = [r for r in st.session_state.get("cfg_warm_start") or [] if r in earlier]
    st.multiselect("Start from earlier runs", earlier, **cfg("warm_start"), placeholder="no: sample generation 0")

    st.subheader("Training budget")
    a, b = st.columns(2)
    a.number_input("Epochs per candidate", step=1, **cfg("epochs"), disabled=planned)
    b.number_input("Final epochs", step=1, **cfg("final_epochs"), disabled=planned)
    a, b = st.columns(2)
    a.number_input("First rung (epochs)", step=1, **cfg("min_epochs"), disabled=planned)
    b.number_input("Keep 1 in", step=1, **cfg("reduction_factor"))
    a, b = st.columns(2)
    a.number_input("Time limit per candidate (s)", step=30.0, format="%.1f", **cfg("time_limit_s"))
    b.selectbox("Device", DEVICES, **cfg("device"))
    with st.expander("More training settings"):
        st.number_input("Batch size", value=None, step=1, **cfg("batch_size"), placeholder="auto")
        st.number_input("Validation fraction", step=0.05, format="%.2f", **cfg("val_fraction"))
        st.selectbox("Augmentation", AUGMENTATIONS, **cfg("augment"))
        st.selectbox(
            "The final training starts from",
            FINAL_STARTS,
            **cfg("final_from"),
            format_func=lambda v: {
                "auto": "auto: the winner's trained weights when there are some",
                "scratch": "fresh weights",
                "search": "the winner's trained weights",
            }.get(v, v),
        )
        st.number_input("Label smoothing", step=0.05, format="%.2f", **cfg("label_smoothing"))
        st.number_input("Gradient clipping (norm)", step=1.0, format="%.1f", **cfg("clip_grad_norm"))
        st.multiselect(
            "Trade accuracy against",
            ["params", "macs", "latency"],
            **cfg("objectives"),
            format_func=lambda c: views.COST_LABELS[c][1],
        )
        st.number_input(
            "Slowest model (ms per image)",
            value=None,
            step=0.5,
            format="%.2f",
            **cfg("max_latency_ms"),
            placeholder="no limit",
        )
        st.number_input("Largest model (parameters)", step=1_000_000, **cfg("max_params"))
        st.number_input(
            "Most multiply-accumulates per image",
            value=None,
            step=1_000_000,
            **cfg("max_macs"),
            placeholder="auto: 20,000 × pixels",
        )
        st.number_input(
            "Stop at validation accuracy",
            value=None,
            step=0.01,
            format="%.2f",
            **cfg("target_fitness"),
            placeholder="none",
        )
        st.number_input(
            "Time budget for the search (s)",
            value=None,
            step=60.0,
            format="%.0f",
            **cfg("time_budget_s"),
            placeholder="none",
        )
        prune = st.checkbox("Prune hopeless candidates after their first epoch", **cfg("prune"))
        st.number_input(
            "Prune below this share of the median",
            step=0.05,
            format="%.2f",
            **cfg("prune_fraction"),
            disabled=not prune,
        )
        st.checkbox("Children start from their parent's trained weights", **cfg("inherit_weights"))

    with st.expander("Where candidates train"):
        backend = st.selectbox(
            "Back end",
            BACKENDS,
            **cfg("backend"),
            format_func=lambda b: {"local": "this machine", "ray": "Ray (a cluster, or this machine)"}.get(b, b),
        )
        st.selectbox("Candidates at once (this machine)", WORKER_CHOICES, **cfg("workers"), disabled=backend != "local")
        off = backend != "ray"
        st.text_input("Ray address", **cfg("ray_address"), disabled=off, placeholder="start a local Ray")
        st.number_input("CPUs per candidate", step=1.0, format="%.1f", **cfg("cpus_per_candidate"), disabled=off)
        st.number_input(
            "GPUs per candidate",
            value=None,
            step=0.25,
            format="%.2f",
            disabled=off,
            **cfg("gpus_per_candidate"),
            placeholder="1 on cuda, else 0",
        )
        st.number_input("Retries of a lost candidate", step=1, **cfg("retries"), disabled=off)

    with st.expander("Experiment tracking"):
        st.text_input("MLflow tracking URI", **cfg("mlflow"), placeholder="off; default: mlflow.db beside the store")
        st.text_input("MLflow experiment", **cfg("mlflow_experiment"))

    with st.expander("Search space"):
        st.slider("Convolution blocks", 1, 12, key="space_conv_blocks")
        st.multiselect("Filters", SPACE_OPTIONS["filters"], key="space_filters")
        st.multiselect("Kernel sizes", SPACE_OPTIONS["kernel_sizes"], key="space_kernel_sizes")
        st.multiselect(
            "Block kinds",
            SPACE_OPTIONS["block_kinds"],
            key="space_block_kinds",
            format_func=lambda v: BLOCK_HELP.get(v, v),
        )
        st.multiselect("Activations", SPACE_OPTIONS["activations"], key="space_activations")
        st.multiselect(
            "Downsampling",
            SPACE_OPTIONS["downsampling"],
            key="space_downsampling",
            help="max or avg: 2×2 pooling after a block; stride: its first convolution has stride 2.",
        )
        st.multiselect("Heads", SPACE_OPTIONS["heads"], key="space_heads", format_func=lambda v: HEAD_HELP.get(v, v))
        st.multiselect(
            "Batch norm",
            SPACE_OPTIONS["batch_norm"],
            key="space_batch_norm",
            format_func=lambda v: "with" if v else "without",
        )
        st.slider("Dense layers", 0, 12, key="space_dense_layers")
        st.multiselect("Dense units", SPACE_OPTIONS["dense_units"], key="space_dense_units")
        st.multiselect("Dropout", SPACE_OPTIONS["dropout"], key="space_dropout", format_func=lambda v: f"{v:g}")
        st.multiselect("Optimizers", SPACE_OPTIONS["optimizers"], key="space_optimizers")
        st.caption(
            "Learning rates: drawn on a log scale between these bounds, given for a batch of 64 and "
            "scaled with the batch size."
        )
        for optimizer in OPTIMIZERS:
            a, b = st.columns(2)
            a.number_input(
                f"{optimizer} from", min_value=0.0, format="%.1e", step=None, key=f"space_lr_{optimizer}_low"
            )
            b.number_input(f"{optimizer} to", min_value=0.0, format="%.1e", step=None, key=f"space_lr_{optimizer}_high")
        st.multiselect(
            "Weight decays", SPACE_OPTIONS["weight_decays"], key="space_weight_decays", format_func=lambda v: f"{v:g}"
        )

    config, problem = _form_config(choice, upload, data_dir, budget, manual)
    with st.container():
        if problem:
            st.error(problem)
    if (
        st.button("Start", key="start", type="primary", width="stretch", disabled=problem is not None or store is None)
        and store is not None
    ):
        _start(store, config, upload, data_dir, cwd)
    with st.container():
        for kind, text in st.session_state.pop("_start_messages", []):
            getattr(st, kind)(text)


class WidgetKeys(TypedDict):
    key: str
    help: str


def cfg(name: str) -> WidgetKeys:
    """A settings widget's key and help: the help is the setting's own (``config.setting_help``)."""
    return {"key": f"cfg_{name}", "help": setting_help(name)}


def _folder_preview(data_dir: Path) -> None:
    """What the folder holds and what it will cost, before Start (headers only, remembered per folder)."""
    folder = (st.session_state.get("folder_path") or "").strip()
    path = Path(folder).expanduser()
    if not folder or not path.is_dir() or not page_access.inside_roots(path.resolve(), data_dir):
        return
    try:
        described = _describe_folder(
            str(path.resolve()),
            path.stat().st_mtime_ns,
            st.session_state.get("cfg_image_size"),
            st.session_state.get("cfg_device") or "auto",
        )
    except DatasetError as exc:
        st.warning(str(exc))
        return
    caption, warning = views.folder_preview(described)
    st.caption(caption)
    if warning:
        st.warning(warning)


@st.cache_data(show_spinner="Reading the folder's image headers…", max_entries=16)
def _describe_folder(folder: str, _mtime_ns: int, image_size: Any, device: str) -> dict[str, Any]:
    from automodel.data.folders import scan_folder

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    size, max_side = resolve_image_size(image_size if image_size is not None else "auto", device)
    return scan_folder(Path(folder), folder).describe(size, max_side)


def _form_config(
    choice: str, upload, data_dir: Path, budget: float | None, manual: bool
) -> tuple[dict[str, Any], str | None]:
    """The form as a validated config dict, or the one sentence saying what is wrong."""
    values: dict[str, Any] = {name: st.session_state.get(f"cfg_{name}") for name in views.FORM_FIELDS}
    values["budget_s"] = budget
    values["overrides"] = list(PLANNED) if budget is not None and manual else []
    values["space"] = {
        name: st.session_state.get(f"space_{name}") for name in views.SPACE_FIELDS if name != "learning_rates"
    }
    values["space"]["learning_rates"] = {
        optimizer: [
            st.session_state.get(f"space_lr_{optimizer}_low"),
            st.session_state.get(f"space_lr_{optimizer}_high"),
        ]
        for optimizer in OPTIMIZERS
    }
    dataset = views.DATASET_CHOICES.get(choice)
    problem = None
    if choice == views.FOLDER_CHOICE:
        dataset = (st.session_state.get("folder_path") or "").strip()
        if not dataset:
            problem = "The folder path is empty; give the path of an image folder on the server."
        elif not Path(dataset).expanduser().exists():
            problem = (
                f"dataset path {dataset} does not exist; give digits, cifar10, cifar100, mnist, "
                "fashion-mnist, or a path to an image folder or .zip of one."
            )
        elif not page_access.inside_roots(Path(dataset).expanduser().resolve(), data_dir):
            roots = ", ".join(str(r) for r in page_access.dataset_roots(data_dir))
            problem = (
                f"dataset folder {dataset} is outside the folders this page may read ({roots}); use a folder "
                "inside them, or ask whoever runs the page to add it to dataset_roots in "
                ".streamlit/secrets.toml."
            )
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


def _start(store: Store, config_dict: dict[str, Any], upload, data_dir: Path, cwd: Path) -> None:
    """Start a search from the form (the rules are jobs.start_search's); say how it went."""
    messages = st.session_state.setdefault("_start_messages", [])
    run_id = jobs.new_run_id()
    if upload is not None:
        config_dict = {**config_dict, "dataset": str((jobs.run_dir_for(store, run_id) / "upload").resolve())}
    try:
        pending = jobs.start_search(
            store,
            run_id,
            config_dict,
            data_dir=data_dir,
            cwd=cwd,
            prepare=(lambda run_dir: _unpack_upload(upload, run_dir)) if upload else None,
        )
    except (ConfigError, StoreError) as exc:  # refused before anything was recorded (RunActiveError included)
        recorded = store.get_run(run_id)
        if recorded is None:
            messages.append(("error", str(exc)))
            return
        messages.append(("error", views.sentence(recorded.get("reason") or str(exc))))
        st.session_state["run_pick"] = run_id
        return
    except Exception:  # noqa: BLE001 - the run is recorded as failed with the reason; show it
        reason = (store.get_run(run_id) or {}).get("reason") or "the search did not start"
        messages.append(("error", views.sentence(reason)))
        st.session_state["run_pick"] = run_id
        return
    st.session_state["launching"] = pending
    st.session_state["run_pick"] = run_id
    messages.append(("success", f"Started {run_id}."))


def _unpack_upload(upload, run_dir: Path) -> None:
    """Save the uploaded zip inside the run folder and unpack it there (DatasetError on refusal)."""
    from automodel.data.archive import ExtractLimits, safe_extract_zip

    zip_path = run_dir / "upload.zip"
    upload.seek(0)
    with open(zip_path, "wb") as out:
        shutil.copyfileobj(upload, out, length=1 << 20)
    limits = ExtractLimits(
        max_total_bytes=int(st.session_state["limit_mb"]) * 1024**2, max_files=int(st.session_state["limit_files"])
    )
    try:
        safe_extract_zip(zip_path, run_dir / "upload", limits)
    finally:
        zip_path.unlink(missing_ok=True)
