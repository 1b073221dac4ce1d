"""batchser: batch speech emotion recognition for Kaldi-style corpora."""
from .results import Results, open_results
from .version import __version__

__all__ = ["Results", "open_results", "__version__"]
