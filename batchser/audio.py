"""Decode one utterance to 16 kHz mono float32: files (libsndfile), pipes, Kaldi ark entries.

Runs inside decoder processes. Every failure raises :class:`AudioError` with a message that
names the source as the user wrote it, so the pipeline can record it and go on.
"""
from __future__ import annotations

import io
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

from .records import AudioSource, Utterance, redact

TARGET_SR = 16000
PIPE_MAX_BYTES = 2048 << 20  # --pipe-max-mb default: 2 GiB, a 3-hour 48 kHz stereo 16-bit WAV
SEGMENT_END_SLACK = 0.01  # s: a segment may end this far past its recording's end without a warning


class AudioError(Exception):
    """An utterance could not be decoded into usable audio."""


def _why(e: BaseException) -> str:
    """An exception's message without object addresses, never empty."""
    import re

    if type(e).__name__ == "NoBackendError":  # audioread: every backend refused the file
        import shutil

        if shutil.which("ffmpeg") is None:
            return "none installed (install ffmpeg to read formats libsndfile does not)"
        return "ffmpeg cannot read it either (not an audio format it knows, or a corrupt file)"
    msg = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the data", str(e)).strip()
    return msg or type(e).__name__


def _read_bytes_audio(data: bytes, what: str) -> Tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{what}: output is not audio libsndfile can read ({_why(e)})") from e
    return x, sr


def run_pipe(cmd: str, timeout: float, max_bytes: int = PIPE_MAX_BYTES) -> bytes:
    """Run a wav.scp pipe command and return its standard output.

    The command runs in its own process group: on timeout, on more than ``max_bytes`` of
    output, or when this process is told to stop, the whole group is killed (sox, ffmpeg and
    whatever else the shell started), not only ``/bin/sh``.
    """
    import selectors

    from .procs import kill_pipe, register_pipe

    p = subprocess.Popen(cmd, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    register_pipe(p.pid)
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(p.stdout, selectors.EVENT_READ, out)
            sel.register(p.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AudioError(f"pipe command timed out after {timeout:g} s: {cmd!r}")
                for key, _ in sel.select(left):
                    chunk = os.read(key.fd, 1 << 20)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    key.data.extend(chunk)
                    if key.data is err and len(err) > 1 << 16:
                        del err[: len(err) - (1 << 16)]  # keep the last 64 KiB of stderr
                if len(out) > max_bytes:
                    raise AudioError(f"pipe command wrote more than {max_bytes / (1 << 20):g} MB "
                                     f"(--pipe-max-mb): {cmd!r}")
        # wait for the shell without reaping it, so that its pid (= the group id) cannot be
        # reused before the group is killed below
        while os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            if time.monotonic() > deadline:
                raise AudioError(f"pipe command timed out after {timeout:g} s: {cmd!r}")
            time.sleep(0.005)
    finally:
        kill_pipe(p.pid)  # the group: also what the command left running in the background
        p.stdout.close()
        p.stderr.close()
        code = p.wait()
    if code != 0:
        msg = err.decode("utf-8", "replace").strip()[-500:]
        raise AudioError(f"pipe command failed with exit code {code}: {cmd!r}: {msg}")
    if not out:
        raise AudioError(f"pipe command wrote nothing: {cmd!r}")
    return bytes(out)


URL_TRIES = 3  # a transient error (a dropped connection, a throttled request) is tried again


def read_url(url: str, max_bytes: int = PIPE_MAX_BYTES, tries: int = URL_TRIES) -> bytes:
    """The bytes of an object in storage or on the web, through fsspec (s3fs, gcsfs, aiohttp),
    with the usual credentials of each client (environment, config files, instance roles). At
    most ``max_bytes`` are held; transient failures are retried with a growing pause; a missing
    object or a refused access fails at once. Messages never show credentials."""
    shown = redact(url)
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - fsspec comes with the extras
        raise AudioError(f"{shown}: reading URLs needs fsspec (pip install 'batchser[s3]' or '[gcs]')") from e
    last: Optional[BaseException] = None
    for k in range(tries):
        try:
            with fsspec.open(url, "rb") as f:
                data = f.read(max_bytes + 1)
        except FileNotFoundError as e:
            raise AudioError(f"{shown}: no such object") from e
        except PermissionError as e:
            raise AudioError(f"{shown}: access denied ({_why(e)}); credentials come from the client's usual "
                             "environment and config (AWS_*, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS, ...)") from e
        except ImportError as e:
            proto = url.split("://", 1)[0]
            pkg = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}.get(proto, "aiohttp")
            raise AudioError(f"{shown}: reading {proto}:// needs {pkg} (pip install {pkg})") from e
        except Exception as e:  # connection refused or reset, time-outs, throttling: try again
            last = e
            if k + 1 < tries:
                time.sleep(0.5 * 2 ** k)
            continue
        if len(data) > max_bytes:
            raise AudioError(f"{shown} is larger than {max_bytes / (1 << 20):g} MB (--pipe-max-mb)")
        if not data:
            raise AudioError(f"{shown}: the object is empty")
        return data
    raise AudioError(f"{shown}: unreachable after {tries} tries: {type(last).__name__}: {_why(last)}")


def _read_file(path: str, start: Optional[float], end: Optional[float], name: str) -> Tuple[np.ndarray, int, float]:
    """(samples, rate, file duration in s); reads only the needed span (seek) for a segment."""
    import soundfile as sf

    try:
        with sf.SoundFile(path) as f:
            sr = f.samplerate
            a = int(round(start * sr)) if start else 0
            b = int(round(end * sr)) if end is not None else f.frames
            if a > f.frames:
                raise AudioError(f"segment start {start} s is past the end of {name} ({f.frames / sr:.3f} s)")
            if f.seekable() and a:
                f.seek(a)
                x = f.read(max(0, min(b, f.frames) - a), dtype="float32", always_2d=True)
            else:
                x = f.read(dtype="float32", always_2d=True)[a:b]
            return x, sr, f.frames / sr
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
            total = float(librosa.get_duration(path=path))
            y, sr = librosa.load(path, sr=None, mono=False, offset=start or 0.0,
                                 duration=(end - (start or 0.0)) if end is not None else None)
        y = np.atleast_2d(y).T.astype(np.float32)
        return y, int(sr), total
    except Exception as e:
        raise AudioError(f"cannot decode {name}: {_why(sf_err)}; fallback decoder (ffmpeg): {_why(e)}") from e


def _read_ark(spec: str) -> Tuple[np.ndarray, int]:
    import kaldiio

    try:
        obj = kaldiio.load_mat(spec)
    except Exception as e:
        path, _, offset = spec.rpartition(":")
        offset = offset.split("[", 1)[0]
        size = os.path.getsize(path) if os.path.isfile(path) else None
        if size is not None and offset.isdigit() and int(offset) >= size:
            raise AudioError(f"cannot read ark entry {spec}: offset {offset} is past the end of {path} ({size} bytes): "
                             "the ark was cut short or the offset is wrong (make the ark and its wav.scp again)") from e
        why = _why(e) if str(e).strip() else f"{type(e).__name__}: no Kaldi ark entry starts at offset {offset}"
        raise AudioError(f"cannot read ark entry {spec}: {why}") from e
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


def _decode_source(src: AudioSource, pipe_timeout: float, pipe_max_bytes: int) -> Tuple[np.ndarray, int]:
    if src.kind == "pipe":
        return _read_bytes_audio(run_pipe(src.value, pipe_timeout, pipe_max_bytes), src.name)
    if src.kind == "url":
        return _read_bytes_audio(read_url(src.value, pipe_max_bytes), src.name)
    if src.kind == "ark":
        return _read_ark(src.value)
    x, sr, _ = _read_file(src.value, None, None, src.name)
    return x, sr


def cache_recording(src: AudioSource, dest: str, pipe_timeout: float = 300.0,
                    pipe_max_bytes: int = PIPE_MAX_BYTES) -> str:
    """Decode a whole pipe/ark recording once into a float WAV at its own rate (for its segments).

    Segments then read their span from ``dest`` exactly as they would from a plain file, so the
    result equals cutting the piped audio directly. Returns ``dest``.
    """
    import soundfile as sf

    x, sr = _decode_source(src, pipe_timeout, pipe_max_bytes)
    tmp = f"{dest}.tmp"
    sf.write(tmp, x, sr, subtype="FLOAT", format="WAV")
    os.replace(tmp, dest)
    return dest


@dataclass
class Decoded:
    wave: np.ndarray  # 16 kHz mono float32
    warning: Optional[str] = None  # e.g. a segment cut short at the end of its recording
    cut_short: bool = False  # the segment's end lies past the recording: ``end`` is the recording's


def decode_utterance(utt: Utterance, *, pipe_timeout: float = 300.0, min_samples: int = 400,
                     pipe_max_bytes: int = PIPE_MAX_BYTES) -> Decoded:
    """Decode, cut, downmix (mean of channels) and resample to 16 kHz; validate the result."""
    src = utt.source
    if src.kind == "file":
        x, sr, total = _read_file(src.value, utt.start, utt.end, src.name)
    elif src.kind in ("pipe", "ark", "url"):
        x, sr = _decode_source(src, pipe_timeout, pipe_max_bytes)
        total = x.shape[0] / sr
        if utt.start or utt.end is not None:
            a = int(round((utt.start or 0.0) * sr))
            b = int(round(utt.end * sr)) if utt.end is not None else x.shape[0]
            if a >= x.shape[0]:
                raise AudioError(f"segment start {utt.start} s is past the end of the recording {src.name} "
                                 f"({total:.3f} s)")
            x = x[a:b]
    else:  # pragma: no cover - reader never makes other kinds
        raise AudioError(f"unknown source kind {src.kind}")
    if x.size == 0:
        raise AudioError("empty audio (0 samples)")
    mono = x.mean(axis=1) if x.ndim == 2 else x
    if not np.all(np.isfinite(mono)):
        raise AudioError("audio contains NaN or infinite samples")
    y = resample(np.ascontiguousarray(mono, dtype=np.float32), sr)
    if len(y) < min_samples:
        raise AudioError(f"audio too short: {len(y)} samples at 16 kHz, the model needs at least {min_samples}")
    cut_short = utt.end is not None and utt.end > total
    warning = None
    if cut_short and utt.end - total > SEGMENT_END_SLACK:
        warning = (f"{utt.utt_id} ({utt.where}): segment ends at {utt.end:g} s, past the end of its recording "
                   f"{src.name} ({total:.3f} s): cut there, its row's end is {total:.3f} s")
    return Decoded(y, warning, cut_short)


def stream_recording(utt: Utterance, *, block_seconds: float = 60.0, pipe_timeout: float = 300.0,
                     pipe_max_bytes: int = PIPE_MAX_BYTES) -> Iterator[np.ndarray]:
    """A whole recording as 16 kHz mono float32 blocks whose concatenation is exactly
    :func:`decode_utterance`'s waveform (downmix per block, soxr's streaming resampler, which
    gives the same samples as one call), so a 3-hour file never sits in memory at once.

    Only files libsndfile reads are streamed; pipes, ark entries and files needing the ffmpeg
    fallback come as one block (decoded as ``run`` decodes them).
    """
    import soundfile as sf

    if utt.source.kind != "file" or utt.start or utt.end is not None:
        yield decode_utterance(utt, pipe_timeout=pipe_timeout, min_samples=1, pipe_max_bytes=pipe_max_bytes).wave
        return
    try:
        f = sf.SoundFile(utt.source.value)
    except Exception:
        yield decode_utterance(utt, pipe_timeout=pipe_timeout, min_samples=1, pipe_max_bytes=pipe_max_bytes).wave
        return
    with f:
        sr = f.samplerate
        rs = None
        if sr != TARGET_SR:
            import soxr

            rs = soxr.ResampleStream(sr, TARGET_SR, 1, dtype="float32", quality="HQ")
        n = 0
        for x in f.blocks(blocksize=max(1, int(block_seconds * sr)), dtype="float32", always_2d=True):
            mono = np.ascontiguousarray(x.mean(axis=1), dtype=np.float32)
            if not np.all(np.isfinite(mono)):
                raise AudioError("audio contains NaN or infinite samples")
            n += len(mono)
            y = rs.resample_chunk(mono) if rs is not None else mono
            if len(y):
                yield y
        if n == 0:
            raise AudioError("empty audio (0 samples)")
        if rs is not None:
            y = rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(y):
                yield y


def load_utterance(utt: Utterance, pipe_timeout: float = 300.0, min_samples: int = 400,
                   pipe_max_bytes: int = PIPE_MAX_BYTES) -> np.ndarray:
    """The 16 kHz mono waveform of ``utt`` (see :func:`decode_utterance`)."""
    return decode_utterance(utt, pipe_timeout=pipe_timeout, min_samples=min_samples,
                            pipe_max_bytes=pipe_max_bytes).wave


def recording_duration(src: AudioSource, pipe_timeout: float = 300.0, pipe_max_bytes: int = PIPE_MAX_BYTES) -> float:
    """Seconds of a whole recording: from the header for files (libsndfile, else audioread), by
    decoding for pipes and ark entries (what Kaldi's get_utt2dur does)."""
    if src.kind == "file":
        import soundfile as sf

        try:
            info = sf.info(src.value)
            return info.frames / info.samplerate
        except Exception as e:
            sf_err = e
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(librosa.get_duration(path=src.value))
        except Exception as e:
            raise AudioError(f"cannot read the duration of {src.name}: {_why(sf_err)}; "
                             f"fallback decoder (ffmpeg): {_why(e)}") from e
    x, sr = _decode_source(src, pipe_timeout, pipe_max_bytes)
    return x.shape[0] / sr


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
