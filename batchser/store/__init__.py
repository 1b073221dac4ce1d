"""The output directory: the only code that knows its layout.

* :mod:`.layout` names, part numbering and table schemas;
* :mod:`.atomic` whole-file-or-nothing writes;
* :mod:`.writer` the writer (parts, atomic commit, resume scan, row building);
* :mod:`.results` the reader, ``open_results``;
* :mod:`.manifest` settings and manifest contents;
* :mod:`.merge` joining array-job shards;
* :mod:`.explanations` the prosody explanations table.
"""
from .layout import score_column, shard_dir
from .merge import MergeError, merge, shard_status
from .results import Results, open_results
from .writer import OutputWriter, PartWriter, committed_ids, drop_errors, features_writer, prediction_columns, utterance_row
from .explanations import write_explanations

__all__ = ["MergeError", "OutputWriter", "PartWriter", "Results", "committed_ids", "drop_errors", "features_writer", "merge",
           "open_results", "prediction_columns", "score_column", "shard_dir", "shard_status", "utterance_row",
           "write_explanations"]
