"""The scoring core: a batch of decoded utterances in, rows and arrays out, no file I/O.

A run is a list of :class:`Stage` objects (the emotion model, timeline windows, transcripts,
trained heads, features) applied in order to a batch by :func:`score`. Each stage works on the
utterances no earlier stage failed, adds its columns to them or marks them failed with its error
stage, and declares the columns it adds, so that the store builds the tables' schemas from the
stages (``layout.labels_schema``) and the settings that change results from theirs. Rows are
assembled in one place, :func:`score`; the pipeline (files), the Python API (memory) and any
other engine call it the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..audio import TARGET_SR
from ..columns import Fields
from ..records import Utterance


class StageFailure(RuntimeError):
    """A stage failed in a way that is not one utterance's fault (the model raising something
    other than out-of-memory, a recogniser failing on every utterance alone too): the caller stops
    instead of writing every utterance into errors/."""


@dataclass
class Scored:
    """One utterance on its way through the stages."""

    utt: Utterance
    wave: Optional[np.ndarray]  # 16 kHz mono float32 (None: it failed to decode)
    features: Optional[Dict[str, float]] = None  # computed by the decoders (--features)
    cut_short: bool = False  # its segment ended past the recording's end
    columns: Dict[str, object] = field(default_factory=dict)  # what the stages added
    embedding: Optional[np.ndarray] = None
    frames: Optional[np.ndarray] = None
    windows: List[dict] = field(default_factory=list)  # --timeline rows
    n_model_windows: int = 1  # > 1: longer than the model takes, run in windows
    error: Optional[Tuple[str, str]] = None  # (stage, message): the first stage that failed it

    def fail(self, stage: str, message: str) -> None:
        if self.error is None:
            self.error = (stage, message)


@dataclass
class Batch:
    """The utterances of one batch and what the stages measured on it."""

    items: List[Scored]
    padded_seconds: float = 0.0  # what the emotion model ran, padding included
    oom_events: List[dict] = field(default_factory=list)  # out-of-memory back-offs during this batch

    def live(self) -> List[Scored]:
        """The utterances no stage has failed yet."""
        return [it for it in self.items if it.error is None]


class Stage(Protocol):
    """What the core needs of a stage. Columns are ``(name, pyarrow type)`` pairs."""

    name: str  # also the key of its time in BatchResult.seconds
    prediction_fields: Fields  # columns of the prediction (before where the arrays are)
    annotation_fields: Fields  # columns computed beside it (after)
    window_fields: Optional[Fields]  # the columns of a timeline window, or None: no windows

    def settings(self) -> Dict:
        """What changes this stage's results (settings.json: a resume with other values is refused)."""
        ...

    def run(self, batch: Batch) -> None:
        """Add columns (or arrays) to ``batch.live()``, or fail some of them; raise
        :class:`StageFailure` when the fault is not an utterance's."""
        ...


@dataclass
class BatchResult:
    """What one batch gave: rows in input order, their arrays, the error rows, and measures."""

    rows: List[dict]
    embeddings: Optional[np.ndarray]  # (rows, dim), None without an embedding stage
    frames: List[Optional[np.ndarray]]
    windows: List[dict]
    errors: List[Tuple[str, str, str]]  # (utt_id, stage, message): decode errors first, then the stages'
    audio_seconds: float = 0.0
    padded_seconds: float = 0.0
    n_windowed: int = 0
    seconds: Dict[str, float] = field(default_factory=dict)  # per stage
    oom_events: List[dict] = field(default_factory=list)


def base_row(u: Utterance, duration: float, *, with_ref: bool, cut_short: bool = False) -> Dict:
    """The columns every row starts with: where the utterance is (recording time, seconds).

    ``cut_short``: the segment's end lay past its recording's end; the row says where it ended.
    """
    start = u.start or 0.0
    r = {"utt_id": u.utt_id, "rec_id": u.rec_id, "spk": u.spk, "start": start,
         "end": u.end if u.end is not None and not cut_short else start + duration, "duration": duration}
    if with_ref:
        r["ref_label"] = u.ref_label
    return r


def score(stages: Sequence[Stage], items: Sequence[Scored], *, with_ref: bool) -> BatchResult:
    """Run ``stages`` in order over ``items`` (an item with ``error`` set failed before: decoding)
    and assemble the rows of the ones none failed. No file is read or written.

    Raises:
        StageFailure: a stage failed in a way that is not one utterance's fault.
    """
    decode_errors = [(it.utt.utt_id, *it.error) for it in items if it.error is not None]
    batch = Batch([it for it in items if it.error is None])
    seconds: Dict[str, float] = {}
    for st in stages:
        if not batch.live():
            break
        t = time.perf_counter()
        st.run(batch)
        seconds[st.name] = seconds.get(st.name, 0.0) + time.perf_counter() - t
    ok = batch.live()
    res = BatchResult(rows=[], embeddings=None, frames=[], windows=[], seconds=seconds,
                      errors=decode_errors + [(it.utt.utt_id, *it.error) for it in batch.items if it.error is not None],
                      padded_seconds=batch.padded_seconds, oom_events=batch.oom_events)
    for it in ok:
        dur = len(it.wave) / TARGET_SR
        res.rows.append({**base_row(it.utt, dur, with_ref=with_ref, cut_short=it.cut_short), **it.columns})
        res.frames.append(it.frames)
        res.windows.extend(it.windows)
        res.audio_seconds += dur
        res.n_windowed += it.n_model_windows > 1
    if ok and ok[0].embedding is not None:
        res.embeddings = np.stack([it.embedding for it in ok])
    return res


def fields_of(stages: Sequence[Stage]) -> Tuple[Fields, Fields, Optional[Fields]]:
    """(prediction columns, annotation columns, window columns or None) of a run's stages."""
    windows = [st.window_fields for st in stages if st.window_fields is not None]
    return ([f for st in stages for f in st.prediction_fields], [f for st in stages for f in st.annotation_fields],
            windows[0] if windows else None)


def settings_of(stages: Sequence[Stage]) -> Dict:
    """The settings of every stage, in one dict (settings.json)."""
    out: Dict = {}
    for st in stages:
        out.update(st.settings())
    return out
