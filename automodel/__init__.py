"""AutoModel: find a convolutional network for an image dataset by evolution."""

from .export import load_model

__all__ = ["load_model"]
__version__ = "0.1.0"
