"""End to end through the command line, as a user runs it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from conftest import REPO, speechlike, write_wav


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def test_help_teaches():
    code, out = run_cli("--help")
    assert code == 0 and "run" in out and "make-test-model" in out
    code, out = run_cli("run", "--help")
    for opt in ("--batch-seconds", "--num-workers", "--model", "--granularity", "--no-pipes", "--audio-root",
                "--emb-dtype", "--retry-errors"):
        assert opt in out


def test_offline_default_model_fails_fast_with_help(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSER_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    t = time.time()
    code, out = run_cli("run", REPO / "sample_scp" / "wav.scp", "--out", tmp_path / "o")
    assert code == 3 and time.time() - t < 30
    assert "--model" in out and "make-test-model" in out


def test_sample_scp_end_to_end(e2v_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # wav.scp paths are relative to the repo root
    code, out = run_cli("run", "sample_scp/wav.scp", "--out", tmp_path / "o", "--model", e2v_dir,
                        "--num-workers", "0", "-q")
    assert code == 0, out
    r = open_results(tmp_path / "o")
    ids = [l.split()[0] for l in (REPO / "sample_scp" / "wav.scp").read_text().splitlines()]
    assert sorted(r.labels.utt_id) == sorted(ids)
    assert set(r.labels.ref_label) == {"neutral", "happy", "sad", "angry"}
    assert r.labels.spk.notna().all()
    scores = r.labels[[c for c in r.labels.columns if c.startswith("score_")]].to_numpy()
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)
    assert r.embeddings().shape == (len(ids), 64)
    m = r.manifest
    assert m["model"]["test_model"] is True and m["counts"]["ok_this_run"] == len(ids)
    assert 0 < m["padding_efficiency"] <= 1 and m["model"]["weights_sha256"]


def test_bad_utterances_go_to_errors_and_exit_1(e2v_dir, tmp_path, make_corpus):
    nan = speechlike(16000, 9)
    nan[5] = np.nan
    d = make_corpus({"good1": 1.0, "good2": 2.5, "nan": nan, "short": speechlike(100, 1)})
    with open(d / "wav.scp", "a") as f:
        f.write("missing /no/such/file.wav\nbroken false |\nmalformed\n")
    code, out = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "2", "-q")
    assert code == 1
    r = open_results(tmp_path / "o")
    assert sorted(r.labels.utt_id) == ["good1", "good2"]
    e = r.errors.set_index("utt_id")
    assert sorted(e.index) == ["broken", "malformed", "missing", "nan", "short"]
    assert e.loc["nan", "stage"] == "decode" and "NaN" in e.loc["nan", "message"]
    assert e.loc["missing", "stage"] == "read" and "wav.scp:5" in e.loc["missing", "message"]
    assert "exit code" in e.loc["broken", "message"]


def test_model_failure_isolated_to_one_utterance(e2v_dir, tmp_path, make_corpus, monkeypatch):
    from batchser.models.emotion2vec import Emotion2vecBackend

    d = make_corpus({f"u{i}": 1.0 + 0.1 * i for i in range(6)})
    bad_len = int(1.3 * 16000)
    orig = Emotion2vecBackend.forward

    def flaky(self, wavs, frames=False):
        if any(len(w) == bad_len for w in wavs):
            raise RuntimeError("CUDA out of memory (simulated)")
        return orig(self, wavs, frames)

    monkeypatch.setattr(Emotion2vecBackend, "forward", flaky)
    code, _ = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0", "-q")
    r = open_results(tmp_path / "o")
    assert code == 1 and sorted(r.labels.utt_id) == ["u0", "u1", "u2", "u4", "u5"]
    assert list(r.errors.utt_id) == ["u3"] and r.errors.stage[0] == "model"


def test_time_split_shows_a_slow_loader(e2v_dir, tmp_path, make_corpus, monkeypatch):
    """The manifest and summary say where the loop's time went; a slow decoder shows as waiting."""
    import batchser.loader as runner

    d = make_corpus({f"u{i}": 0.5 for i in range(4)})
    orig = runner.decode_utterance

    def slow(u, *a, **k):
        time.sleep(0.4)
        return orig(u, *a, **k)

    monkeypatch.setattr(runner, "decode_utterance", slow)
    code, out = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0",
                        "--max-batch-size", "2", "-q")
    assert code == 0
    m = open_results(tmp_path / "o").manifest
    t = m["time_split_seconds"]
    assert t["waiting_for_audio"] >= 4 * 0.4 > t["model"] > 0 and t["writing"] > 0
    assert sum(t.values()) <= m["wall_seconds"]
    assert "time in model" in out and "waiting for audio" in out


def test_run_results_equal_direct_backend(e2v_dir, e2v_backend, tmp_path, make_corpus):
    """The pipeline (decode, bucketing, writer) must not change what the model says."""
    d = make_corpus({"a": 0.7, "b": 3.1, "c": 1.9}, sr=22050)
    code, _ = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0",
                      "--batch-seconds", "5", "--granularity", "frame", "-q")
    assert code == 0
    from batchser.audio import load_utterance
    from batchser.corpus import read_corpus

    r = open_results(tmp_path / "o")
    for u in read_corpus(d).utterances:
        ref = e2v_backend.forward([load_utterance(u)], frames=True)
        np.testing.assert_allclose(r.embeddings([u.utt_id])[0], ref.embeddings[0], atol=2e-5)
        np.testing.assert_allclose(r.frames(u.utt_id), ref.frames[0], atol=5e-5)


def test_resume_after_kill_loses_and_duplicates_nothing(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i:03d}": 0.5 + (i % 7) * 0.3 for i in range(60)})
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "batchser.cli", "run", str(d), "--out", str(out), "--model", str(e2v_dir),
           "--num-workers", "0", "--part-size", "5", "--max-batch-size", "4", "-q"]
    p = subprocess.Popen(cmd, cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "labels").glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    first = sorted(u for f in (out / "labels").glob("part-*.parquet")
                   for u in pq.read_table(f, columns=["utt_id"]).column("utt_id").to_pylist())
    assert 0 < len(first) < 60, "kill came too late to test resume"
    code = subprocess.run(cmd, cwd=REPO).returncode
    assert code == 0
    r = open_results(out)
    ids = list(r.labels.utt_id)
    assert sorted(ids) == [f"u{i:03d}" for i in range(60)] and len(ids) == len(set(ids))
    assert set(first) <= set(ids)
    assert r.embeddings().shape[0] == 60
    assert r.manifest["counts"]["skipped_already_done"] == len(first)
    # equal to an uninterrupted run, value for value
    ref_out = tmp_path / "ref"
    assert subprocess.run(cmd[:cmd.index("--out") + 1] + [str(ref_out)] + cmd[cmd.index("--out") + 2:],
                          cwd=REPO).returncode == 0
    ref = open_results(ref_out)
    a = r.labels.set_index("utt_id").sort_index()
    b = ref.labels.set_index("utt_id").sort_index()
    score_cols = [c for c in a.columns if c.startswith("score")]
    np.testing.assert_allclose(a[score_cols].to_numpy(), b[score_cols].to_numpy(), atol=1e-6)
    assert list(a.label) == list(b.label)
    order = list(a.index)
    np.testing.assert_allclose(r.embeddings(order), ref.embeddings(order), atol=1e-5)


def test_resume_refuses_other_model_or_settings(e2v_dir, e2v_nohead_dir, tmp_path, make_corpus):
    from batchser.testmodels import make_emotion2vec_dir

    d = make_corpus({"a": 1.0, "b": 1.5})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    other = make_emotion2vec_dir(tmp_path / "other", size="tiny", seed=99)  # same labels, other weights
    code, msg = run_cli("run", d, "--out", out, "--model", other, "--num-workers", "0", "-q")
    assert code == 2 and "cannot resume" in msg and "model" in msg
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--emb-dtype", "float16", "-q")
    assert code == 2 and "emb_dtype" in msg
    # the same settings resume fine (nothing left to do), --overwrite starts again
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--resume", "-q")[0] == 0
    assert run_cli("run", d, "--out", out, "--model", other, "--num-workers", "0", "--overwrite", "-q")[0] == 0


def test_make_test_model_whisper(tmp_path):
    code, out = run_cli("make-test-model", tmp_path / "w", "--kind", "whisper")
    assert code == 0 and (tmp_path / "w" / "config.json").exists()
    code, out = run_cli("make-test-model", tmp_path / "x", "--size", "huge")
    assert code == 2 and "huge" in out


def test_info_summarises_without_a_model(tmp_path, make_corpus):
    d = make_corpus({"a": 0.5, "b": 3.0, "c": 12.0}, extra={"utt2spk": "a s1\nb s1\nc s2\n",
                                                           "utt2emo": "a happy\nb sad\nc happy\n"})
    with open(d / "wav.scp", "a") as f:
        f.write("d /no/such.wav\n")
    code, out = run_cli("info", d)
    assert code == 1
    assert "3 usable, 1 unusable" in out and "speakers: 2" in out and "happy 2, sad 1" in out
    assert "wav.scp:4" in out and "not found" in out
    assert "10-20" in out and "0-1" in out  # histogram bins that hold the 12 s and 0.5 s clips
    code, out = run_cli("info", d, "--json")
    import json

    s = json.loads(out)
    assert s["utterances"] == 3 and abs(s["hours_known"] * 3600 - 15.5) < 0.01


def test_long_utterances_run_in_windows(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"long": 7.3, "short": 1.0})
    code, _ = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0",
                      "--max-seconds", "3", "-q")
    assert code == 0
    r = open_results(tmp_path / "o")
    assert sorted(r.labels.utt_id) == ["long", "short"]
    assert r.labels.set_index("utt_id").loc["long", "duration"] == pytest.approx(7.3, abs=1e-3)
    assert r.manifest["utterances_in_windows"] == 1
    code, out = run_cli("run", d, "--out", tmp_path / "o2", "--model", e2v_dir, "--max-seconds", "0.01")
    assert code == 2 and "too short" in out


def test_segments_of_a_piped_recording_decode_it_once(e2v_dir, tmp_path):
    """Several segments of one pipe recording: the command runs once, results equal a plain file's."""
    x = speechlike(16000 * 4, 11)
    src = write_wav(tmp_path / "rec.wav", x, 16000)
    count = tmp_path / "count"
    outs = {}
    for kind, entry in (("pipe", f"echo run >> {count}; cat {src} |"), ("file", str(src))):
        d = tmp_path / f"d_{kind}"
        d.mkdir()
        (d / "wav.scp").write_text(f"rec {entry}\nbroken false |\n")
        (d / "segments").write_text("s1 rec 0.0 1.0\ns2 rec 1.0 2.5\ns3 rec 2.5 -1\nb1 broken 0 1\nb2 broken 1 2\n")
        code, _ = run_cli("run", d, "--out", tmp_path / f"o_{kind}", "--model", e2v_dir, "--num-workers", "2", "-q")
        assert code == 1  # the broken recording's two segments are errors
        outs[kind] = open_results(tmp_path / f"o_{kind}")
    assert count.read_text().count("run") == 1
    a = outs["pipe"].labels.set_index("utt_id").sort_index()
    b = outs["file"].labels.set_index("utt_id").sort_index()
    assert list(a.index) == ["s1", "s2", "s3"] and list(a.duration) == pytest.approx(list(b.duration))
    np.testing.assert_allclose(outs["pipe"].embeddings(list(a.index)), outs["file"].embeddings(list(a.index)), atol=1e-6)
    e = outs["pipe"].errors.set_index("utt_id")
    assert sorted(e.index) == ["b1", "b2"] and "exit code 1" in e.loc["b1", "message"]
    assert not (tmp_path / "o_pipe" / ".cache").exists()


def test_several_devices_share_the_work(e2v_dir, tmp_path, make_corpus):
    """--devices cpu,cpu: one process per device, parts in per-device namespaces, same results."""
    d = make_corpus({f"u{i:02d}": 0.6 + 0.25 * i for i in range(12)})
    code, out = run_cli("run", d, "--out", tmp_path / "multi", "--model", e2v_dir, "--devices", "cpu,cpu",
                        "--num-workers", "0", "-q")
    assert code == 0, out
    code, _ = run_cli("run", d, "--out", tmp_path / "single", "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 0
    m, s = open_results(tmp_path / "multi"), open_results(tmp_path / "single")
    names = sorted(p.name for p in (tmp_path / "multi" / "labels").iterdir())
    assert any(n.startswith("part-d0-") for n in names) and any(n.startswith("part-d1-") for n in names)
    ids = sorted(s.labels.utt_id)
    assert sorted(m.labels.utt_id) == ids and len(set(m.labels.utt_id)) == 12
    np.testing.assert_allclose(m.embeddings(ids), s.embeddings(ids), atol=2e-5)
    assert m.manifest["counts"]["ok_this_run"] == 12 and m.manifest["counts"]["results_total"] == 12
    # resuming a finished multi-device run does nothing
    code, _ = run_cli("run", d, "--out", tmp_path / "multi", "--model", e2v_dir, "--devices", "cpu,cpu", "-q")
    assert code == 0 and open_results(tmp_path / "multi").manifest["counts"]["skipped_already_done"] == 12


def test_device_spec_errors(e2v_dir, tmp_path, make_corpus):
    import torch

    d = make_corpus({"a": 1.0})
    if not torch.cuda.is_available():
        code, out = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--devices", "cuda:0,cuda:1")
        assert code == 2 and "CUDA is not available" in out
    code, out = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--dtype", "fp16", "--device", "cpu")
    assert code == 2 and "float16 needs a GPU" in out


def test_killed_device_process_exits_4_and_resume_finishes(e2v_dir, tmp_path, make_corpus):
    """A device process killed (say by the OOM killer): the run ends with exit 4, keeps what was
    committed, and the same command again finishes the rest."""
    # enough work that the kill lands while both device processes still have some
    d = make_corpus({f"u{i:02d}": 0.5 + 0.1 * (i % 7) for i in range(60)})
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "batchser", "run", str(d), "--out", str(out), "--model", str(e2v_dir),
           "--devices", "cpu,cpu", "--num-workers", "0", "--part-size", "2", "--max-batch-size", "2", "-q"]
    p = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    victim = None
    t = time.time()
    while victim is None and time.time() - t < 120:
        q = subprocess.run(["pgrep", "-P", str(p.pid), "-f", "spawn_main"], capture_output=True, text=True)
        kids = q.stdout.split()
        if kids and list((out / "labels").glob("part-d*.parquet")):
            victim = int(kids[-1])
        time.sleep(0.05)
    assert victim is not None, "no device process seen"
    os.kill(victim, signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 4, err
    assert "device process" in err
    assert subprocess.run(cmd, cwd=REPO).returncode == 0
    ids = list(open_results(out).labels.utt_id)
    assert sorted(ids) == [f"u{i:02d}" for i in range(60)] and len(set(ids)) == 60


def test_info_reads_headers_flags_unreadable_files_and_counts_formats(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    a = write_wav(tmp_path / "a.wav", speechlike(16000, 1))
    b = write_wav(tmp_path / "b.wav", speechlike(22050, 2, sr=22050), sr=22050)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(os.urandom(2000))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    (d / "wav.scp").write_text(f"a {a}\nb {b}\nj {junk}\ne {empty}\n")
    code, out = run_cli("info", d)
    assert code == 1 and "2 usable, 2 unusable" in out
    assert "16000 Hz 1" in out and "22050 Hz 1" in out and "1 ch 2" in out and "WAV/FLOAT 2" in out
    assert "wav.scp:3" in out and "junk.wav" in out and "wav.scp:4" in out
    code, out = run_cli("info", d, "--no-probe")  # without headers nothing is known to be wrong
    assert code == 0 and "4 usable" in out
