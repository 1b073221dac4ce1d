"""Reproducing a model card's own code path: the Whisper-large-v3 emotion card
(``../shared/references/whisper-large-v3-emotion-card.md``), and --fe-option."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from conftest import speechlike, write_wav

SR = 16000
# mixed lengths, one over 30 s (the card truncates it)
LENGTHS = [int(1.3 * SR), int(7.9 * SR), int(3.2 * SR), int(33.5 * SR)]


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


# --- the card's code, as users copy it (librosa.load replaced by soundfile: the files are 16 kHz) ---
def preprocess_audio(audio_path, feature_extractor, max_duration=30.0, **call_time):
    audio_array, _ = sf.read(audio_path, dtype="float32")
    max_length = int(feature_extractor.sampling_rate * max_duration)
    if len(audio_array) > max_length:
        audio_array = audio_array[:max_length]
    else:
        audio_array = np.pad(audio_array, (0, max_length - len(audio_array)))
    return feature_extractor(audio_array, sampling_rate=feature_extractor.sampling_rate, max_length=max_length,
                             truncation=True, return_tensors="pt", **call_time)


def predict_emotion(audio_path, model, feature_extractor, id2label, max_duration=30.0, **call_time):
    inputs = preprocess_audio(audio_path, feature_extractor, max_duration, **call_time)
    with torch.no_grad():
        logits = model(**inputs).logits
    return id2label[torch.argmax(logits, dim=-1).item()], torch.softmax(logits, -1)[0].numpy()


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from batchser.testmodels import make_whisper_classifier_dir

    tmp = tmp_path_factory.mktemp("card")
    mdir = make_whisper_classifier_dir(tmp / "whisper", seed=11)
    d = tmp / "data"
    d.mkdir()
    files = {f"u{i}": write_wav(tmp / "wav" / f"u{i}.wav", 0.3 * speechlike(n, seed=50 + i)) for i, n in enumerate(LENGTHS)}
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in files.items()))
    model = AutoModelForAudioClassification.from_pretrained(str(mdir)).eval()
    fe = AutoFeatureExtractor.from_pretrained(str(mdir), do_normalize=True)  # as the card loads it
    return mdir, d, files, model, fe


@pytest.mark.parametrize("normalize", [False, True])
def test_batchser_with_the_cards_options_equals_predict_emotion(card, tmp_path, normalize):
    mdir, d, files, model, fe = card
    extra = ["--fe-option", "do_normalize=true"] if normalize else []
    out = tmp_path / "o"
    code, text = run_cli("run", d, "--out", out, "--model", mdir, "--long-audio", "truncate", "--num-workers", 0,
                         "--max-batch-size", 4, *extra, "-q")
    assert code == 0, text
    res = open_results(out)
    df = res.labels.set_index("utt_id")
    labels = res.manifest["model"]["labels"]
    emb = dict(zip(res.labels.utt_id, res.embeddings()))
    assert res.manifest["model"]["fe_options"] == ({"do_normalize": True} if normalize else {})
    settings = json.loads((out / "settings.json").read_text())
    assert settings.get("fe_options") == ({"do_normalize": True} if normalize else None)
    call_time = {"do_normalize": True} if normalize else {}
    for u, p in files.items():
        want_label, want = predict_emotion(str(p), model, fe, model.config.id2label, **call_time)
        got = df.loc[u, [f"score_{l}" for l in labels]].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=u)
        assert df.loc[u, "label"] == want_label.lower()
        # the embedding: the encoder's last state over the frames that cover the audio (not the padding)
        inputs = preprocess_audio(str(p), fe, **call_time)
        with torch.no_grad():
            hid = model.encoder(inputs["input_features"]).last_hidden_state[0].numpy()
        n = min(hid.shape[0], -(-min(len(sf.read(p)[0]), 30 * SR) // 320))
        np.testing.assert_allclose(emb[u], hid[:n].mean(0), atol=2e-4, err_msg=u)
    assert df.loc["u3", "duration"] == pytest.approx(33.5)  # the row keeps the utterance; the model saw 30 s


def test_call_time_normalisation_changes_the_features_and_the_from_pretrained_keyword_does_not(card):
    """The measurement behind the README: from_pretrained(do_normalize=True) is ignored by
    WhisperFeatureExtractor.__call__; a call-time do_normalize=True is not."""
    from transformers import AutoFeatureExtractor

    mdir, _, files, _, fe = card
    plain = AutoFeatureExtractor.from_pretrained(str(mdir))
    x, _ = sf.read(files["u1"], dtype="float32")
    a = fe(x, sampling_rate=SR, return_tensors="np").input_features
    b = plain(x, sampling_rate=SR, return_tensors="np").input_features
    c = fe(x, sampling_rate=SR, return_tensors="np", do_normalize=True).input_features
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_fe_option_refusals(card, e2v_dir, tmp_path):
    mdir, d, *_ = card
    code, text = run_cli("run", d, "--out", tmp_path / "a", "--model", mdir, "--fe-option", "do_normalise=true")
    assert code == 2 and "do_normalise" in text and "do_normalize" in text  # a typo is named, with what exists
    code, text = run_cli("run", d, "--out", tmp_path / "b", "--model", mdir, "--fe-option", "sampling_rate=8000")
    assert code == 2 and "itself" in text
    code, text = run_cli("run", d, "--out", tmp_path / "c", "--model", mdir, "--fe-option", "nonsense")
    assert code == 2 and "KEY=VALUE" in text
    code, text = run_cli("run", d, "--out", tmp_path / "d", "--model", e2v_dir, "--fe-option", "do_normalize=true")
    assert code == 2 and "emotion2vec has no feature extractor" in text
    # a resume with another option is another result: refused
    out = tmp_path / "e"
    assert run_cli("run", d, "--out", out, "--model", mdir, "--long-audio", "truncate", "--num-workers", 0, "-q")[0] == 0
    code, text = run_cli("run", d, "--out", out, "--model", mdir, "--long-audio", "truncate",
                         "--fe-option", "do_normalize=true")
    assert code == 2 and "fe_options" in text
