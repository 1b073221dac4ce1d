"""The on-disk layout of an output directory: names, part numbering and table schemas.

The contract (also in the README)::

    OUT/labels/part-NNNNN.parquet      one row per successful utterance
    OUT/embeddings/part-NNNNN.npy      rows aligned with the labels part of the same name
    OUT/frames/part-NNNNN.npy          (--granularity frame) frame embeddings, concatenated
    OUT/npy/<utt>.npy                  (--npy-layout per-utt) one file per utterance
    OUT/errors/part-NNNNN.parquet      utt_id, stage, message
    OUT/timeline/part-NNNNN.parquet    (--timeline) class scores of each window of the labels
                                       part of the same name, in recording time
    OUT/features/part-NNNNN.parquet    (batchser features) prosody columns, no model
    OUT/explanations.parquet           (prosody) each utterance relative to its speaker
    OUT/heads/NAME/                    (train-head) a trained head: head.safetensors, head.json, confusion.png
    OUT/head_predictions/NAME/part-NNNNN.parquet  (apply-head) the head on the labels part of the same name
    OUT/settings.json                  what changes results: resuming with other values is refused
    OUT/manifest.json                  what ran, how long, with which versions
    OUT/shards/shard-IIII-of-NNNN/     one complete output directory per array task

Parts of a namespace (one per device process, ``part-d1-00012``) and merged shards
(``part-s0003-00012``) sit beside plain parts; readers glob ``part-*``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa

LABELS, EMBEDDINGS, FRAMES, NPY, ERRORS, FEATURES = "labels", "embeddings", "frames", "npy", "errors", "features"
SETTINGS, MANIFEST, EXPLANATIONS = "settings.json", "manifest.json", "explanations.parquet"
SHARDS, CACHE, EVAL, VAD, TIMELINE = "shards", ".cache", "eval", "vad", "timeline"
HEADS, HEAD_PREDICTIONS = "heads", "head_predictions"  # train-head's heads/NAME/, apply-head's tables

# part-00012.parquet, or part-d1-00012.parquet in a namespace (one per device process / shard)
PART_RE = re.compile(r"^part-(?:(?P<ns>[A-Za-z0-9]+)-)?(?P<n>\d{5,})\.(?:parquet|npy)$")
NAMESPACE_RE = re.compile(r"[A-Za-z0-9]+")


def part_stem(namespace: Optional[str], n: int) -> str:
    return f"part-{namespace}-{n:05d}" if namespace else f"part-{n:05d}"


def parts(out: Path, table: str):
    """The visible Parquet parts of ``table`` in order (a part is visible once renamed)."""
    return sorted((Path(out) / table).glob("part-*.parquet"))


def shard_dir(out: Path, shard_name: str) -> Path:
    return Path(out) / SHARDS / shard_name


def summary_path(out: Path, by: str, suffix: str = ".parquet") -> Path:
    return Path(out) / f"summary_by_{by}{suffix}"


def score_column(label: str) -> str:
    return f"score_{label}"


def value_column(name: str) -> str:
    """A regression head's output (``value_arousal``)."""
    return f"value_{name}"


def prediction_fields(labels: Sequence[str], head_kind: str = "single_label"):
    """label, score, then one column per class (``score_<class>``) or dimension (``value_<name>``).

    ``label``/``score`` are always there (null where the head gives no single label: regression,
    multi-label without a threshold, no head), so queries over several runs line up."""
    fields = [("label", pa.string()), ("score", pa.float32())]
    col = value_column if head_kind == "regression" else score_column
    return fields + [(col(l), pa.float32()) for l in labels]


ERROR_SCHEMA = pa.schema([("utt_id", pa.string()), ("stage", pa.string()), ("message", pa.string())])

# the columns every row of labels/ and features/ starts with: where the utterance is
BASE_FIELDS = [("utt_id", pa.string()), ("rec_id", pa.string()), ("spk", pa.string()),
               ("start", pa.float64()), ("end", pa.float64()), ("duration", pa.float64())]


def labels_schema(labels: Sequence[str], *, frames: bool, with_ref: bool, per_utt: bool = False,
                  features: Sequence[str] = (), head_kind: str = "single_label",
                  heads: Sequence = (), asr: bool = False) -> pa.Schema:
    fields = BASE_FIELDS + prediction_fields(labels, head_kind)
    if asr:  # run --asr: the transcript (stripped) and its language (detected, given, or the model's only one)
        fields += [("text", pa.string()), ("language", pa.string())]
    fields += [("model", pa.string()), ("emb_file", pa.string()), ("emb_row", pa.int64())]
    if frames:
        fields += [("frame_file", pa.string()), ("frame_offset", pa.int64()), ("frame_count", pa.int64())]
    if per_utt:
        fields += [("npy_file", pa.string())]
    fields += feature_fields(features)
    for name, classes in heads:  # run --head: a trained head's prediction beside the model's own
        fields += head_fields(name, classes)
    if with_ref:
        fields += [("ref_label", pa.string())]
    return pa.schema(fields)


def timeline_schema(labels: Sequence[str], head_kind: str = "single_label") -> pa.Schema:
    """One row per window: where it is (recording time, seconds), then the prediction columns."""
    fields = [("utt_id", pa.string()), ("rec_id", pa.string()), ("spk", pa.string()), ("window", pa.int32()),
              ("start", pa.float64()), ("end", pa.float64())]
    return pa.schema(fields + prediction_fields(labels, head_kind))


def head_fields(name: str, classes: Sequence[str]):
    """``head_<name>_label``, ``head_<name>_score`` (the top class), ``head_<name>_score_<class>``."""
    return ([(f"head_{name}_label", pa.string()), (f"head_{name}_score", pa.float32())]
            + [(f"head_{name}_score_{c}", pa.float32()) for c in classes])


def head_predictions_schema(name: str, classes: Sequence[str]) -> pa.Schema:
    return pa.schema([("utt_id", pa.string())] + head_fields(name, classes))


def features_schema(*, with_ref: bool, features: Sequence[str] = ("prosody",)) -> pa.Schema:
    """``batchser features``: where the utterance is, its feature columns, its reference label."""
    return pa.schema(BASE_FIELDS + feature_fields(features) + ([("ref_label", pa.string())] if with_ref else []))


def feature_fields(features: Sequence[str]):
    """The columns of the feature sets (``--features``): prosody's, then eGeMAPS' 88."""
    fields = prosody_fields() if "prosody" in features else []
    if "egemaps" in features:
        from ..egemaps import columns

        fields += [(c, pa.float64()) for c in columns()]
    return fields


def prosody_fields():
    from ..prosody import COLUMNS

    return [(c, pa.float64()) for c in COLUMNS]


def per_utt_name(utt_id: str) -> str:
    """File stem for ``--npy-layout per-utt``: the id itself when safe, else a sanitised id plus a
    short hash (so two ids that sanitise alike never share a file). Never escapes its directory."""
    import hashlib

    from ..records import safe_filename

    safe = safe_filename(utt_id)
    if safe == utt_id:
        return safe
    return f"{safe[:180]}-{hashlib.sha1(utt_id.encode('utf-8')).hexdigest()[:8]}"
