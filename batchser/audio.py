"""Decode one utterance to 16 kHz mono float32: files (libsndfile), pipes, Kaldi ark entries.

Runs inside loader worker processes. Every failure raises :class:`AudioError` with a message
that names the utterance and its source, so the runner can record it and go on.
"""
from __future__ import annotations

import io
import subprocess
from typing import Optional, Tuple

import numpy as np

from .corpus import Utterance

TARGET_SR = 16000


class AudioError(Exception):
    """An utterance could not be decoded into usable audio."""


def _read_bytes_audio(data: bytes, what: str) -> Tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{what}: output is not audio libsndfile can read ({e})") from e
    return x, sr


def _run_pipe(cmd: str, timeout: float) -> bytes:
    try:
        p = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AudioError(f"pipe command timed out after {timeout:g} s: {cmd!r}") from e
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip()[-500:]
        raise AudioError(f"pipe command failed with exit code {p.returncode}: {cmd!r}: {err}")
    if not p.stdout:
        raise AudioError(f"pipe command wrote nothing: {cmd!r}")
    return p.stdout


def _read_file(path: str, start: Optional[float], end: Optional[float]) -> Tuple[np.ndarray, int]:
    """Read only the needed span (seek) when a segment is asked for."""
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            sr = f.samplerate
            a = int(round(start * sr)) if start else 0
            b = int(round(end * sr)) if end is not None else f.frames
            if a > f.frames:
                raise AudioError(f"segment start {start} s is past the end of {path} ({f.frames / sr:.3f} s)")
            if f.seekable() and a:
                f.seek(a)
                x = f.read(max(0, min(b, f.frames) - a), dtype="float32", always_2d=True)
            else:
                x = f.read(dtype="float32", always_2d=True)[a:b]
            return x, sr
    except AudioError:
        raise
    except Exception as e:
        sf_err = e
    # libsndfile could not open it (e.g. m4a): fall back to librosa/audioread (ffmpeg).
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(path, sr=None, mono=False, offset=start or 0.0,
                                 duration=(end - (start or 0.0)) if end is not None else None)
        y = np.atleast_2d(y).T.astype(np.float32)
        return y, int(sr)
    except Exception as e:
        raise AudioError(f"cannot decode {path}: {sf_err}; fallback decoder: {e}") from e


def _read_ark(spec: str) -> Tuple[np.ndarray, int]:
    import kaldiio

    try:
        obj = kaldiio.load_mat(spec)
    except Exception as e:
        raise AudioError(f"cannot read ark entry {spec}: {e}") from e
    if not (isinstance(obj, tuple) and len(obj) == 2):
        raise AudioError(f"ark entry {spec} holds a matrix (features), not wav audio")
    sr, x = obj
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float32)
    return (x[:, None] if x.ndim == 1 else x), int(sr)


def resample(x: np.ndarray, sr: int, target: int = TARGET_SR) -> np.ndarray:
    """High-quality resampling (soxr HQ, librosa's default)."""
    if sr == target:
        return x
    import soxr

    return soxr.resample(x, sr, target, quality="HQ").astype(np.float32, copy=False)


def _decode_source(src, pipe_timeout: float) -> Tuple[np.ndarray, int]:
    if src.kind == "pipe":
        return _read_bytes_audio(_run_pipe(src.value, pipe_timeout), f"pipe {src.value!r}")
    if src.kind == "ark":
        return _read_ark(src.value)
    return _read_file(src.value, None, None)


def cache_recording(src, dest: str, pipe_timeout: float = 300.0) -> str:
    """Decode a whole pipe/ark recording once into a float WAV at its own rate (for its segments).

    Segments then read their span from ``dest`` exactly as they would from a plain file, so the
    result equals cutting the piped audio directly. Returns ``dest``.
    """
    import os

    import soundfile as sf

    x, sr = _decode_source(src, pipe_timeout)
    tmp = f"{dest}.tmp"
    sf.write(tmp, x, sr, subtype="FLOAT", format="WAV")
    os.replace(tmp, dest)
    return dest


def load_utterance(utt: Utterance, pipe_timeout: float = 300.0, min_samples: int = 400) -> np.ndarray:
    """Decode, cut, downmix (mean of channels) and resample to 16 kHz; validate the result."""
    src = utt.source
    if src.kind == "file":
        x, sr = _read_file(src.value, utt.start, utt.end)
        cut = False
    elif src.kind in ("pipe", "ark"):
        x, sr = _decode_source(src, pipe_timeout)
        cut = True
    else:  # pragma: no cover - reader never makes other kinds
        raise AudioError(f"unknown source kind {src.kind}")
    if cut and (utt.start or utt.end is not None):
        a = int(round((utt.start or 0.0) * sr))
        b = int(round(utt.end * sr)) if utt.end is not None else x.shape[0]
        if a >= x.shape[0]:
            raise AudioError(f"segment start {utt.start} s is past the end of the recording ({x.shape[0] / sr:.3f} s)")
        x = x[a:b]
    if x.size == 0:
        raise AudioError("empty audio (0 samples)")
    mono = x.mean(axis=1) if x.ndim == 2 else x
    if not np.all(np.isfinite(mono)):
        raise AudioError("audio contains NaN or infinite samples")
    y = resample(np.ascontiguousarray(mono, dtype=np.float32), sr)
    if len(y) < min_samples:
        raise AudioError(f"audio too short: {len(y)} samples at 16 kHz, the model needs at least {min_samples}")
    return y


def probe_duration(utt: Utterance) -> Optional[float]:
    """Duration from the file header (no decoding); None when unknown (pipes, arks, odd formats)."""
    if utt.duration is not None:
        return utt.duration
    if utt.source.kind != "file":
        return None
    import soundfile as sf

    try:
        info = sf.info(utt.source.value)
    except Exception:
        return None
    total = info.frames / info.samplerate
    s = utt.start or 0.0
    e = utt.end if utt.end is not None else total
    return max(0.0, min(e, total) - s)
