"""Which back-end a model directory is, and loading it: one table of back-ends.

Adding a back-end is one module implementing :class:`batchser.models.base.Backend` plus one
entry in :data:`BACKENDS` (its name, how to recognise its directory, how to build it). The
table is tried in order, after the directories that are refused by kind (speech recognisers:
they go to ``--asr``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .base import ModelInfo
from .resolve import ModelNotAvailable, locate, weights_sha256


def _emotion2vec(path: str, **kw):
    from .emotion2vec import Emotion2vecBackend

    if kw.pop("fe_options", None):
        raise ValueError("--fe-option: emotion2vec has no feature extractor (it takes the waveform itself); "
                         "the options are for transformers models")
    return Emotion2vecBackend(path, **kw)


def _w2v2_dim(path: str, **kw):
    from .w2v2_dim import DimensionalBackend

    return DimensionalBackend(path, **kw)


def _transformers(path: str, **kw):
    from .hf import TransformersBackend

    return TransformersBackend(path, **kw)


def _is_dim(path: Path) -> bool:
    from .w2v2_dim import is_dim_layout

    return is_dim_layout(path)


@dataclass(frozen=True)
class BackendEntry:
    name: str
    detect: Callable[[Path], bool]  # is this directory of this back-end's kind (tried in table order)
    load: Callable[..., object]  # (path, device=, dtype=, info=, fe_options=) -> the back-end


BACKENDS = (
    BackendEntry("emotion2vec", lambda p: (p / "config.yaml").exists() and (p / "model.pt").exists(), _emotion2vec),
    BackendEntry("w2v2-dim", lambda p: (p / "config.json").exists() and _is_dim(p), _w2v2_dim),
    BackendEntry("transformers", lambda p: (p / "config.json").exists(), _transformers),
)
NAMES = tuple(b.name for b in BACKENDS)


def refuse_other_kinds(path: Path) -> None:
    """Speech-recognition directories are refused as --model, with where they go instead."""
    if (path / "model.bin").exists() and (path / "config.json").exists():
        raise ModelNotAvailable(f"{path} is a CTranslate2 (faster-whisper) speech-recognition model, not an emotion "
                                "model: pass it as --asr DIR (transcripts beside the emotion labels)")
    if (path / "config.json").exists() and is_asr_config(path / "config.json"):
        raise ModelNotAvailable(
            f"{path} is a speech-recognition model (WhisperForConditionalGeneration), not an emotion classifier: "
            "pass it as --asr MODEL for transcripts; --model takes an emotion model (emotion2vec, or a transformers "
            "audio classifier such as WhisperForAudioClassification)")


def detect_backend(path: Path) -> str:
    """The first back-end of :data:`BACKENDS` whose directory ``path`` is: 'emotion2vec' for
    funasr's layout, 'w2v2-dim' for audEERING's dimensional wav2vec2 (config.json naming
    Wav2Vec2ForSpeechClassification), 'transformers' for any other save_pretrained directory."""
    path = Path(path)
    if not ((path / "config.yaml").exists() and (path / "model.pt").exists()):
        refuse_other_kinds(path)
    for b in BACKENDS:
        if b.detect(path):
            return b.name
    raise ModelNotAvailable(
        f"{path} is neither a funasr emotion2vec directory (config.yaml + model.pt) "
        "nor a transformers directory (config.json)"
    )


def is_asr_config(cfg: Path) -> bool:
    try:
        c = json.loads(cfg.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return any(a.endswith(("ForConditionalGeneration", "ForCTC", "ForSpeechSeq2Seq")) for a in c.get("architectures") or [])


def resolve_model(name: str, hub: str = "auto", revision: Optional[str] = None) -> ModelInfo:
    """Find the model directory for ``name`` (downloading when needed and possible)."""
    mid, path, local = locate(name, hub, revision)
    return ModelInfo(id=mid, path=str(path), backend=detect_backend(path), revision=None if local else revision,
                     test_model=local and (path / "BATCHSER_TEST_MODEL").exists())


def load_backend(name: str, device: str = "cpu", dtype: str = "float32", hub: str = "auto",
                 backend: str = "auto", revision: Optional[str] = None, fe_options: Optional[dict] = None):
    """Resolve ``name`` and build its model worker (``fe_options``: keywords for every
    feature-extractor call of a transformers model, ``--fe-option``)."""
    info = resolve_model(name, hub=hub, revision=revision)
    kind = info.backend if backend == "auto" else backend
    info.backend = kind
    info.sha256 = weights_sha256(info.path)
    entry = next((b for b in BACKENDS if b.name == kind), None)
    if entry is None:
        raise ModelNotAvailable(f"unknown back-end {kind!r} (supported: {', '.join(NAMES)})")
    return entry.load(info.path, device=device, dtype=dtype, info=info, fe_options=fe_options)
