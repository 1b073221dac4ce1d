"""Model worker: runs decoded waveforms through a back-end, whatever their lengths.

* Utterances longer than ``max_samples`` (or than the model's own input limit, 30 s for
  Whisper) are cut into equal windows that run as separate batch items, and the back-end
  combines them (``combine_windows``): the embedding is the frame-weighted mean of the windows'
  embeddings (= the mean over all frames); emotion2vec's scores are its head applied to that
  embedding, Whisper's the frame-weighted mean of the windows' scores. Frames are concatenated.
  Only context across window edges is lost (bench/bench_long_audio.py measures how much).
  With ``long_audio="truncate"`` the utterance is cut to the limit instead (model-card style).
* A failing batch is split in halves until the failing item is isolated (out-of-memory back-off
  included), so one bad utterance never takes its batch down with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

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


def forward_safe(backend: Backend, wavs: List[np.ndarray], frames: bool, offset: int = 0) -> Iterator[Tuple]:
    """Yield ``(offset, count, BatchOutput or None, error or None)`` covering ``wavs`` in order."""
    try:
        yield offset, len(wavs), backend.forward(wavs, frames=frames), None
        return
    except Exception as e:
        if _is_oom(e):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if len(wavs) == 1:
            yield offset, 1, None, f"{type(e).__name__}: {e}"
            return
    h = len(wavs) // 2
    yield from forward_safe(backend, wavs[:h], frames, offset)
    yield from forward_safe(backend, wavs[h:], frames, offset + h)


def split_windows(n: int, max_samples: int) -> List[Tuple[int, int]]:
    """(start, end) of equal windows covering n samples, each <= max_samples."""
    if n <= max_samples:
        return [(0, n)]
    k = math.ceil(n / max_samples)
    size = math.ceil(n / k)
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def run_items(backend: Backend, wavs: List[np.ndarray], *, frames: bool, max_samples: int,
              long_audio: str = "window") -> Tuple[List[ItemResult], int, int]:
    """Run one loader batch. Returns (results per input, real samples, padded samples)."""
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
    for off, n, out, err in forward_safe(backend, pieces, want_frames):
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
