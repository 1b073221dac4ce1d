"""Names and types of the columns the scoring stages add: shared by the stages that make them,
the store that declares their tables and the readers that query them. Imports nothing of batchser.

A stage declares its columns as ``(name, pyarrow type)`` pairs; the store builds each table's
schema from what the run's stages declare (``store.layout.labels_schema``).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import pyarrow as pa

Fields = List[Tuple[str, pa.DataType]]

# the columns every row of labels/ and features/ starts with: where the utterance is
BASE_FIELDS: Fields = [("utt_id", pa.string()), ("rec_id", pa.string()), ("spk", pa.string()),
                       ("start", pa.float64()), ("end", pa.float64()), ("duration", pa.float64())]
REF_FIELDS: Fields = [("ref_label", pa.string())]
# a window of --timeline: where it is, then the prediction columns of the window
WINDOW_FIELDS: Fields = [("utt_id", pa.string()), ("rec_id", pa.string()), ("spk", pa.string()),
                         ("window", pa.int32()), ("start", pa.float64()), ("end", pa.float64())]


def score_column(label: str) -> str:
    return f"score_{label}"


def value_column(name: str) -> str:
    """A regression head's output (``value_arousal``)."""
    return f"value_{name}"


def prediction_fields(labels: Sequence[str], head_kind: str = "single_label") -> Fields:
    """label, score, then one column per class (``score_<class>``) or dimension (``value_<name>``).

    ``label``/``score`` are always there (null where the head gives no single label: regression,
    multi-label without a threshold, no head), so queries over several runs line up."""
    fields = [("label", pa.string()), ("score", pa.float32())]
    col = value_column if head_kind == "regression" else score_column
    return fields + [(col(l), pa.float32()) for l in labels]


def head_fields(name: str, classes: Sequence[str]) -> Fields:
    """``head_<name>_label``, ``head_<name>_score`` (the top class), ``head_<name>_score_<class>``."""
    return ([(f"head_{name}_label", pa.string()), (f"head_{name}_score", pa.float32())]
            + [(f"head_{name}_score_{c}", pa.float32()) for c in classes])


def float_fields(names: Sequence[str]) -> Fields:
    """Feature columns (prosody's, eGeMAPS'): one float64 each."""
    return [(c, pa.float64()) for c in names]
