"""Voice activity detection: where a recording holds speech, from silero-vad's trained model.

The model ships inside the ``silero-vad`` wheel (MIT; its TorchScript weights): nothing is
downloaded. Speech probabilities are computed exactly as ``silero_vad.get_speech_timestamps``
computes them (one 512-sample frame at a time at 16 kHz, the model's state carried across
frames) and turned into segments by silero's own ``get_speech_timestamps_from_probs``, so a
segmentation equals the reference function's on the same audio and options. The audio is what
``batchser run`` decodes (16 kHz mono, :mod:`batchser.audio`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Tuple

import numpy as np

from .audio import TARGET_SR

FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
CS = TARGET_SR // 100  # samples per centisecond: segment ids and times are in centiseconds


@dataclass(frozen=True)
class VadOptions:
    """How speech becomes segments (seconds). Defaults: silero's, except the two lengths.

    Args:
        threshold: frames with a speech probability above it are speech (silero: 0.5); a
            segment ends when the probability falls below ``threshold - 0.15``.
        min_speech: shorter stretches of speech are dropped (silero: 0.25 s).
        min_silence: a pause at least this long ends a segment (silero: 0.1 s).
        pad: added on each side of a segment (silero: 0.03 s).
        max_segment: longer speech is split at its longest pause of at least 98 ms, or cut
            just before this length where it has none (silero's rule; silero's default is no
            limit; 20 s keeps segments near the length emotion models were trained on).
        min_segment: segments shorter than this after padding are dropped (0.5 s: shorter ones
            carry too little for an emotion label); counted in the summary.
    """

    threshold: float = 0.5
    min_speech: float = 0.25
    min_silence: float = 0.1
    pad: float = 0.03
    max_segment: float = 20.0
    min_segment: float = 0.5

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"--vad-threshold {self.threshold}: must be between 0 and 1")
        for name in ("min_speech", "min_silence", "pad", "min_segment"):
            if getattr(self, name) < 0:
                raise ValueError(f"--vad-{name.replace('_', '-')} {getattr(self, name)}: must be >= 0")
        if self.max_segment <= max(self.min_segment, 2 * self.pad, 0.1):
            raise ValueError(f"--vad-max-segment {self.max_segment}: must be longer than --vad-min-segment "
                             "and the padding")

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


class SileroVad:
    """silero-vad's TorchScript model from its wheel, one recording at a time."""

    def __init__(self):
        import torch
        from silero_vad import load_silero_vad

        self.torch = torch
        self.model = load_silero_vad(onnx=False)

    def probabilities(self, wave: np.ndarray) -> List[float]:
        """Speech probability per 512-sample frame (the last frame zero-padded), as silero computes it."""
        return self.probabilities_of_blocks([wave])[0]

    def probabilities_of_blocks(self, blocks: Iterable[np.ndarray]) -> Tuple[List[float], int]:
        """:meth:`probabilities` of the concatenated ``blocks`` (any sizes: a recording streamed
        in pieces gives the same frames and the same carried state), and the number of samples."""
        torch = self.torch
        self.model.reset_states()
        out: List[float] = []
        rest = np.zeros(0, dtype=np.float32)
        n = 0
        with torch.no_grad():
            for b in blocks:
                n += len(b)
                x = np.concatenate([rest, np.asarray(b, dtype=np.float32)]) if len(rest) else np.asarray(b, np.float32)
                full = len(x) // FRAME * FRAME
                t = torch.from_numpy(np.ascontiguousarray(x[:full]))
                for s in range(0, full, FRAME):
                    out.append(self.model(t[s:s + FRAME], TARGET_SR).item())
                rest = x[full:].copy()
            if len(rest):
                chunk = torch.nn.functional.pad(torch.from_numpy(rest), (0, FRAME - len(rest)))
                out.append(self.model(chunk, TARGET_SR).item())
        return out, n

    def segments(self, wave, opts: VadOptions) -> Tuple[List[Tuple[int, int]], int]:
        """(start, end) in centiseconds of each speech segment, and how many short ones were
        dropped; ``wave``: a waveform or an iterable of blocks of one (16 kHz mono float32)."""
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        probs, n = self.probabilities_of_blocks([wave] if isinstance(wave, np.ndarray) else wave)
        if not n:
            return [], 0
        stamps = get_speech_timestamps_from_probs(
            probs, sampling_rate=TARGET_SR, threshold=opts.threshold,
            min_speech_duration_ms=int(round(opts.min_speech * 1000)),
            max_speech_duration_s=opts.max_segment if math.isfinite(opts.max_segment) else float("inf"),
            min_silence_duration_ms=int(round(opts.min_silence * 1000)), speech_pad_ms=int(round(opts.pad * 1000)),
            audio_length_samples=n)
        return to_centiseconds(stamps, n, opts.min_segment)


def to_centiseconds(stamps: List[dict], n_samples: int, min_segment: float) -> Tuple[List[Tuple[int, int]], int]:
    """Sample stamps -> centisecond (start, end) inside the recording, short ones dropped."""
    last = n_samples // CS
    out: List[Tuple[int, int]] = []
    dropped = 0
    for st in stamps:
        a = min(int(st["start"]) // CS, last)  # floor the start, ceil the end: the speech stays inside
        b = min(-(-int(st["end"]) // CS), last)
        if out and a < out[-1][1]:  # padding made neighbours overlap by rounding: keep them disjoint
            a = out[-1][1]
        if b - a < max(1, round(min_segment * 100)):
            dropped += 1
            continue
        out.append((a, b))
    return out, dropped


def segment_id(rec: str, start_cs: int, end_cs: int) -> str:
    """``<rec>-<start>-<end>`` in centiseconds, zero-padded to 7 digits (Kaldi's convention: ids
    sort by recording, then time)."""
    return f"{rec}-{start_cs:07d}-{end_cs:07d}"
