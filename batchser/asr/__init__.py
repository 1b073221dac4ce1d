"""Speech recognition in the same pass as the emotion model (``run --asr``)."""
from .base import AsrEngine, AsrInfo, AsrModelError, AsrOptions, Transcript, as_options
from .registry import ALIASES, ENGINES, load_asr

__all__ = ["ALIASES", "AsrEngine", "AsrInfo", "AsrModelError", "AsrOptions", "ENGINES", "Transcript", "as_options",
           "load_asr"]
