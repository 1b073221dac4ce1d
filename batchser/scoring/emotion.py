"""The emotion model as stages: the utterance's own prediction and embedding
(:class:`EmotionStage`), and ``--timeline``'s windows scored as utterances of their own
(:class:`TimelineStage`)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from ..audio import TARGET_SR
from ..batching import make_batches
from ..columns import WINDOW_FIELDS, Fields, prediction_fields, score_column, value_column
from ..models.base import Backend
from ..timeline import TimelineOptions, windows
from ..worker import MemoryBudget, ModelFailure, run_items
from .core import Batch, StageFailure


def prediction_columns(labels: Sequence[str], scores: Optional[np.ndarray], head_kind: str = "single_label",
                       threshold: Optional[float] = None) -> Dict:
    """The prediction columns of one row (``columns.prediction_fields``), by head kind:

    * single_label: ``label``/``score`` the top class, ``score_<class>`` the softmax;
    * multi_label: ``score_<class>`` the sigmoids, ``score`` the highest; ``label`` null, or with
      ``threshold`` the classes scoring at least it, highest first, joined by "," ("" for none);
    * regression: ``value_<name>`` the raw outputs, ``label``/``score`` null.
    """
    if scores is None or not len(labels):
        return {"label": None, "score": None}
    if head_kind == "regression":
        return {"label": None, "score": None, **{value_column(l): float(v) for l, v in zip(labels, scores)}}
    k = int(np.argmax(scores))
    r = {"label": labels[k], "score": float(scores[k])}
    if head_kind == "multi_label":
        order = np.argsort(-np.asarray(scores), kind="stable")
        r["label"] = None if threshold is None else ",".join(labels[i] for i in order if scores[i] >= threshold)
    for l, s in zip(labels, scores):
        r[score_column(l)] = float(s)
    return r


def _ids(items) -> str:
    ids = [it.utt.utt_id for it in items]
    return f"{', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"


class EmotionStage:
    """The back-end on each utterance: its embedding (and frames), class scores and label.
    Longer utterances run in windows (``max_seconds`` or the model's limit; ``long_audio``)."""

    name = "emotion"
    annotation_fields: Fields = []
    window_fields = None

    def __init__(self, backend: Backend, *, frames: bool = False, max_seconds: float = 600.0,
                 long_audio: str = "window", threshold: Optional[float] = None,
                 budget: Optional[MemoryBudget] = None, dtype: Optional[str] = None,
                 fe_options: Optional[Dict] = None):
        self.backend, self.frames, self.threshold, self.dtype = backend, frames, threshold, dtype
        self.fe_options = fe_options
        self.max_seconds, self.long_audio = max_seconds, long_audio
        self.budget = budget if budget is not None else MemoryBudget()
        self.prediction_fields = prediction_fields(backend.labels, backend.head_kind)

    def settings(self) -> Dict:
        b, info = self.backend, self.backend.info
        extra = {"head_kind": b.head_kind} if b.head_kind not in ("single_label", "none") else {}
        if self.threshold is not None:
            extra["threshold"] = self.threshold
        if self.fe_options:
            extra["fe_options"] = dict(sorted(self.fe_options.items()))
        return {**extra, "model": info.sha256 or info.id, "backend": info.backend, "labels": list(b.labels),
                "dtype": self.dtype, "max_seconds": self.max_seconds, "long_audio": self.long_audio}

    def run(self, batch: Batch) -> None:
        live = batch.live()
        n_events = len(self.budget.events)
        try:
            results, _, padded = run_items(self.backend, [it.wave for it in live], frames=self.frames,
                                           max_samples=int(self.max_seconds * TARGET_SR),
                                           long_audio=self.long_audio, budget=self.budget)
        except ModelFailure as e:
            raise StageFailure(
                f"the model failed on a batch of {len(live)} utterances ({_ids(live)}): {e}. This is not out of "
                "memory and not one utterance's fault, so the run stops instead of blaming them") from e
        batch.padded_seconds += padded / TARGET_SR
        batch.oom_events.extend(self.budget.events[n_events:])
        b = self.backend
        for it, r in zip(live, results):
            if r.error is not None:
                it.fail("model", f"{it.utt.utt_id}: {r.error}")
                continue
            it.embedding, it.frames, it.n_model_windows = r.embedding, r.frames, r.windows
            it.columns.update(prediction_columns(b.labels, r.scores, b.head_kind, self.threshold))


class TimelineStage:
    """``--timeline``: every window of each utterance run as an utterance of its own, the windows
    of the whole batch bucketed together into batches of ``batch_seconds``."""

    name = "timeline"
    prediction_fields: Fields = []
    annotation_fields: Fields = []

    def __init__(self, backend: Backend, opts: TimelineOptions, *, batch_seconds: float, max_batch: int,
                 budget: MemoryBudget, threshold: Optional[float] = None):
        self.backend, self.opts, self.threshold, self.budget = backend, opts, threshold, budget
        self.batch_seconds, self.max_batch = batch_seconds, max_batch
        self.window_fields = WINDOW_FIELDS + prediction_fields(backend.labels, backend.head_kind)

    def settings(self) -> Dict:
        return {"timeline": self.opts.to_list()}

    def run(self, batch: Batch) -> None:
        live = batch.live()
        spans = [windows(len(it.wave), self.opts) for it in live]
        flat = [(i, k, a, b) for i, sp in enumerate(spans) for k, (a, b) in enumerate(sp)]
        results: List[Optional[object]] = [None] * len(flat)
        for group in make_batches([(b - a) / TARGET_SR for _, _, a, b in flat], self.batch_seconds, self.max_batch):
            pieces = [live[flat[j][0]].wave[flat[j][2]:flat[j][3]] for j in group]
            try:
                res, _, _ = run_items(self.backend, pieces, frames=False, max_samples=max(len(p) for p in pieces),
                                      budget=self.budget)
            except ModelFailure as e:
                raise StageFailure(f"the model failed on a batch of timeline windows: {e}") from e
            for j, r in zip(group, res):
                results[j] = r
        rows: List[List[dict]] = [[] for _ in live]
        b = self.backend
        for (i, k, a, e), r in zip(flat, results):
            it = live[i]
            if it.error is not None:
                continue
            if r.error is not None:
                it.fail("model", f"{it.utt.utt_id}: timeline window {k} ({a / TARGET_SR:.2f}-{e / TARGET_SR:.2f} s): "
                                 f"{r.error}")
                continue
            t0 = it.utt.start or 0.0
            rows[i].append({"utt_id": it.utt.utt_id, "rec_id": it.utt.rec_id, "spk": it.utt.spk, "window": k,
                            "start": t0 + a / TARGET_SR, "end": t0 + e / TARGET_SR,
                            **prediction_columns(b.labels, r.scores, b.head_kind, self.threshold)})
        for it, w in zip(live, rows):
            if it.error is None:
                it.windows = w

