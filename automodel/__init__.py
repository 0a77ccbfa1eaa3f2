"""AutoModel: find a convolutional network for an image dataset by evolution."""

from __future__ import annotations

__all__ = ["load_model", "predict"]
__version__ = "0.2.0"


def __getattr__(name: str):
    # Lazy, so that `import automodel.store` (the page, readers) does not pay for importing torch.
    if name == "load_model":
        from .export import load_model
        return load_model
    if name == "predict":
        from .training.predict import predict
        return predict
    raise AttributeError(f"module 'automodel' has no attribute {name!r}")
