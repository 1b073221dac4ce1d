"""batchser: batch speech emotion recognition for Kaldi-style corpora."""
from .version import __version__

__all__ = ["Results", "open_results", "__version__"]


def __getattr__(name: str):
    # imported on first use: the CLI's start-up does not pay for pyarrow unless it reads results
    if name in ("Results", "open_results"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module 'batchser' has no attribute {name!r}")
