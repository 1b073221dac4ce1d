"""``python -m batchser.cli``: the same command line as ``batchser``."""
from . import main

main()
