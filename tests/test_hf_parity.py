"""transformers back-end: batched results equal transformers' own unbatched forward."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from batchser.models.hf import TransformersBackend
from batchser.worker import run_items, split_windows
from conftest import speechlike


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    from batchser.testing import make_whisper_classifier_dir

    return make_whisper_classifier_dir(tmp_path_factory.mktemp("w") / "whisper", seed=5)


@pytest.fixture(scope="module")
def whisper(whisper_dir):
    return TransformersBackend(str(whisper_dir))


def unbatched(backend, w):
    """transformers' own path: feature extractor on one utterance, model forward, softmax."""
    feats = backend.fe(w, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        kw = {}
        if "attention_mask" in feats and not backend.is_whisper:
            kw["attention_mask"] = feats["attention_mask"]
        x = feats.input_features if backend.is_whisper else feats.input_values
        out = backend.model(x, output_hidden_states=True, **kw)
    return torch.softmax(out.logits, -1)[0].numpy(), out.hidden_states[-1][0].numpy()


WLENS = [16000, 5000, 16000 * 7 + 33, 800, 16000 * 30]


def test_whisper_batched_equals_unbatched(whisper):
    wavs = [speechlike(n, i) for i, n in enumerate(WLENS)]
    out = whisper.forward(wavs, frames=True)
    assert whisper.labels == ["angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]
    for i, w in enumerate(wavs):
        sc, hid = unbatched(whisper, w)
        np.testing.assert_allclose(out.scores[i], sc, atol=1e-4)
        assert out.scores[i].argmax() == sc.argmax()
        n = -(-len(w) // 320)  # 50 Hz frames covering the audio
        assert out.frames[i].shape == (n, whisper.embed_dim)
        np.testing.assert_allclose(out.frames[i], hid[:n], atol=1e-3)
        np.testing.assert_allclose(out.embeddings[i], hid[:n].mean(0), atol=1e-3)


def test_whisper_hidden_state_is_encoder_output(whisper):
    w = speechlike(20000, 1)
    feats = whisper.fe(w, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        enc = whisper.model.encoder(feats.input_features).last_hidden_state[0].numpy()
    _, hid = unbatched(whisper, w)
    np.testing.assert_allclose(hid, enc, atol=1e-6)


def test_whisper_long_audio_windows_average_scores(whisper):
    long = speechlike(16000 * 65, 3)
    res, _, _ = run_items(whisper, [long], frames=False, max_samples=10**9)
    assert res[0].windows == 3  # 30-s model limit: three windows of ~21.7 s
    wins = [long[a:b] for a, b in split_windows(len(long), 16000 * 30)]
    scores = np.stack([unbatched(whisper, w)[0] for w in wins])
    counts = np.array([-(-len(w) // 320) for w in wins], dtype=float)
    np.testing.assert_allclose(res[0].scores, (scores * counts[:, None]).sum(0) / counts.sum(), atol=1e-4)


def test_whisper_truncate_is_first_30_seconds(whisper):
    long = speechlike(16000 * 40, 4)
    res, _, _ = run_items(whisper, [long], frames=False, max_samples=10**9, long_audio="truncate")
    sc, _ = unbatched(whisper, long)  # the feature extractor itself truncates to 30 s
    np.testing.assert_allclose(res[0].scores, sc, atol=1e-4)
    assert res[0].windows == 1


@pytest.mark.parametrize("mask", [True, False])
def test_wav2vec2_parity(tmp_path, mask):
    from batchser.testing import make_wav2vec2_classifier_dir

    be = TransformersBackend(str(make_wav2vec2_classifier_dir(tmp_path / "w2v", attention_mask=mask, seed=2)))
    assert be.batched is mask
    wavs = [speechlike(n, i) for i, n in enumerate([16000, 4000, 23000, 9001])]
    out = be.forward(wavs)
    for i, w in enumerate(wavs):
        sc, hid = unbatched(be, w)
        np.testing.assert_allclose(out.scores[i], sc, atol=1e-5)
        np.testing.assert_allclose(out.embeddings[i], hid.mean(0), atol=1e-5)


def test_unmasked_wav2vec2_changes_when_padded(tmp_path):
    """Why such models run one utterance per forward: padding them changes the result."""
    from batchser.testing import make_wav2vec2_classifier_dir

    be = TransformersBackend(str(make_wav2vec2_classifier_dir(tmp_path / "g", attention_mask=False, seed=3)))
    a, b = speechlike(4000, 1), speechlike(20000, 2)
    feats = be.fe([a, b], sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.no_grad():
        padded = torch.softmax(be.model(feats.input_values).logits, -1)[0].numpy()
    assert np.abs(padded - unbatched(be, a)[0]).max() > 1e-4


def test_pipeline_agrees(whisper_dir, whisper):
    from transformers import pipeline

    pipe = pipeline("audio-classification", model=str(whisper_dir), device="cpu")
    wavs = [speechlike(n, 10 + i) for i, n in enumerate([12000, 30000])]
    ours = whisper.forward(wavs)
    for i, w in enumerate(wavs):
        ref = pipe({"raw": w, "sampling_rate": 16000}, top_k=None)
        got = {whisper.labels[j]: float(ours.scores[i][j]) for j in range(len(whisper.labels))}
        for r in ref:
            assert got[r["label"].replace("disgust", "disgusted")] == pytest.approx(r["score"], abs=1e-4)


def test_cli_runs_whisper_dir(whisper_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from batchser import open_results
    from batchser.cli import main
    from conftest import REPO

    monkeypatch.chdir(REPO)  # wav.scp paths are relative to the repo root
    r = CliRunner().invoke(main, ["run", "sample_scp/wav.scp", "--out", str(tmp_path / "o"),
                                  "--model", str(whisper_dir), "--num-workers", "0", "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = open_results(tmp_path / "o")
    assert len(res.labels) == 8 and res.manifest["model"]["backend"] == "transformers"
    assert "score_surprised" in res.labels.columns and res.embeddings().shape == (8, 64)
