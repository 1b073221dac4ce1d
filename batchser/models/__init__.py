"""Model back-ends. ``load_backend`` resolves a --model value and builds the worker."""
from .base import BatchOutput, ModelInfo, normalise_label
from .registry import BACKENDS, load_backend, resolve_model
from .resolve import ModelNotAvailable

__all__ = ["BACKENDS", "BatchOutput", "ModelInfo", "ModelNotAvailable", "load_backend", "normalise_label",
           "resolve_model"]
