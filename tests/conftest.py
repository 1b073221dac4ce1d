"""Shared fixtures: random-weight model directories (built once per session) and audio helpers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BATCHSER_SHARED", REPO.parent / "shared"))
RAVDESS = SHARED / "corpora" / "ravdess"


@pytest.fixture(scope="session")
def e2v_dir(tmp_path_factory) -> Path:
    from batchser.testmodels import make_emotion2vec_dir

    return make_emotion2vec_dir(tmp_path_factory.mktemp("models") / "e2v_tiny", size="tiny", seed=1)


@pytest.fixture(scope="session")
def e2v_nohead_dir(tmp_path_factory) -> Path:
    from batchser.testmodels import make_emotion2vec_dir

    return make_emotion2vec_dir(tmp_path_factory.mktemp("models") / "e2v_nohead", size="tiny", seed=2, head=False)


@pytest.fixture(scope="session")
def e2v_backend(e2v_dir):
    from batchser.models.emotion2vec import Emotion2vecBackend

    return Emotion2vecBackend(str(e2v_dir))


@pytest.fixture(scope="session")
def funasr_model(e2v_dir):
    """funasr's own AutoModel on the same directory: the reference implementation."""
    from batchser.models.emotion2vec import load_funasr

    return load_funasr(str(e2v_dir), "cpu")


def speechlike(n: int, seed: int, sr: int = 16000) -> np.ndarray:
    """Noise shaped by a slow envelope plus a tone: varied enough to expose padding leaks."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6))
    x = 0.1 * env * rng.standard_normal(n) + 0.05 * np.sin(2 * np.pi * rng.uniform(100, 300) * t)
    return (x + rng.uniform(-0.05, 0.05)).astype(np.float32)  # a DC offset too: tests normalisation


def write_wav(path: Path, x: np.ndarray, sr: int = 16000, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


@pytest.fixture
def make_corpus(tmp_path):
    """Write a data dir of synthetic utterances: make_corpus({'id': seconds or array, ...})."""

    def _make(utts: dict, sr: int = 16000, extra: dict | None = None) -> Path:
        d = tmp_path / "data"
        d.mkdir(exist_ok=True)
        lines = []
        for i, (uid, v) in enumerate(utts.items()):
            x = v if isinstance(v, np.ndarray) else speechlike(int(v * sr), seed=i, sr=sr)
            p = write_wav(tmp_path / "wav" / f"{uid}.wav", x, sr)
            lines.append(f"{uid} {p}")
        (d / "wav.scp").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name, text in (extra or {}).items():
            (d / name).write_text(text, encoding="utf-8")
        return d

    return _make
