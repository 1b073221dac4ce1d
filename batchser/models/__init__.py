"""Model back-ends. ``load_backend`` resolves a --model value and builds the worker."""
from .base import BatchOutput, ModelInfo, normalise_label
from .resolve import ModelNotAvailable, load_backend, resolve_model

__all__ = ["BatchOutput", "ModelInfo", "ModelNotAvailable", "load_backend", "normalise_label", "resolve_model"]
