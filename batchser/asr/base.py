"""Speech recognition beside the emotion model (``run --asr``): the options and the written
interface the engines implement (which engine a ``--asr`` value names: :mod:`.registry`).

Engines (one module each): ``hf.py`` runs a transformers ``WhisperForConditionalGeneration``
and equals ``pipeline("automatic-speech-recognition")`` file by file; ``ct2.py`` runs a
CTranslate2 (faster-whisper) directory and equals ``WhisperModel.transcribe`` file by file.
Both take the 16 kHz waveforms the decoders already made (each recording decoded once for
both models), pad every input to Whisper's 30-s window and run one decoder loop per batch.

Utterances over 30 s (the rule, the same in both engines): Whisper's sequential long-form
decoding with timestamps, as each reference does it. CTranslate2: faster-whisper's seek loop
(timestamps on, no previous-text conditioning: a window ends at the last timestamp and the next
starts there), run for all long utterances at once, window k of each in one batch. transformers:
the utterance alone through ``generate``'s long-form decoding (``return_timestamps=True``), as the
pipeline does. With ``--vad`` the segments are short and nothing reaches this rule.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Protocol, Sequence

import numpy as np

WINDOW_SAMPLES = 30 * 16000  # Whisper's input window at 16 kHz
TASKS = ("transcribe", "translate")


@dataclass
class AsrOptions:
    """The options of ``--asr``: what changes a transcript is kept in settings.json."""

    model: str
    engine: str = "auto"  # auto | transformers | ctranslate2
    language: Optional[str] = None  # None: English-only models say "en"; multilingual ones detect it per utterance
    task: Optional[str] = None  # None: the engine's default (transcribe); translate: into English
    beam_size: int = 1  # 1: greedy, the reference tools' setting in our parity tests
    batch_size: Optional[int] = None  # None: per device (DEFAULT_BATCH)
    dtype: str = "auto"  # transformers: float32 | float16 | bfloat16; CTranslate2: its compute type (int8, ...)

    def settings(self, engine: str, device: str) -> dict:
        """What changes the transcripts (the batch size does not), with the dtype resolved for
        ``device``: "auto" means float32 on a CPU but bfloat16 (transformers) or the saved type
        (CTranslate2) on a GPU, and a resume or merge must not mix them."""
        d = asdict(self)
        d.pop("batch_size")
        d["engine"] = engine
        d["dtype"] = resolved_dtype(self.dtype, engine, device)
        return d


def resolved_dtype(dtype: str, engine: str, device: str) -> str:
    """What ``--asr-dtype`` means on ``device``: transformers' torch dtype, CTranslate2's compute type."""
    gpu = device.startswith("cuda")
    if engine == "ctranslate2":
        return ("default" if gpu else "float32") if dtype == "auto" else dtype
    from ..policy import DTYPE_ALIASES

    d = DTYPE_ALIASES.get(dtype, dtype)
    if d != "auto":
        return d
    if gpu:
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


DEFAULT_BATCH = {"cpu": 4, "cuda": 32}  # 30-s windows; CPU: measured best at 2-4 on 2 cores (bench_asr.py)


def as_options(x) -> "AsrOptions":
    """The Python API's ``asr=``: a model name, a dict of :class:`AsrOptions` fields, or options."""
    if isinstance(x, AsrOptions):
        return x
    if isinstance(x, (str, Path)):
        return AsrOptions(model=str(x))
    if isinstance(x, dict):
        return AsrOptions(**x)
    raise TypeError(f"asr=: a model name or directory, a dict of AsrOptions fields, or AsrOptions; not {type(x).__name__}")


@dataclass
class Transcript:
    text: str  # stripped of leading and trailing white space
    language: Optional[str]


@dataclass
class AsrInfo:
    id: str
    path: str
    engine: str
    multilingual: bool
    languages: List[str]
    sha256: Optional[str] = None
    test_model: bool = False


class AsrEngine(Protocol):
    """What the pipeline needs of a speech recogniser."""

    info: AsrInfo
    batch_size: int

    def transcribe(self, waves: Sequence[np.ndarray]) -> List[Transcript]:
        """One transcript per 16 kHz float32 waveform, in order; equal whatever the batch."""
        ...


class AsrModelError(ValueError):
    """An --asr-* option that does not fit the model (exit 2). A model that cannot be found, is of
    another kind or cannot be loaded raises ``ModelNotAvailable`` instead (exit 3), as --model does."""


def not_available(msg: str) -> Exception:
    """The error a missing or wrong-kind recogniser raises: ``ModelNotAvailable`` (exit 3), as for --model."""
    from ..models.resolve import ModelNotAvailable

    return ModelNotAvailable(msg)


def check_language(opts: AsrOptions, info: AsrInfo) -> None:
    """An unknown language, or another language than English for an English-only model, is
    refused before anything runs (faster-whisper would silently use English)."""
    if opts.task == "translate" and not info.multilingual:
        raise AsrModelError(f"--asr-task translate: {info.id} is an English-only model (translation needs a "
                            "multilingual Whisper)")
    lang = opts.language
    if lang is None:
        return
    if not info.multilingual:
        if lang != "en":
            raise AsrModelError(f"--asr-language {lang!r}: {info.id} is an English-only model (use 'en', or a "
                                "multilingual Whisper)")
        return
    if lang not in info.languages:
        shown = ", ".join(info.languages[:30]) + (", ..." if len(info.languages) > 30 else "")
        raise AsrModelError(f"--asr-language {lang!r} is not a language of {info.id} (codes: {shown})")
