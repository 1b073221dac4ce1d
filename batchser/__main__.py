"""``python -m batchser``: the same command line as ``batchser``."""
from .cli import main

main()
