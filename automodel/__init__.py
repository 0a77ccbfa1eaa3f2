"""AutoModel: find a convolutional network for an image dataset by evolution.

    import automodel
    run = automodel.search("digits", budget="30s")
    run.best.model(), run.records(), automodel.predict(run.best.model_path, "photos/")

The names below are imported on first use, so that ``import automodel.store`` (the page, readers)
does not pay for importing torch. :mod:`automodel.api` documents them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automodel.api import Best, Run, open_run, runs, search
    from automodel.training.export import load_model
    from automodel.training.predict import Prediction, predict

__all__ = ["Best", "Prediction", "Run", "load_model", "open_run", "predict", "runs", "search"]
__version__ = "0.2.0"

_HOMES = {
    "search": "api",
    "runs": "api",
    "open_run": "api",
    "Run": "api",
    "Best": "api",
    "load_model": "training.export",
    "predict": "training.predict",
    "Prediction": "training.predict",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'automodel' has no attribute {name!r}")
