"""Model worker: runs decoded waveforms through a back-end, whatever their lengths.

* Utterances longer than ``max_samples`` (or than the model's own input limit, 30 s for
  Whisper) are cut into equal windows that run as separate batch items, and the back-end
  combines them (``combine_windows``): the embedding is the frame-weighted mean of the windows'
  embeddings (= the mean over all frames); emotion2vec's scores are its head applied to that
  embedding, Whisper's the frame-weighted mean of the windows' scores. Frames are concatenated.
  Only context across window edges is lost (bench/bench_long_audio.py measures how much).
  With ``long_audio="truncate"`` the utterance is cut to the limit instead (model-card style).
* Out of memory: the batch's memory is freed (outside the ``except``, so the traceback no longer
  holds its activations), the batch is split in halves, and the largest padded batch that
  failed lowers a :class:`MemoryBudget` kept for the rest of the run, so later batches are cut
  to fit before they run instead of failing again. An utterance that does not fit even alone
  becomes an error row.
* Any other exception inside the model is not an utterance's fault (a dtype bug, a sticky CUDA
  error that will fail every call): it raises :class:`ModelFailure`, which stops the run after
  what was done is committed, instead of splitting every batch down to single utterances and
  blaming each of them.
"""
from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .models.base import Backend


@dataclass
class ItemResult:
    embedding: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None
    frames: Optional[np.ndarray] = None
    error: Optional[str] = None
    windows: int = 1


def _is_oom(e: BaseException) -> bool:
    return "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"


class ModelFailure(RuntimeError):
    """The model raised something other than out-of-memory: not an utterance's fault."""


@dataclass
class MemoryBudget:
    """The largest padded batch (items x longest item, in samples) to hand the model, learned
    from out-of-memory failures: ``None`` until one happens."""

    max_padded: Optional[int] = None
    events: List[Dict] = field(default_factory=list)  # for the manifest

    def fits(self, wavs: List[np.ndarray]) -> bool:
        return self.max_padded is None or len(wavs) * max(len(w) for w in wavs) <= self.max_padded

    def lower(self, wavs: List[np.ndarray], error: str) -> None:
        padded = len(wavs) * max(len(w) for w in wavs)
        new = max(1, padded // 2)
        if self.max_padded is None or new < self.max_padded:
            self.events.append({"failed_items": len(wavs), "failed_padded_samples": padded,
                                "new_max_padded_samples": new, "error": error[:200]})
            self.max_padded = new


def free_memory() -> None:
    """Return the memory of a failed batch: collect it, then release the CUDA cache."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def forward_safe(backend: Backend, wavs: List[np.ndarray], frames: bool, offset: int = 0,
                 budget: Optional[MemoryBudget] = None) -> Iterator[Tuple]:
    """Yield ``(offset, count, BatchOutput or None, error or None)`` covering ``wavs`` in order.

    Raises:
        ModelFailure: the model failed other than by running out of memory.
    """
    budget = budget if budget is not None else MemoryBudget()
    if len(wavs) > 1 and not budget.fits(wavs):
        out, oom = None, None  # known not to fit: split before trying
    else:
        oom = None
        try:
            out = backend.forward(wavs, frames=frames)
        except Exception as e:
            if not _is_oom(e):
                raise ModelFailure(f"{type(e).__name__}: {e}") from e
            out, oom = None, f"{type(e).__name__}: {e}"
        if out is not None:
            yield offset, len(wavs), out, None
            return
        free_memory()  # here, not in the except: the traceback held the batch's tensors
        budget.lower(wavs, oom)
        if len(wavs) == 1:
            yield offset, 1, None, f"out of memory even alone ({len(wavs[0]) / backend.sample_rate:.1f} s): {oom}"
            return
    h = len(wavs) // 2
    yield from forward_safe(backend, wavs[:h], frames, offset, budget)
    yield from forward_safe(backend, wavs[h:], frames, offset + h, budget)


def split_windows(n: int, max_samples: int) -> List[Tuple[int, int]]:
    """(start, end) of equal windows covering n samples, each <= max_samples."""
    if n <= max_samples:
        return [(0, n)]
    k = math.ceil(n / max_samples)
    size = math.ceil(n / k)
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def run_items(backend: Backend, wavs: List[np.ndarray], *, frames: bool, max_samples: int,
              long_audio: str = "window", budget: Optional[MemoryBudget] = None
              ) -> Tuple[List[ItemResult], int, int]:
    """Run one loader batch. Returns (results per input, real samples, padded samples).

    ``budget``: the run's memory budget, lowered by out-of-memory failures (pass the same one
    for every batch of a run). Raises :class:`ModelFailure` for any other model failure.
    """
    limit = backend.max_input_samples
    if limit:
        max_samples = min(max_samples, int(limit))
    if long_audio == "truncate":
        wavs = [w[:max_samples] for w in wavs]
    pieces: List[np.ndarray] = []
    owner: List[int] = []
    for i, w in enumerate(wavs):
        for a, b in split_windows(len(w), max_samples):
            pieces.append(w[a:b])
            owner.append(i)
    want_frames = frames or len(pieces) > len(wavs)
    per_piece: List[Tuple] = [None] * len(pieces)  # type: ignore[list-item]
    real = padded = 0
    for off, n, out, err in forward_safe(backend, pieces, want_frames, budget=budget):
        if out is None:
            per_piece[off] = (None, None, None, err)
            continue
        lens = [len(p) for p in pieces[off: off + n]]
        real += sum(lens)
        padded += n * max(lens)
        for j in range(n):
            per_piece[off + j] = (out.embeddings[j], None if out.scores is None else out.scores[j],
                                  None if out.frames is None else out.frames[j], None)
    results: List[ItemResult] = []
    k = 0
    for i in range(len(wavs)):
        mine = []
        while k < len(pieces) and owner[k] == i:
            mine.append(per_piece[k])
            k += 1
        errs = [p[3] for p in mine if p[3] is not None]
        if errs:
            results.append(ItemResult(error=errs[0] if len(mine) == 1 else f"window failed: {errs[0]}",
                                      windows=len(mine)))
            continue
        if len(mine) == 1:
            emb, sc, fr, _ = mine[0]
            results.append(ItemResult(emb, sc, fr if frames else None))
            continue
        fr_all = [p[2] for p in mine]
        counts = np.array([len(f) for f in fr_all], dtype=np.float64)
        scores = np.stack([p[1] for p in mine]) if mine[0][1] is not None else None
        emb, sc = backend.combine_windows(np.stack([p[0] for p in mine]), scores, counts)
        results.append(ItemResult(emb, sc, np.concatenate(fr_all, 0) if frames else None, windows=len(mine)))
    return results, real, padded
