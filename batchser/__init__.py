"""batchser: batch speech emotion recognition for Kaldi-style corpora.

From Python: ``batchser.run(path, out=...)`` (the CLI's run), ``batchser.EmotionRecognizer``
(label files or arrays in memory), ``batchser.open_results(out)`` (read an output directory).
"""
from .version import __version__

__all__ = ["EmotionRecognizer", "Prediction", "Results", "explain", "open_results", "run", "__version__"]


def __getattr__(name: str):
    # imported on first use: the CLI's start-up does not pay for pyarrow or torch unless it needs them
    if name in ("Results", "open_results"):
        from . import store

        return getattr(store, name)
    if name == "explain":
        from .llm import explain

        return explain
    if name in ("run", "EmotionRecognizer", "Prediction"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'batchser' has no attribute {name!r}")
