"""The settings form as data: dataset and budget choices, presets, and the form's values as a config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from typing import Any

from automodel.config import Config, SearchSpace
from automodel.store import ACTIVE_STATUSES

DATASET_CHOICES = {
    "Digits (bundled, offline)": "digits",
    "CIFAR-10": "cifar10",
    "CIFAR-100": "cifar100",
    "MNIST": "mnist",
    "Fashion-MNIST": "fashion-mnist",
    "Image folder on this server": None,
    "Upload a .zip of an image folder": None,
}
FOLDER_CHOICE = "Image folder on this server"
UPLOAD_CHOICE = "Upload a .zip of an image folder"

# Settings the form edits, by Config field (the search space lives under "space"): every field but
# the dataset (chosen with its own widgets) and compile (a GPU setting for the config file).
FORM_FIELDS = tuple(f.name for f in dataclass_fields(Config) if f.name not in ("dataset", "space", "compile"))
SPACE_FIELDS = tuple(f for f in SearchSpace.__dataclass_fields__)

PRESETS: dict[str, dict[str, Any]] = {
    # Bundled data on the CPU: three small generations and no budget, so that a first look shows
    # evolution at work on any machine (a plan for a budget of a minute or less may train one plain
    # CNN, the better use of that time, or end the first generation early on a slow CPU).
    "Quick demo": {
        "dataset": "digits",
        "budget_s": None,
        "overrides": [],
        "population": 8,
        "generations": 3,
        "epochs": 2,
        "min_epochs": 1,
        "final_epochs": 5,
        "device": "cpu",
        "batch_size": None,
    },
    # A folder or zip of a person's own images: ten minutes, planned from the budget.
    "Your own images": {
        "budget_s": 600.0,
        "overrides": [],
        "population": 8,
        "generations": 3,
        "epochs": 3,
        "min_epochs": 1,
        "reduction_factor": 3,
        "final_epochs": 15,
        "device": "auto",
        "batch_size": None,
    },
    # Sized for one GPU: 200 candidates with successive halving from 2 to 6 epochs, then 30 for the winner.
    # Global pooling heads learn slower in a few epochs, but pay off with the data and epochs here.
    "CIFAR-10": {
        "dataset": "cifar10",
        "budget_s": None,
        "overrides": [],
        "population": 10,
        "generations": 20,
        "epochs": 6,
        "min_epochs": 2,
        "reduction_factor": 3,
        "final_epochs": 30,
        "device": "auto",
        "batch_size": 256,
        "space": {"heads": ["flatten", "avgmax"]},
    },
}


# The page's answers to "How long may the search take?" (seconds; None: no budget, the settings as set).
BUDGET_CHOICES: dict[str, float | None] = {
    "30 seconds": 30.0,
    "1 minute": 60.0,
    "2 minutes": 120.0,
    "5 minutes": 300.0,
    "10 minutes": 600.0,
    "30 minutes": 1800.0,
    "1 hour": 3600.0,
    "2 hours": 7200.0,
    "4 hours": 14400.0,
    "8 hours": 28800.0,
    "no limit: the settings below": None,
}


def budget_choice_for(seconds: float | None) -> str:
    """The budget option that shows ``seconds`` (the nearest one for a value set elsewhere)."""
    if seconds is None:
        return next(label for label, value in BUDGET_CHOICES.items() if value is None)
    timed = {label: value for label, value in BUDGET_CHOICES.items() if value is not None}
    return min(timed, key=lambda label: abs(timed[label] - seconds))


NO_SEARCH = "no search: the budget was too short, so one plain CNN trained with all of it"


def _no_search(run: Mapping[str, Any]) -> bool:
    """Whether the run's budget made a direct plan (one network, no generations)."""
    return bool((run.get("plan") or {}).get("direct"))


def plan_caption(run: Mapping[str, Any]) -> str | None:
    """What a run's time budget became, for a person (None without a budget)."""
    plan = run.get("plan")
    if not plan:
        return None
    from automodel.evolution.budget import Plan, describe_duration

    text = f"Budget {Plan.from_dict(plan).summary()}"
    if run.get("elapsed_s") is not None and run.get("status") not in ACTIVE_STATUSES:
        text += f"; took {describe_duration(float(run['elapsed_s']))}"
    return text + "."


def preset_config(name: str) -> dict[str, Any]:
    """A full config dict (defaults + the preset's values, default search space)."""
    base = Config().to_dict()
    preset = dict(PRESETS[name])
    base["space"].update(preset.pop("space", {}))
    base.update(preset)
    return base


def dataset_choice_for(dataset: str) -> str:
    """The dataset selectbox option that shows ``dataset``."""
    for label, name in DATASET_CHOICES.items():
        if name == dataset:
            return label
    return FOLDER_CHOICE


def tracking_caption(run: Mapping[str, Any]) -> str | None:
    """Where the run is also logged (MLflow), how to see it there, and what failed, for the page."""
    tracking = run.get("tracking")
    if not tracking:
        return None
    where = f"MLflow experiment *{tracking.get('experiment')}* at `{tracking.get('uri')}`"
    text = f"Also logged to {where}; see it with `{tracking.get('ui')}`."
    if tracking.get("error"):
        text += f" {tracking['error']}."
    return text


def form_config(values: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Form values (keyed by Config field; search space under "space") → a Config dict to validate.

    Numbers arrive from number inputs as int or float already; whole floats for int fields are
    turned into ints so that validation judges the value, not its type.
    """
    template = Config()
    config: dict[str, Any] = {"dataset": dataset}
    for name in FORM_FIELDS:
        if name not in values:
            continue
        value = values[name]
        default = getattr(template, name)
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and isinstance(value, float)
            and value.is_integer()
        ):
            value = int(value)
        if name == "objectives":  # the form offers the costs; accuracy always comes first
            value = ["accuracy", *[v for v in (value or []) if v != "accuracy"]]
        if isinstance(value, str):
            value = value.strip()
            if not value and default is None:  # an empty optional text box means "not set"
                value = None
        config[name] = value
    space = dict(values.get("space") or {})
    config["space"] = {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in space.items()}
    if isinstance(space.get("learning_rates"), dict):
        config["space"]["learning_rates"] = {k: list(v) for k, v in space["learning_rates"].items()}
    return config
