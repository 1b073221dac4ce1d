"""batchser eval / summarize, checked against scikit-learn, and the RAVDESS recipe's data prep."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from batchser.evaluate import evaluate, metrics, read_label_map, summarize
from batchser.store import OutputWriter
from conftest import RAVDESS, REPO

LABELS = ["angry", "happy", "neutral", "other", "sad"]


def test_metrics_match_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    classes = ["angry", "happy", "neutral", "sad"]
    y_true = list(rng.choice(classes, 300, p=[0.4, 0.3, 0.2, 0.1]))
    y_pred = [t if rng.random() < 0.5 else rng.choice(classes + ["other", "<missing>"]) for t in y_true]
    m = metrics(y_true, y_pred)
    assert m["WA"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert m["UA"] == pytest.approx(sk.recall_score(y_true, y_pred, labels=classes, average="macro"))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(
        sk.f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0))
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    for i, c in enumerate(classes):
        v = m["per_class"][c]
        assert (v["precision"], v["recall"], v["f1"], v["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))


def make_out(tmp_path, preds: dict, errors=(), spk=None):
    w = OutputWriter(tmp_path / "o", LABELS, "m", settings={"labels": LABELS})
    rows = []
    for u, lab in preds.items():
        r = {"utt_id": u, "rec_id": u, "spk": (spk or {}).get(u), "start": 0.0, "end": 1.0, "duration": 1.0,
             "label": lab, "score": 0.5}
        r.update({f"score_{l}": 0.5 if l == lab else 0.125 for l in LABELS})
        rows.append(r)
    w.add(rows, np.zeros((len(rows), 2), np.float32))
    for u in errors:
        w.add_error(u, "decode", "bad")
    w.flush()
    w.write_manifest({"model": {"labels": LABELS}})
    return tmp_path / "o"


def test_evaluate_missing_mapping_and_unknown_classes(tmp_path):
    out = make_out(tmp_path, {"a": "angry", "b": "happy", "c": "neutral", "d": "other", "e": "sad"},
                   errors=["f"], spk={"a": "s1", "b": "s1", "c": "s2", "d": "s2", "e": "s2"})
    ref = tmp_path / "utt2emo"
    ref.write_text("a Angry\nb happy\nc calm\nd fear\ne sad\nf sad\ng happy\n")
    m = evaluate(str(out), ref=str(ref), label_map="ravdess")
    # c: calm -> neutral (correct); d: fear -> fearful, predicted other (wrong); f in errors, g never run
    assert m["n"] == 7 and m["WA"] == pytest.approx(4 / 7)
    assert m["missing_predictions"] == {"in_errors": 1, "not_run": 1}
    assert m["reference_classes_model_cannot_output"] == {"fearful": 1}
    assert m["per_class"]["sad"]["recall"] == 0.5
    assert set(m["per_speaker"]) == {"s1", "s2"} and m["per_speaker"]["s1"]["WA"] == 1.0
    assert (out / "eval" / "metrics.json").exists() and (out / "eval" / "confusion.png").stat().st_size > 1000
    saved = json.loads((out / "eval" / "metrics.json").read_text())
    assert saved["confusion"]["columns"][-1] == "<missing>"
    # without the map, calm stays a class of its own that the model cannot output
    m2 = evaluate(str(out), ref=str(ref), plot=False)
    assert "calm" in m2["reference_classes_model_cannot_output"] and m2["WA"] == pytest.approx(3 / 7)


def test_drop_map_and_map_file(tmp_path):
    out = make_out(tmp_path, {"a": "angry", "b": "happy"})
    ref = tmp_path / "r"
    ref.write_text("a angry\nb calm\n")
    m = evaluate(str(out), ref=str(ref), label_map="ravdess-drop-calm", plot=False)
    assert m["n"] == 1 and m["dropped_by_label_map"] == {"calm": 1}
    mp = tmp_path / "map.tsv"
    mp.write_text("# corpus -> model\ncalm\thappy\n")
    assert read_label_map(str(mp)) == {"calm": "happy"}
    assert evaluate(str(out), ref=str(ref), label_map=str(mp), plot=False)["WA"] == 1.0
    mp.write_text("calm happy extra\n")
    with pytest.raises(ValueError, match="map.tsv:1"):
        read_label_map(str(mp))
    with pytest.raises(ValueError, match="built-in"):
        read_label_map("no-such-map")


def test_summarize_by_speaker(tmp_path):
    out = make_out(tmp_path, {"a": "angry", "b": "angry", "c": "sad", "d": "happy"},
                   spk={"a": "s1", "b": "s1", "c": "s1", "d": "s2"})
    path, df = summarize(str(out), by="spk", png=True)
    df = df.set_index("spk")
    assert df.loc["s1", "utterances"] == 3 and df.loc["s1", "n_angry"] == 2 and df.loc["s1", "top_label"] == "angry"
    fr = df[[c for c in df.columns if c.startswith("frac_")]].sum(1)
    np.testing.assert_allclose(fr.to_numpy(), 1.0)
    assert path.exists() and (out / "summary_by_spk.png").exists()
    path, df = summarize(str(out), by="rec")
    assert len(df) == 4


def test_eval_cli_uses_run_references(tmp_path, e2v_dir, make_corpus):
    from click.testing import CliRunner

    from batchser.cli import main

    d = make_corpus({"a": 1.0, "b": 1.2, "c": 0.9}, extra={"utt2emo": "a happy\nb sad\nc calm\n"})
    r = CliRunner().invoke(main, ["run", str(d), "--out", str(tmp_path / "o"), "--model", str(e2v_dir),
                                  "--num-workers", "0", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "o"), "--label-map", "ravdess"])
    assert r.exit_code == 0, r.output
    assert "UA" in r.output and "utterances evaluated: 3" in r.output
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "o"), "--ref", str(d / "utt2emo"), "--json", "--no-plot"])
    assert json.loads(r.output)["n"] == 3


def run_prep(src, dst, *extra):
    return subprocess.run([sys.executable, str(REPO / "recipes" / "ravdess" / "local" / "prepare_data.py"),
                           str(src), str(dst), *extra], capture_output=True, text=True)


def test_ravdess_prep_on_synthetic_tree(tmp_path):
    src = tmp_path / "Audio_Speech_Actors_01-24"
    names = ["Actor_01/03-01-05-01-01-01-01.wav", "Actor_01/03-01-02-02-02-01-01.wav",
             "Actor_12/03-01-07-01-01-02-12.wav", "Actor_12/03-02-03-01-01-01-12.wav",  # song
             "Actor_12/01-01-03-01-01-01-12.wav",  # video modality
             "Actor_12/notes.wav", "Actor_12/03-01-09-01-01-01-12.wav"]  # bad names / unknown emotion
    for n in names:
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(b"")
    r = run_prep(src, tmp_path / "d")
    assert r.returncode == 0, r.stderr
    emo = dict(l.split() for l in (tmp_path / "d" / "utt2emo").read_text().splitlines())
    assert emo == {"ravdess01-03-01-05-01-01-01-01": "angry", "ravdess01-03-01-02-02-02-01-01": "calm",
                   "ravdess12-03-01-07-01-01-02-12": "disgusted"}
    spk = dict(l.split() for l in (tmp_path / "d" / "utt2spk").read_text().splitlines())
    assert set(spk.values()) == {"ravdess01", "ravdess12"}
    assert "ravdess12" in (tmp_path / "d" / "spk2utt").read_text()
    assert "skipped" in r.stderr and "notes.wav" in r.stderr
    r = run_prep(src, tmp_path / "d2", "--include-song")
    assert len((tmp_path / "d2" / "wav.scp").read_text().splitlines()) == 4
    assert run_prep(tmp_path / "empty_nonexistent", tmp_path / "d3").returncode != 0


@pytest.mark.skipif(not (RAVDESS / "wav.scp").exists(), reason="../shared/corpora/ravdess absent")
def test_ravdess_prep_matches_shared_corpus(tmp_path):
    r = run_prep(RAVDESS / "wav", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    for name in ("utt2spk", "utt2emo"):
        assert (tmp_path / "d" / name).read_text() == (RAVDESS / name).read_text()
    ours = [l.split()[0] for l in (tmp_path / "d" / "wav.scp").read_text().splitlines()]
    assert ours == [l.split()[0] for l in (RAVDESS / "wav.scp").read_text().splitlines()]


def test_eval_says_when_the_model_was_a_test_model(e2v_dir, tmp_path, make_corpus):
    from click.testing import CliRunner

    from batchser.cli import main

    d = make_corpus({"a": 0.5, "b": 0.6}, extra={"utt2emo": "a happy\nb sad\n"})
    r = CliRunner().invoke(main, ["run", str(d), "--out", str(tmp_path / "o"), "--model", str(e2v_dir),
                                  "--num-workers", "0", "-q"])
    assert r.exit_code == 0
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "o"), "--no-plot"])
    assert r.exit_code == 0 and "random-weight TEST model" in r.output
    m = evaluate(str(tmp_path / "o"), plot=False)
    assert m["model"]["test_model"] is True


def test_summary_columns_are_every_class_and_the_plot_stays_readable(tmp_path):
    from PIL import Image

    labels = ["angry", "happy", "neutral", "sad"]
    w = OutputWriter(tmp_path / "o", labels, "m", settings={"labels": labels})
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1200):  # 1,200 recordings, 'sad' never predicted
        p = rng.dirichlet([1, 1, 1, 0.01])
        p[3] = 0.0
        p /= p.sum()
        rows.append({"utt_id": f"u{i}", "rec_id": f"rec{i % 1200:04d}", "spk": None, "start": 0.0, "end": 1.0,
                     "duration": 1.0, "label": labels[int(p.argmax())], "score": float(p.max()),
                     **{f"score_{l}": float(v) for l, v in zip(labels, p)}})
    w.add(rows, np.zeros((1200, 2), np.float32))
    w.flush()
    w.write_manifest({"model": {"labels": labels}})
    path, df = summarize(str(tmp_path / "o"), by="rec", png=True)
    assert {"n_sad", "frac_sad", "mean_score_sad"} <= set(df.columns) and (df.n_sad == 0).all()
    im = Image.open(tmp_path / "o" / "summary_by_rec.png")
    assert im.size[0] <= 1200 and im.size[1] <= 1600  # not 72,240 pixels wide
