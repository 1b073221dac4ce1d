"""batchser from Python: ``batchser.run(...)`` (the CLI's run) and an in-memory recogniser.

    import batchser
    rec = batchser.EmotionRecognizer(model="/models/e2v", device="cpu")
    pred = rec.predict(["a.wav", "b.flac"])          # or arrays: rec.predict([x], sampling_rate=8000)
    pred.labels        # DataFrame: the labels/ columns (utt_id, duration, label, score, score_<class>...)
    pred.embeddings    # (n, dim) float32, row i = labels row i = input i

``predict`` decodes, buckets and batches exactly as ``batchser run`` does and scores each batch
with the same core (``batchser.scoring.score``: same stages, same windows for long inputs, same
back-ends), so its numbers equal a run's on the same audio.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from .audio import TARGET_SR, AudioError, decode_utterance, resample
from .batching import make_batches
from .config import RunConfig, RunSummary
from .records import AudioSource, Utterance, is_url, redact
from .policy import batch_limits, parse_devices, resolve_dtype
from .columns import BASE_FIELDS
from .scoring import AsrStage, EmotionStage, Scored, fields_of, score
from .worker import MemoryBudget

Audio = Union[str, os.PathLike, np.ndarray]


def run(inputs: Union[str, os.PathLike], *, out: Union[str, os.PathLike], log=None, **options) -> RunSummary:
    """``batchser run PATH --out OUT`` from Python (PATH: a data dir, wav.scp, audio file, list
    file, folder or lhotse manifest); ``options`` are RunConfig's fields
    (``model``, ``device``, ``dtype``, ``shard``, ``features``, ...); ``vad=True`` (or a dict of
    :class:`batchser.vad.VadOptions` fields) segments long recordings first, as ``--vad``;
    ``timeline=(2, 1)`` (or ``"2,1"``) scores windows over time, as ``--timeline``
    (read back with ``open_results(out).timeline``); ``asr="tiny.en-offline"`` (or a dict of
    :class:`batchser.asr.AsrOptions` fields) transcribes too, as ``--asr``. Returns the run's summary.

    Raises what the CLI turns into exit codes (CorpusError, ModelNotAvailable, RunStopped, ...).
    """
    from .runner import run as _run

    vad = options.get("vad")
    if vad is True or isinstance(vad, dict):
        from .vad import VadOptions

        options["vad"] = VadOptions() if vad is True else VadOptions(**vad)
    elif vad is False:
        options["vad"] = None
    if options.get("timeline") is not None:
        from .timeline import parse_timeline

        options["timeline"] = parse_timeline(options["timeline"])
    if options.get("asr") is not None:
        from .asr import as_options

        options["asr"] = as_options(options["asr"])
    options.setdefault("progress", False)
    cfg = RunConfig(input=str(inputs), out=str(out), **options)
    return _run(cfg, log=log or (lambda *_: None))


@dataclass
class Prediction:
    labels: "object"  # pandas DataFrame, one row per input, in input order
    embeddings: np.ndarray  # (n, dim) float32
    frames: Optional[List[np.ndarray]] = None  # per input, T_i x dim (``frames=True``)


class EmotionRecognizer:
    """A loaded model that labels audio in memory, batched like a run.

    Args:
        model: alias, hub id or local model directory (as ``--model``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (one device).
        dtype: ``auto``, ``float32``, ``bfloat16``, ``float16``, ``int8`` (as ``--dtype``).
        batch_seconds, max_batch_size: batch sizes (default: the device's, as ``run``).
        max_seconds, long_audio: long inputs, as ``--max-seconds`` / ``--long-audio``.
        threshold: multi-label heads only: the classes scoring at least this form ``label``
            (as ``--threshold``).
        fe_options: keywords for every feature-extractor call of a transformers model
            (as ``--fe-option``, e.g. ``{"do_normalize": True}``).
        asr: a speech recogniser too (as ``--asr``): a model name or directory, or a dict of
            :class:`batchser.asr.AsrOptions` fields; adds ``text`` and ``language`` columns.
    """

    def __init__(self, model: str = "emotion2vec_plus_base", *, device: str = "auto", dtype: str = "auto",
                 hub: str = "auto", backend: str = "auto", batch_seconds: Optional[float] = None,
                 max_batch_size: Optional[int] = None, max_seconds: float = 600.0, long_audio: str = "window",
                 threshold: Optional[float] = None, fe_options: Optional[dict] = None, asr=None):
        from .models import load_backend

        devices = parse_devices(device)
        if len(devices) != 1:
            raise ValueError("EmotionRecognizer runs on one device; use batchser.run(..., device='cuda:0,cuda:1')")
        self.device = devices[0]
        self.dtype = resolve_dtype(dtype, self.device)
        self.backend = load_backend(model, device=self.device, dtype=self.dtype, hub=hub, backend=backend,
                                    fe_options=fe_options)
        self.labels = list(self.backend.labels)
        self.head_kind = self.backend.head_kind  # single_label | multi_label | regression | none
        if threshold is not None and self.head_kind != "multi_label":
            raise ValueError(f"threshold= is for multi-label heads; this model's head is {self.head_kind}")
        self.threshold = threshold
        self.batch_seconds, self.max_batch_size = batch_limits(self.device, batch_seconds, max_batch_size)
        self.max_seconds, self.long_audio = max_seconds, long_audio
        self.budget = MemoryBudget()
        self.asr = self.asr_options = None
        if asr is not None:
            from .asr import as_options, load_asr

            self.asr_options = as_options(asr)
            self.asr = load_asr(self.asr_options, device=self.device, hub=hub)

    def _wave(self, x: Audio, i: int, sampling_rate: Optional[int]) -> np.ndarray:
        if isinstance(x, np.ndarray):
            if sampling_rate is None:
                raise ValueError("arrays need sampling_rate= (their rate in Hz)")
            a = np.asarray(x, dtype=np.float32)
            if a.ndim == 2:  # samples x channels (soundfile) or channels x samples (torchaudio): fewer channels
                mono = a.mean(axis=1) if a.shape[0] >= a.shape[1] else a.mean(axis=0)
            elif a.ndim == 1:
                mono = a
            else:
                raise ValueError(f"input {i}: an array of shape {a.shape}: expected samples or samples x channels")
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"input {i}: audio contains NaN or infinite samples")
            y = resample(np.ascontiguousarray(mono), int(sampling_rate))
            if len(y) < self.backend.min_samples:
                raise AudioError(f"input {i}: audio too short: {len(y)} samples at 16 kHz, the model needs at least "
                                 f"{self.backend.min_samples}")
            return y
        src = AudioSource("url", str(x), shown=redact(str(x))) if is_url(str(x)) else AudioSource("file", str(x))
        u = Utterance(utt_id=str(i), rec_id=str(i), source=src, list_file="input", line=i)
        return decode_utterance(u, min_samples=self.backend.min_samples).wave

    def predict(self, inputs: Union[Audio, Sequence[Audio]], *, sampling_rate: Optional[int] = None,
                ids: Optional[Sequence[str]] = None, frames: bool = False) -> Prediction:
        """Label ``inputs`` (paths, arrays, or a list of them; arrays need ``sampling_rate``).

        Returns a :class:`Prediction` in input order; ``utt_id`` is ``ids[i]``, else the file's
        stem for a path, else ``"i"``. Raises AudioError naming the input that cannot be decoded.
        """
        import pandas as pd

        items = [inputs] if isinstance(inputs, (str, os.PathLike, np.ndarray)) else list(inputs)
        items = [np.asarray(x) if isinstance(x, (list, tuple)) else x for x in items]  # plain lists of samples
        if ids is not None and len(ids) != len(items):
            raise ValueError(f"{len(ids)} ids for {len(items)} inputs")
        names = list(ids) if ids is not None else [
            Path(x).stem if not isinstance(x, np.ndarray) else str(i) for i, x in enumerate(items)]
        waves = [self._wave(x, i, sampling_rate) for i, x in enumerate(items)]
        stages = self.stages(frames)
        rows: List[Optional[dict]] = [None] * len(waves)
        embs: List[Optional[np.ndarray]] = [None] * len(waves)
        frs: List[Optional[np.ndarray]] = [None] * len(waves)
        for b in make_batches([len(w) / TARGET_SR for w in waves], self.batch_seconds, self.max_batch_size):
            utts = [Utterance(utt_id=names[i], rec_id=names[i], source=AudioSource("file", "")) for i in b]
            res = score(stages, [Scored(u, waves[i]) for u, i in zip(utts, b)], with_ref=False)
            if res.errors:
                k = [u.utt_id for u in utts].index(res.errors[0][0])
                raise AudioError(f"input {b[k]} ({names[b[k]]}): {res.errors[0][2]}")
            for i, row, e, f in zip(b, res.rows, res.embeddings, res.frames):
                rows[i], embs[i], frs[i] = row, e, f
        predictions, _, _ = fields_of(stages)
        df = pd.DataFrame(rows, columns=[n for n, _ in BASE_FIELDS + predictions])
        emb = np.stack(embs).astype(np.float32) if embs else np.zeros((0, self.backend.embed_dim), np.float32)
        return Prediction(df, emb, frs if frames else None)

    def stages(self, frames: bool = False) -> list:
        """The scoring stages of this recogniser (``batchser.scoring``), as a run builds them."""
        stages = [EmotionStage(self.backend, frames=frames, max_seconds=self.max_seconds, long_audio=self.long_audio,
                               threshold=self.threshold, budget=self.budget, dtype=self.dtype)]
        if self.asr is not None:
            stages.append(AsrStage(self.asr, self.asr_options, self.device))
        return stages
