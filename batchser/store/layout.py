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
    OUT/explanations/part-NNNNN.parquet  (batchser explain) a language model's text per utterance
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

from ..columns import (BASE_FIELDS, REF_FIELDS, Fields, head_fields,  # noqa: F401 (names for readers)
                       score_column, value_column)

LABELS, EMBEDDINGS, FRAMES, NPY, ERRORS, FEATURES = "labels", "embeddings", "frames", "npy", "errors", "features"
SETTINGS, MANIFEST, EXPLANATIONS = "settings.json", "manifest.json", "explanations.parquet"
SHARDS, CACHE, EVAL, VAD, TIMELINE = "shards", ".cache", "eval", "vad", "timeline"
HEADS, HEAD_PREDICTIONS = "heads", "head_predictions"  # train-head's heads/NAME/, apply-head's tables
LLM_EXPLANATIONS = "explanations"  # batchser explain: a language model's texts, in parts

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


ERROR_SCHEMA = pa.schema([("utt_id", pa.string()), ("stage", pa.string()), ("message", pa.string())])


def labels_schema(*, predictions: Fields, annotations: Fields = (), frames: bool, with_ref: bool,
                  per_utt: bool = False) -> pa.Schema:
    """The labels table: where the utterance is, what the model(s) predicted (``predictions``:
    the emotion model's columns, a transcript), where its arrays are, then the columns computed
    beside the prediction (``annotations``: features, trained heads), then the reference label.
    The run's stages declare ``predictions`` and ``annotations`` (``batchser.scoring``)."""
    fields = BASE_FIELDS + list(predictions)
    fields += [("model", pa.string()), ("emb_file", pa.string()), ("emb_row", pa.int64())]
    if frames:
        fields += [("frame_file", pa.string()), ("frame_offset", pa.int64()), ("frame_count", pa.int64())]
    if per_utt:
        fields += [("npy_file", pa.string())]
    fields += list(annotations)
    if with_ref:
        fields += REF_FIELDS
    return pa.schema(fields)


def timeline_schema(window_fields: Fields) -> pa.Schema:
    """One row per window, its columns as the timeline stage declares them: where it is
    (``columns.WINDOW_FIELDS``: recording time, seconds), then the prediction columns."""
    return pa.schema(list(window_fields))


def head_predictions_schema(name: str, classes: Sequence[str]) -> pa.Schema:
    return pa.schema([("utt_id", pa.string())] + head_fields(name, classes))


def features_schema(*, annotations: Fields, with_ref: bool) -> pa.Schema:
    """``batchser features``: where the utterance is, its feature columns, its reference label."""
    return pa.schema(BASE_FIELDS + list(annotations) + (REF_FIELDS if with_ref else []))


def per_utt_name(utt_id: str) -> str:
    """File stem for ``--npy-layout per-utt``: the id itself when safe, else a sanitised id plus a
    short hash (so two ids that sanitise alike never share a file). Never escapes its directory."""
    import hashlib

    from ..records import safe_filename

    safe = safe_filename(utt_id)
    if safe == utt_id:
        return safe
    return f"{safe[:180]}-{hashlib.sha1(utt_id.encode('utf-8')).hexdigest()[:8]}"
