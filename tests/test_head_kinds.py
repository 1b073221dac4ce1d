"""Every head kind: single-label (softmax), multi-label (sigmoid), regression (raw values), and
audEERING's dimensional wav2vec2 layout; eval's dimensional metrics (CCC, Pearson r, MAE)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from batchser.evaluate import ccc
from conftest import speechlike, write_wav

SR = 16000
LENGTHS = [16000, 5000, 23456, 8000, 40000, 1234]


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heads")
    d = tmp / "data"
    d.mkdir()
    waves = {f"u{i}": speechlike(n, seed=30 + i) for i, n in enumerate(LENGTHS)}
    lines = [f"{u} {write_wav(tmp / 'wav' / f'{u}.wav', x)}" for u, x in waves.items()]
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "utt2spk").write_text("".join(f"{u} s{i % 2}\n" for i, u in enumerate(waves)))
    return d, waves


def _hf_reference(model_dir, wave):
    """transformers' own unbatched forward, as the audio-classification guide runs it."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    fe = AutoFeatureExtractor.from_pretrained(model_dir)
    m = AutoModelForAudioClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return m(**fe(wave, sampling_rate=SR, return_tensors="pt")).logits[0].numpy()


def test_regression_head_gives_raw_values_not_a_softmax(corpus, tmp_path):
    from batchser.testmodels import make_wav2vec2_classifier_dir

    d, waves = corpus
    mdir = make_wav2vec2_classifier_dir(tmp_path / "reg", labels=("arousal", "valence", "dominance"),
                                        problem_type="regression", seed=3)
    out = tmp_path / "o"
    code, text = run_cli("run", d, "--out", out, "--model", mdir, "--num-workers", 0, "-q")
    assert code == 0, text
    res = open_results(out)
    df = res.labels.set_index("utt_id")
    assert res.head_kind == "regression" and res.manifest["model"]["head_kind"] == "regression"
    assert not [c for c in df.columns if c.startswith("score_")]
    assert df.label.isna().all() and df.score.isna().all()
    for u, w in waves.items():
        ref = _hf_reference(mdir, w)
        got = df.loc[u, ["value_arousal", "value_valence", "value_dominance"]].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(got, ref, atol=2e-5, err_msg=u)  # raw: a softmax would sum to 1
    # classification metrics are refused on it, with the way to the right ones
    (d / "utt2emo").write_text("".join(f"{u} happy\n" for u in waves))
    try:
        code, text = run_cli("eval", out, "--ref", d / "utt2emo")
    finally:
        (d / "utt2emo").unlink()
    assert code == 2 and "--ref-dim" in text and "CCC" in text
    # --threshold is for multi-label heads only
    code, text = run_cli("run", d, "--out", tmp_path / "o2", "--model", mdir, "--threshold", "0.5")
    assert code == 2 and "multi-label" in text


def test_multi_label_head_gives_a_sigmoid_per_class_and_labels_above_a_threshold(corpus, tmp_path):
    from batchser.testmodels import make_wav2vec2_classifier_dir

    d, waves = corpus
    labels = ("angry", "happy", "neutral", "sad")
    mdir = make_wav2vec2_classifier_dir(tmp_path / "ml", labels=labels, problem_type="multi_label_classification",
                                        seed=4)
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", mdir, "--num-workers", 0, "-q")[0] == 0
    df = open_results(out).labels.set_index("utt_id")
    assert df.label.isna().all()  # no single label without a threshold
    cols = [f"score_{l}" for l in labels]
    probs = {}
    for u, w in waves.items():
        ref = 1 / (1 + np.exp(-_hf_reference(mdir, w).astype(np.float64)))
        probs[u] = ref
        np.testing.assert_allclose(df.loc[u, cols].to_numpy(dtype=np.float64), ref, atol=1e-5, err_msg=u)
        assert df.loc[u, "score"] == pytest.approx(ref.max(), abs=1e-5)
    t = float(np.median(np.concatenate(list(probs.values()))))  # some classes above it, some below
    out_t = tmp_path / "ot"
    assert run_cli("run", d, "--out", out_t, "--model", mdir, "--num-workers", 0, "--threshold", t, "-q")[0] == 0
    res = open_results(out_t)
    dt = res.labels.set_index("utt_id")
    assert res.head_kind == "multi_label" and res.manifest["model"]["threshold"] == t
    for u, p in probs.items():
        want = [labels[i] for i in np.argsort(-p) if p[i] >= t]
        assert dt.loc[u, "label"] == ",".join(want), u
    # a resume with another threshold is another result: refused
    code, text = run_cli("run", d, "--out", out_t, "--model", mdir, "--threshold", 0.9)
    assert code == 2 and "threshold" in text


class _CardRegressionHead(torch.nn.Module):
    """The audEERING model card's code, as users copy it (reference implementation)."""

    def __init__(self, config):
        super().__init__()
        self.dense = torch.nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = torch.nn.Dropout(config.final_dropout)
        self.out_proj = torch.nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features, **kwargs):
        x = self.dropout(features)
        x = torch.tanh(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)


def _card_model(path):
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class EmotionModel(Wav2Vec2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.config = config
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = _CardRegressionHead(config)
            self.post_init()

        def forward(self, input_values):
            hidden_states = self.wav2vec2(input_values)[0]
            hidden_states = torch.mean(hidden_states, dim=1)
            return hidden_states, self.classifier(hidden_states)

    return EmotionModel.from_pretrained(path).eval()


def test_audeering_dimensional_layout_equals_the_model_cards_code(corpus, tmp_path):
    from transformers import Wav2Vec2Processor

    from batchser.testmodels import make_w2v2_dim_dir

    d, waves = corpus
    mdir = make_w2v2_dim_dir(tmp_path / "dim", seed=5)
    assert json.loads((mdir / "config.json").read_text())["architectures"] == ["Wav2Vec2ForSpeechClassification"]
    processor = Wav2Vec2Processor.from_pretrained(str(mdir))
    model = _card_model(str(mdir))

    def process_func(x, sampling_rate, embeddings=False):  # the card's, verbatim in substance
        y = processor(x, sampling_rate=sampling_rate)["input_values"][0].reshape(1, -1)
        with torch.no_grad():
            return model(torch.from_numpy(y))[0 if embeddings else 1].numpy()

    out = tmp_path / "o"
    code, text = run_cli("run", d, "--out", out, "--model", mdir, "--num-workers", 0, "--max-batch-size", 6, "-q")
    assert code == 0, text
    res = open_results(out)
    assert res.manifest["model"]["backend"] == "w2v2-dim" and res.head_kind == "regression"
    df = res.labels.set_index("utt_id")
    emb = dict(zip(res.labels.utt_id, res.embeddings()))
    values = np.stack([process_func(w, SR)[0] for w in waves.values()])
    assert values.std(0).min() > 1e-3  # the outputs differ between utterances: the check below means something
    for (u, w), ref in zip(waves.items(), values):
        got = df.loc[u, ["value_arousal", "value_dominance", "value_valence"]].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(got, ref, atol=2e-5, err_msg=u)
        np.testing.assert_allclose(emb[u], process_func(w, SR, embeddings=True)[0], atol=2e-5, err_msg=u)
    # transformers' own class would load this checkpoint with a random head: not what we run
    from transformers import AutoModelForAudioClassification

    wrong = AutoModelForAudioClassification.from_pretrained(str(mdir)).eval()
    with torch.no_grad():
        x = torch.from_numpy(processor(waves["u0"], sampling_rate=SR)["input_values"][0][None])
        assert not np.allclose(wrong(x).logits[0].numpy(), values[0], atol=1e-3)


def test_eval_reports_ccc_pearson_and_mae_per_dimension(corpus, tmp_path):
    from batchser.testmodels import make_w2v2_dim_dir

    d, waves = corpus
    mdir = make_w2v2_dim_dir(tmp_path / "dim", seed=6)
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", mdir, "--num-workers", 0, "-q")[0] == 0
    df = open_results(out).labels.set_index("utt_id").sort_index()
    rng = np.random.default_rng(0)
    ids = sorted(waves)
    ref = {"arousal": df.loc[ids, "value_arousal"].to_numpy() + rng.normal(0, 0.05, len(ids)),
           "valence": rng.uniform(0, 1, len(ids))}
    ref_file = tmp_path / "utt2dim"
    ref_file.write_text("utt arousal valence\n" + "".join(
        f"{u} {ref['arousal'][i]:.6f} {ref['valence'][i]:.6f}\n" for i, u in enumerate(ids[:-1])))  # one has none
    code, text = run_cli("eval", out, "--ref-dim", ref_file)
    assert code == 0, text
    m = json.loads((out / "eval" / "dims.json").read_text())
    assert m["n"] == len(ids) - 1 and set(m["dimensions"]) == {"arousal", "valence"}
    assert m["predicted_dimensions_without_reference"] == ["dominance"]
    for dim in ("arousal", "valence"):
        r = np.round(ref[dim][:-1], 6)
        p = df.loc[ids[:-1], f"value_{dim}"].to_numpy(dtype=np.float64)
        # CCC written out longhand (Lin 1989, population moments)
        want = 2 * np.mean((r - r.mean()) * (p - p.mean())) / (r.var() + p.var() + (r.mean() - p.mean()) ** 2)
        assert m["dimensions"][dim]["ccc"] == pytest.approx(want, abs=1e-9)
        assert m["dimensions"][dim]["pearson_r"] == pytest.approx(np.corrcoef(r, p)[0, 1], abs=1e-9)
        assert m["dimensions"][dim]["mae"] == pytest.approx(np.abs(r - p).mean(), abs=1e-9)
    assert m["dimensions"]["arousal"]["ccc"] > m["dimensions"]["valence"]["ccc"]
    assert set(m["per_speaker"]) == {"s0", "s1"} and "CCC" in text and "arousal" in text
    # a hand-worked CCC: x = 1,2,3, y = 2,3,4: means 2 and 3, variances 2/3, cov 2/3 -> 4/3 / (4/3 + 1)
    assert ccc(np.array([1.0, 2, 3]), np.array([2.0, 3, 4])) == pytest.approx((4 / 3) / (4 / 3 + 1))
    assert ccc(np.array([1.0, 2, 3]), np.array([1.0, 2, 3])) == pytest.approx(1.0)
    # no header and no names: told how to fix it; with --dim-names it works
    bare = tmp_path / "bare"
    bare.write_text("".join(f"{u} {ref['arousal'][i]:.6f}\n" for i, u in enumerate(ids)))
    code, text = run_cli("eval", out, "--ref-dim", bare)
    assert code == 2 and "--dim-names" in text
    code, text = run_cli("eval", out, "--ref-dim", bare, "--dim-names", "arousal", "--json")
    assert code == 0 and json.loads(text)["n"] == len(ids)
    bad = tmp_path / "bad"
    bad.write_text("utt arousal\nu0 0.5\nu1 high\n")
    code, text = run_cli("eval", out, "--ref-dim", bad)
    assert code == 2 and f"{bad}:3" in text
    # a regression run without any reference given: it says what to pass
    code, text = run_cli("eval", out)
    assert code == 2 and "--ref-dim" in text


def test_a_dimensional_run_through_timeline_plot_summarize_and_export(corpus, tmp_path):
    from PIL import Image

    from batchser.testmodels import make_w2v2_dim_dir

    d, waves = corpus
    mdir = make_w2v2_dim_dir(tmp_path / "dim", seed=7)
    out = tmp_path / "o"
    code, text = run_cli("run", d, "--out", out, "--model", mdir, "--num-workers", 0, "--timeline", "0.5,0.25", "-q")
    assert code == 0, text
    res = open_results(out)
    tl = res.timeline
    assert {"value_arousal", "value_dominance", "value_valence"} <= set(tl.columns)
    assert not [c for c in tl.columns if c.startswith("score_")] and tl.label.isna().all()
    code, text = run_cli("plot", out, "--rec", "u4", "--png", tmp_path / "u4.png")
    assert code == 0, text
    with Image.open(tmp_path / "u4.png") as im:
        assert (np.asarray(im.convert("L")) < 250).mean() > 0.02
    code, text = run_cli("summarize", out)
    assert code == 0, text
    import pandas as pd

    s = pd.read_parquet(out / "summary_by_spk.parquet").set_index("spk")
    df = res.labels
    assert s.loc["s0", "mean_value_arousal"] == pytest.approx(df[df.spk == "s0"].value_arousal.mean(), abs=1e-6)
    code, text = run_cli("export", out, "--kaldi", tmp_path / "k")
    assert code == 0, text
    assert (tmp_path / "k" / "dims.txt").read_text().split() == ["arousal", "dominance", "valence"]
    assert not (tmp_path / "k" / "utt2emo_hyp").exists()
    # the exported table is an utt2dim eval reads (with the names): the model against itself
    code, text = run_cli("eval", out, "--ref-dim", tmp_path / "k" / "utt2dim", "--dim-names",
                         "arousal,dominance,valence", "--json")
    assert code == 0, text
    assert all(v["ccc"] == pytest.approx(1.0, abs=1e-4) for v in json.loads(text)["dimensions"].values())
