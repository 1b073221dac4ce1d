"""Trained heads on batchser's embeddings: EmoBox folds, metrics, run --head, apply-head."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from batchser.heads import cross_validate, fold_assignment, load_head
from conftest import RAVDESS, speechlike, write_wav


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def _speakers(n_spk: int, per: int):
    spk = [f"s{i:02d}" for i in range(n_spk) for _ in range(per)]
    y = np.array([j % 3 for i in range(n_spk) for j in range(per)])
    return spk, y


def _independent(fold, spk):
    for f in set(fold.tolist()) - {-1}:
        test = {s for s, k in zip(spk, fold) if k == f}
        train = {s for s, k in zip(spk, fold) if k != f}
        assert not test & train, f"fold {f}: speakers {test & train} on both sides"


def test_folds_follow_the_emobox_rule_and_are_speaker_independent():
    spk, y = _speakers(3, 40)  # < 4 speakers: one stratified 25% test split
    fold, rule = fold_assignment(spk, y, "auto", seed=0)
    assert set(fold.tolist()) == {-1, 0} and "25%" in rule
    for c in range(3):
        assert (fold[y == c] == 0).sum() == 10  # 25% of each class's 40
    for n in (4, 5, 6):  # 4-6 speakers: leave one speaker out
        spk, y = _speakers(n, 12)
        fold, rule = fold_assignment(spk, y, "auto", seed=0)
        assert len(set(fold.tolist())) == n and "leave one speaker out" in rule
        assert all(len({s for s, k in zip(spk, fold) if k == f}) == 1 for f in range(n))
        _independent(fold, spk)
    for n, k in ((7, 2), (12, 3), (30, 8)):  # more: folds of about 4 speakers
        spk, y = _speakers(n, 6)
        fold, rule = fold_assignment(spk, y, "auto", seed=1)
        assert len(set(fold.tolist())) == k
        sizes = [len({s for s, f in zip(spk, fold) if f == g}) for g in range(k)]
        assert max(sizes) - min(sizes) <= 1 and abs(np.mean(sizes) - n / k) < 1e-9
        _independent(fold, spk)
    spk, y = _speakers(9, 6)
    fold, _ = fold_assignment(spk, y, "3", seed=0)
    assert len(set(fold.tolist())) == 3
    _independent(fold, spk)
    fold, _ = fold_assignment(spk, y, "speaker", seed=0)
    assert len(set(fold.tolist())) == 9
    assert np.array_equal(fold_assignment(spk, y, "auto", seed=5)[0], fold_assignment(spk, y, "auto", seed=5)[0])
    for bad in ("1", "x"):
        with pytest.raises(ValueError):
            fold_assignment(spk, y, bad)


def _clusters(n_spk=8, per=30, dim=16, sep=4.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, (4, dim))
    spk, lab, x = [], [], []
    for s in range(n_spk):
        shift = rng.normal(0, 0.3, dim)  # a speaker effect
        for j in range(per):
            c = j % 4
            spk.append(f"spk{s}")
            lab.append(["angry", "happy", "neutral", "sad"][c])
            x.append(centres[c] + shift + rng.normal(0, 1.0, dim))
    return np.array(x, dtype=np.float32), lab, spk


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_separable_data_is_learnt_shuffled_labels_are_not_and_metrics_equal_sklearn(kind):
    skm = pytest.importorskip("sklearn.metrics")
    x, lab, spk = _clusters()
    r = cross_validate(x, lab, spk, kind=kind, folds="auto", seed=0)
    assert r.summary["UA"]["mean"] > 0.95 and len(r.folds) == 2  # 8 speakers: 2 folds of 4
    # every fold's figures are scikit-learn's on the same predictions (out-of-fold order: fold by fold)
    y = np.array([r.labels.index(l) for l in lab])
    fold, _ = fold_assignment(spk, y, "auto", 0)
    k = 0
    for f in r.folds:
        n = f["n_test"]
        t, p = r.oof_true[k:k + n], r.oof_pred[k:k + n]
        assert set(t) == {lab[i] for i in np.flatnonzero(fold == f["fold"])}
        assert f["WA"] == pytest.approx(skm.accuracy_score(t, p))
        assert f["UA"] == pytest.approx(skm.balanced_accuracy_score(t, p))
        assert f["macro_f1"] == pytest.approx(skm.f1_score(t, p, average="macro", labels=sorted(set(t))))
        assert f["micro_f1"] == pytest.approx(skm.f1_score(t, p, average="micro"))
        k += n
    assert r.summary["WA"]["mean"] == pytest.approx(np.mean([f["WA"] for f in r.folds]))
    assert r.summary["UA"]["std"] == pytest.approx(np.std([f["UA"] for f in r.folds]))
    shuffled = list(np.random.default_rng(1).permutation(lab))
    r0 = cross_validate(x, shuffled, spk, kind=kind, folds="auto", seed=0)
    assert r0.summary["UA"]["mean"] < 0.25 + 0.15  # chance is 0.25


@pytest.fixture
def labelled(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    emos = ["angry", "happy", "sad", "neutral"]
    utts = {}
    for s in range(4):
        for j in range(6):
            u = f"s{s}_u{j}"
            utts[u] = (f"s{s}", emos[j % 4], write_wav(tmp_path / "wav" / f"{u}.wav",
                                                      speechlike(8000 + 1500 * j + 700 * s, seed=100 + 10 * s + j)))
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, (_, _, p) in utts.items()))
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, (s, _, _) in utts.items()))
    (d / "utt2emo").write_text("".join(f"{u} {e}\n" for u, (_, e, _) in utts.items()))
    return d


def test_train_save_run_head_and_apply_head_agree(labelled, e2v_dir, e2v_nohead_dir, tmp_path):
    out = tmp_path / "o"
    assert run_cli("run", labelled, "--out", out, "--model", e2v_dir, "--num-workers", 0, "-q")[0] == 0
    code, text = run_cli("train-head", out, "--name", "mine", "--head", "mlp")
    assert code == 0, text
    assert "leave one speaker out" in text and "+-std" in text and "TEST model" in text
    hd = out / "heads" / "mine"
    meta = json.loads((hd / "head.json").read_text())
    assert meta["embedding"]["model_sha256"] == open_results(out).manifest["model"]["weights_sha256"]
    assert meta["embedding"]["dim"] == open_results(out).embeddings().shape[1]
    assert meta["labels"] == ["angry", "happy", "neutral", "sad"] and len(meta["cv"]["per_fold"]) == 4
    assert (hd / "head.safetensors").exists() and (hd / "confusion.png").exists()
    # the training code's own predictions on OUT's embeddings
    head = load_head(hd)
    res = open_results(out)
    own = dict(zip(res.labels.utt_id, head.predict(res.embeddings())))
    # apply-head: a table beside labels/, idempotent
    code, text = run_cli("apply-head", out, "--head", hd)
    assert code == 0, text
    applied = res.head_predictions("mine").set_index("utt_id")
    code, text = run_cli("apply-head", out, "--head", hd)
    assert code == 0 and "0 new parts" in text
    # run --head on new data (here: the same files into a new OUT)
    out2 = tmp_path / "o2"
    code, text = run_cli("run", labelled, "--out", out2, "--model", e2v_dir, "--head", hd, "--num-workers", 0, "-q")
    assert code == 0, text
    ran = open_results(out2).labels.set_index("utt_id")
    cols = [f"head_mine_score_{l}" for l in meta["labels"]]
    for u, p in own.items():
        np.testing.assert_allclose(applied.loc[u, cols].to_numpy(dtype=np.float64), p, atol=1e-6)
        np.testing.assert_allclose(ran.loc[u, cols].to_numpy(dtype=np.float64), p, atol=1e-5)
        assert ran.loc[u, "head_mine_label"] == applied.loc[u, "head_mine_label"] == meta["labels"][int(np.argmax(p))]
    assert ran.label.notna().all()  # the model's own prediction stays beside the head's
    # a head trained on another model's embeddings is refused, in run and in apply-head
    code, text = run_cli("run", labelled, "--out", tmp_path / "o3", "--model", e2v_nohead_dir, "--head", hd)
    assert code == 2 and "trained on embeddings of" in text
    out4 = tmp_path / "o4"
    assert run_cli("run", labelled, "--out", out4, "--model", e2v_nohead_dir, "--num-workers", 0, "-q")[0] == 0
    code, text = run_cli("apply-head", out4, "--head", hd)
    assert code == 2 and "trained on embeddings of" in text
    code, text = run_cli("run", labelled, "--out", tmp_path / "o5", "--model", e2v_dir, "--head", tmp_path)
    assert code == 2 and "not a head directory" in text
    # --overwrite of the run keeps its trained heads
    assert run_cli("run", labelled, "--out", out, "--model", e2v_dir, "--num-workers", 0, "--overwrite", "-q")[0] == 0
    assert (hd / "head.json").exists() and not (out / "head_predictions").exists()


@pytest.mark.skipif(not (RAVDESS / "wav.scp").exists(), reason="needs ../shared/corpora/ravdess")
def test_ravdess_through_a_test_model_plumbing(e2v_dir, tmp_path):
    out = tmp_path / "o"
    code, text = run_cli("run", RAVDESS, "--out", out, "--model", e2v_dir, "--audio-root", RAVDESS, "-q")
    assert code == 0, text
    code, text = run_cli("train-head", out, "--label-map", "ravdess-drop-calm", "--no-plot")
    assert code == 0, text
    meta = json.loads((out / "heads" / "linear" / "head.json").read_text())
    assert "calm" not in meta["labels"] and "25%" in meta["folds"]  # 2 actors: EmoBox's < 4 rule
    refs = [l.split()[1] for l in (RAVDESS / "utt2emo").read_text().splitlines() if l.strip()]
    assert meta["settings"]["n_train"] == sum(r != "calm" for r in refs)  # every file but the calm ones
