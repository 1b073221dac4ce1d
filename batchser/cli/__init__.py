"""Command line: ``batchser run``, ``segment``, ``features``, ``merge``, ``eval``, ``info``, ``prepare``, ...

One module per topic registers its commands on the group in :mod:`.app` (which also holds the
exit-code table); importing this package registers them all.
"""
from . import data, evaluation, explain, heads, report, run, segment  # noqa: F401  (each registers its commands)
from .app import EXIT_INPUT, EXIT_MODEL, EXIT_PARTIAL, EXIT_UNFINISHED, main

__all__ = ["EXIT_INPUT", "EXIT_MODEL", "EXIT_PARTIAL", "EXIT_UNFINISHED", "main"]
