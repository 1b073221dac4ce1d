"""The output directory: the only code that knows its layout.

* :mod:`.layout` names, part numbering and table schemas;
* :mod:`.atomic` whole-file-or-nothing writes;
* :mod:`.writer` the writer (parts, atomic commit, resume scan);
* :mod:`.results` the reader, ``open_results``;
* :mod:`.manifest` the manifest's contents;
* :mod:`.head_predictions` apply-head's tables (``head_predictions/NAME/``);
* :mod:`.merging` joining array-job shards (`merge`);
* :mod:`.explanations` the prosody explanations table;
* :mod:`.export` the Kaldi forms (``batchser export``);
* :mod:`.lock` one writer per directory; :mod:`.claim` foreign directories refused, ``--overwrite``.
"""
from .claim import ForeignDirectory, check_claimable, clear_ours
from .lock import OutputBusy, OutputLock
from .layout import score_column, shard_dir, value_column
from .merging import MergeError, merge, shard_status
from .results import Results, open_results
from .writer import OutputWriter, PartWriter, committed_ids, committed_table, count_rows, features_writer
from .explanations import ExplanationsWriter, write_explanations
from .head_predictions import write_head_predictions

__all__ = ["ForeignDirectory", "OutputBusy", "OutputLock", "check_claimable", "clear_ours", "MergeError", "OutputWriter", "PartWriter", "Results", "committed_ids", "committed_table", "count_rows", "features_writer", "merge",
           "open_results", "score_column", "shard_dir", "shard_status", "value_column",
           "write_explanations", "write_head_predictions", "ExplanationsWriter"]
