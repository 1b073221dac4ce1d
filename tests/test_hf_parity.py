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
    from batchser.testmodels import make_whisper_classifier_dir

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
    from batchser.testmodels import make_wav2vec2_classifier_dir

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
    from batchser.testmodels import make_wav2vec2_classifier_dir

    be = TransformersBackend(str(make_wav2vec2_classifier_dir(tmp_path / "g", attention_mask=False, seed=3)))
    a, b = speechlike(4000, 1), speechlike(20000, 2)
    feats = be.fe([a, b], sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.no_grad():
        padded = torch.softmax(be.model(feats.input_values).logits, -1)[0].numpy()
    assert np.abs(padded - unbatched(be, a)[0]).max() > 1e-4


@pytest.mark.parametrize("kind", ["whisper", "w2v2"])
def test_pipeline_on_the_same_files_agrees_with_batchser_run(kind, whisper_dir, tmp_path, make_corpus):
    """transformers' pipeline("audio-classification") on the files vs `batchser run` on the same files:
    same top label, every score within 1e-4, for a batch mixing short and long clips."""
    import shutil

    from transformers import pipeline

    from batchser.runner import RunConfig, run
    from batchser.testmodels import make_wav2vec2_classifier_dir

    if shutil.which("ffmpeg") is None:
        pytest.skip("the pipeline decodes files with ffmpeg")
    model = whisper_dir if kind == "whisper" else make_wav2vec2_classifier_dir(tmp_path / "w2v", seed=4)
    d = make_corpus({"short": 0.6, "mid": 3.3, "long": 12.5, "tiny": 0.2})
    run(RunConfig(input=str(d), out=str(tmp_path / "o"), model=str(model), num_workers=0, progress=False),
        log=lambda *_: None)
    from batchser import open_results

    df = open_results(tmp_path / "o").labels.set_index("utt_id")
    pipe = pipeline("audio-classification", model=str(model), device="cpu")
    for line in (d / "wav.scp").read_text().splitlines():
        uid, path = line.split()
        ref = pipe(path, top_k=None)
        row = df.loc[uid]
        norm = {"disgust": "disgusted"}
        assert row.label == norm.get(ref[0]["label"], ref[0]["label"])
        for r in ref:
            assert row[f"score_{norm.get(r['label'], r['label'])}"] == pytest.approx(r["score"], abs=1e-4)


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
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "o"), "--no-plot"])  # eval works on every back-end
    assert r.exit_code == 0 and "utterances evaluated: 8" in r.output


def test_cli_runs_wav2vec2_dir_with_the_same_contract(tmp_path, monkeypatch, e2v_dir):
    from click.testing import CliRunner

    from batchser import open_results
    from batchser.cli import main
    from batchser.testmodels import make_wav2vec2_classifier_dir
    from conftest import REPO

    monkeypatch.chdir(REPO)
    w = make_wav2vec2_classifier_dir(tmp_path / "w2v", attention_mask=False)
    outs = {}
    for name, m in (("w2v", w), ("e2v", e2v_dir)):
        out = tmp_path / f"out_{name}"  # not the model's directory (a foreign --out is refused)
        r = CliRunner().invoke(main, ["run", "sample_scp/wav.scp", "--out", str(out), "--model", str(m),
                                      "--num-workers", "0", "--granularity", "frame", "-q"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        outs[name] = open_results(out)
    a, b = outs["w2v"].labels, outs["e2v"].labels
    fixed = [c for c in b.columns if not c.startswith("score_")]
    assert [c for c in a.columns if not c.startswith("score_")] == fixed  # same contract, other classes
    assert sorted(c for c in a.columns if c.startswith("score_")) == ["score_angry", "score_happy",
                                                                      "score_neutral", "score_sad"]
    assert outs["w2v"].frames(a.utt_id[0]).shape[1] == 32
