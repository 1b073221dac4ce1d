"""Model resolution, offline behaviour, label names, and the test-model builders."""
from __future__ import annotations

import pytest
import torch

from batchser.models import ModelNotAvailable, normalise_label, resolve_model
from batchser.models.registry import detect_backend
from batchser.models.resolve import ALIASES, _hub_and_id
from batchser.testmodels import MARKER, emotion2vec_config


@pytest.mark.parametrize("tok,name", [("生气/angry", "angry"), ("<unk>", "unknown"), ("Disgust", "disgusted"),
                                      ("fear", "fearful"), ("其他/other", "other"), ("very happy!", "very_happy")])
def test_normalise_label(tok, name):
    assert normalise_label(tok) == name


def test_alias_and_hub_choice():
    assert _hub_and_id("emotion2vec_plus_large", "auto") == ("hf", "emotion2vec/emotion2vec_plus_large")
    assert _hub_and_id("emotion2vec_plus_large", "ms") == ("ms", "iic/emotion2vec_plus_large")
    assert _hub_and_id("iic/emotion2vec_plus_base", "auto") == ("ms", "iic/emotion2vec_plus_base")
    assert _hub_and_id("someone/whisper-ser", "auto") == ("hf", "someone/whisper-ser")
    assert set(ALIASES) == {"emotion2vec_plus_seed", "emotion2vec_plus_base", "emotion2vec_plus_large", "emotion2vec_base"}


def test_offline_hub_id_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSER_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    for name in ("emotion2vec_plus_base", "iic/emotion2vec_plus_large"):
        with pytest.raises(ModelNotAvailable, match="local model directory"):
            resolve_model(name)


def test_cached_modelscope_snapshot_is_used_offline(tmp_path, monkeypatch, e2v_dir):
    import shutil

    monkeypatch.setenv("BATCHSER_OFFLINE", "1")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    shutil.copytree(e2v_dir, tmp_path / "ms" / "models" / "iic" / "emotion2vec_plus_base")
    info = resolve_model("emotion2vec_plus_base", hub="ms")
    assert info.backend == "emotion2vec" and info.id == "ms:iic/emotion2vec_plus_base"


def test_local_dir_detection(e2v_dir, tmp_path):
    info = resolve_model(str(e2v_dir))
    assert info.backend == "emotion2vec" and info.test_model
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailable, match="neither"):
        detect_backend(tmp_path / "empty")
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        resolve_model("./no/such/dir")


def _count(size):
    from funasr.models.emotion2vec.model import Emotion2vec

    cfg = emotion2vec_config(size)
    with torch.device("meta"):
        m = Emotion2vec(model_conf=cfg["model_conf"], vocab_size=9)
    return sum(p.numel() for p in m.parameters())


def test_full_size_configs_match_published_sizes():
    # emotion2vec+ base: ~93M with its 9-class head; large: ~300M (model card)
    assert 90e6 < _count("base") < 96e6
    assert 300e6 < _count("large") < 330e6


def test_whisper_dir_loads_with_transformers(tmp_path):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from batchser.testmodels import WHISPER_LABELS, make_whisper_classifier_dir

    d = make_whisper_classifier_dir(tmp_path / "w")
    assert (d / MARKER).exists()
    m = AutoModelForAudioClassification.from_pretrained(d)
    fe = AutoFeatureExtractor.from_pretrained(d)
    assert type(m).__name__ == "WhisperForAudioClassification"
    assert [m.config.id2label[i] for i in range(len(WHISPER_LABELS))] == WHISPER_LABELS
    assert fe.feature_size == 128 and fe.do_normalize is True
    import numpy as np

    feats = fe([np.zeros(16000, np.float32)], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = m(feats.input_features).logits
    assert logits.shape == (1, len(WHISPER_LABELS))


def test_whisper_large_v3_dims():
    from transformers import WhisperConfig

    from batchser.testmodels import WHISPER_SIZES

    c = WhisperConfig(**WHISPER_SIZES["large-v3"])
    assert (c.d_model, c.encoder_layers, c.num_mel_bins) == (1280, 32, 128)
