"""Long recordings: speech segments from silero-vad (batchser segment, run --vad)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (speech for the VAD)")

SR = 16000
ID_RE = re.compile(r"^(?P<rec>.+)-(?P<s>\d{7})-(?P<e>\d{7})$")


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def _speech(tmp, text: str, name: str) -> np.ndarray:
    p = tmp / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(p), text], check=True)
    x, sr = sf.read(p, dtype="float32")
    import soxr

    x = soxr.resample(x, sr, SR).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0]:loud[-1] + 1]  # espeak's own leading and trailing silence off: the spans are exact


@pytest.fixture(scope="module")
def call(tmp_path_factory):
    """A 'call': three sentences of synthetic speech between 2-s silences (where each sentence
    lies is known), at 16 kHz."""
    tmp = tmp_path_factory.mktemp("call")
    parts, spans, t = [], [], 0.0
    rng = np.random.default_rng(0)
    for i, text in enumerate(["Good morning, thank you for calling.", "I am really upset about my last bill!",
                              "Well, that is wonderful news, thank you so much."]):
        sil = (0.001 * rng.standard_normal(2 * SR)).astype(np.float32)
        x = _speech(tmp, text, f"s{i}")
        parts += [sil, x]
        spans.append((t + 2.0, t + 2.0 + len(x) / SR))
        t += 2.0 + len(x) / SR
    parts.append((0.001 * rng.standard_normal(2 * SR)).astype(np.float32))
    wave = np.concatenate(parts)
    path = tmp / "call.wav"
    sf.write(path, wave, SR, subtype="PCM_16")
    return path, wave, spans


def test_segments_equal_silero_get_speech_timestamps(call):
    """Our probabilities + silero's post-processing = silero's own function, also when long speech
    must be split (max segment 1.5 s)."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from batchser.vad import SileroVad, VadOptions, to_centiseconds

    _, wave, _ = call
    vad = SileroVad()
    ref_model = load_silero_vad()
    for opts in (VadOptions(), VadOptions(max_segment=1.5, min_segment=0.0, pad=0.05, min_silence=0.2)):
        ours, dropped = vad.segments(wave, opts)
        ref = get_speech_timestamps(torch.from_numpy(wave), ref_model, threshold=opts.threshold,
                                    min_speech_duration_ms=int(opts.min_speech * 1000),
                                    max_speech_duration_s=opts.max_segment,
                                    min_silence_duration_ms=int(opts.min_silence * 1000),
                                    speech_pad_ms=int(opts.pad * 1000))
        assert ours == to_centiseconds(ref, len(wave), opts.min_segment)[0] and ours
        assert all(b - a <= opts.max_segment * 100 + 2 * opts.pad * 100 + 1 for a, b in ours)


def test_segment_writes_a_kaldi_data_dir_covering_every_recording(call, tmp_path):
    path, wave, spans = call
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(3 * SR, np.float32), SR)
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text(f"callA {path}\ncallB sox {path} -t wav - |\nsilent {silent}\ngone /no/such.wav\n")
    (d / "utt2spk").write_text("callA agent7\ncallB agent9\n")
    out = tmp_path / "seg"
    code, msg = run_cli("segment", d, "--out", out, "--num-workers", "1")
    assert code == 1, msg  # two recordings without segments
    errs = dict(l.split(" ", 1) for l in (out / "segment_errors").read_text().splitlines())
    assert set(errs) == {"silent", "gone"} and "no speech" in errs["silent"] and "not found" in errs["gone"]
    segs = [l.split() for l in (out / "segments").read_text().splitlines()]
    recs = {s[1] for s in segs}
    assert recs == {"callA", "callB"}  # every input recording in exactly one of the two tables
    a = [s for s in segs if s[1] == "callA"]
    b = [s for s in segs if s[1] == "callB"]
    assert [s[2:] for s in a] == [s[2:] for s in b]  # a pipe is decoded as the file is
    for uid, rec, st, en in segs:
        m = ID_RE.match(uid)
        assert m and m["rec"] == rec and int(m["s"]) == round(float(st) * 100) and int(m["e"]) == round(float(en) * 100)
        st, en = float(st), float(en)
        assert any(s0 - 0.15 <= st < en <= s1 + 0.15 for s0, s1 in spans), (st, en)  # inside a sentence
    for s0, s1 in spans:  # each sentence is found, and mostly covered
        cov = sum(max(0.0, min(float(e), s1) - max(float(s), s0)) for _, r, s, e in a)
        assert cov >= 0.6 * (s1 - s0)
    for name in ("segments", "utt2spk", "utt2dur", "wav.scp", "spk2utt", "reco2dur"):
        keys = [l.split()[0].encode() for l in (out / name).read_text().splitlines()]
        assert keys == sorted(keys), name  # Kaldi's sort order
    spk = dict(l.split() for l in (out / "utt2spk").read_text().splitlines())
    assert {spk[s[0]] for s in a} == {"agent7"} and {spk[s[0]] for s in b} == {"agent9"}
    dur = dict(l.split() for l in (out / "utt2dur").read_text().splitlines())
    assert all(abs(float(dur[u]) - (float(e) - float(s))) < 1e-6 for u, _, s, e in segs)
    assert float(dict(l.split() for l in (out / "reco2dur").read_text().splitlines())["callA"]) == pytest.approx(
        len(wave) / SR, abs=1e-3)
    first = {n: (out / n).read_text() for n in ("segments", "utt2spk", "segment_errors")}
    assert run_cli("segment", d, "--out", out, "--num-workers", "0")[0] == 1  # again, in-process: the same
    assert {n: (out / n).read_text() for n in first} == first
    lhotse = pytest.importorskip("lhotse")
    recs_, sups, _ = lhotse.kaldi.load_kaldi_data_dir(out, sampling_rate=SR)
    assert len(sups) == len(segs)


def test_segment_refuses_a_data_dir_with_segments_and_a_foreign_out(call, tmp_path):
    path, _, _ = call
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"c {path}\n")
    (d / "segments").write_text("c-1 c 0 1\n")
    code, msg = run_cli("segment", d, "--out", tmp_path / "s")
    assert code == 2 and "already has a segments file" in msg
    code, msg = run_cli("run", d, "--out", tmp_path / "o", "--vad", "--model", "nonexistent-model-dir")
    assert code == 2 and "already has a segments file" in msg
    (d / "segments").unlink()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    code, msg = run_cli("segment", d, "--out", mine)
    assert code == 2 and "notes.txt" in msg and (mine / "notes.txt").exists()


def test_run_vad_labels_segments_lists_silent_recordings_and_resumes(call, e2v_dir, tmp_path):
    path, _, _ = call
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * SR, np.float32), SR)
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"c1 {path}\nc2 {path}\nc3 {path}\nquiet {silent}\n")
    out = tmp_path / "o"
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--vad", "--num-workers", "0")
    assert code == 1, msg
    r = open_results(out)
    assert set(r.errors.utt_id) == {"quiet"} and set(r.errors.stage) == {"vad"}
    segs = (out / "vad" / "segments").read_text().split("\n")
    assert sorted(r.labels.utt_id) == sorted(l.split()[0] for l in segs if l)
    assert set(r.labels.rec_id) == {"c1", "c2", "c3"} and (r.labels.end > r.labels.start).all()
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--vad", "--num-workers", "0")
    assert code == 1 and "reusing the segments" in msg and "0 ok" in msg  # a resume: nothing again
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--vad", "--vad-threshold", "0.7")
    assert code == 2 and "other VAD options" in msg
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--vad", "--vad-threshold", "0.7", "--overwrite",
                        "--num-workers", "0")
    assert code in (0, 1), msg  # --overwrite starts again with the new options
    assert json.loads((out / "vad" / "segment.json").read_text())["options"]["threshold"] == 0.7
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--vad", "--overwrite", "--num-workers", "0")[0] == 1
    # two shards: each segments its own recordings; merged = the single run
    sh = tmp_path / "sh"
    for i in range(2):
        assert run_cli("run", d, "--out", sh, "--model", e2v_dir, "--vad", "--shard", f"{i}/2",
                       "--num-workers", "0")[0] in (0, 1)
    assert run_cli("merge", sh)[0] == 1  # "quiet" is in errors/
    m = open_results(sh)
    assert sorted(m.labels.utt_id) == sorted(r.labels.utt_id) and sorted(m.errors.utt_id) == ["quiet"]
    np.testing.assert_allclose(m.embeddings(sorted(r.labels.utt_id)), r.embeddings(sorted(r.labels.utt_id)),
                               atol=1e-5)


def test_run_vad_killed_then_run_again_loses_and_duplicates_nothing(call, e2v_dir, tmp_path):
    import os
    import signal
    import sys
    import time

    from conftest import REPO

    path, _, _ = call
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"c{i} {path}\n" for i in range(6)))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "batchser", "run", str(d), "--out", str(out), "--model", str(e2v_dir), "--vad",
           "--num-workers", "0", "--part-size", "2", "--max-batch-size", "2", "-q"]
    p = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    t = time.time()
    while time.time() - t < 120 and not list((out / "labels").glob("part-*.parquet")):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert subprocess.run(cmd, cwd=REPO, stderr=subprocess.DEVNULL).returncode == 0
    ids = list(open_results(out).labels.utt_id)
    segs = [l.split()[0] for l in (out / "vad" / "segments").read_text().splitlines()]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(segs) and len(segs) >= 6 * 3


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")
def test_48k_stereo_behind_a_pipe_finds_the_same_sentences(call, tmp_path):
    path, _, spans = call
    st = tmp_path / "call48.wav"
    subprocess.run(["sox", str(path), "-r", "48000", "-c", "2", str(st)], check=True)
    (tmp_path / "wav.scp").write_text(f"a {path}\nb sox {st} -t wav - |\n")
    out = tmp_path / "seg"
    code, msg = run_cli("segment", tmp_path / "wav.scp", "--out", out, "--num-workers", "0")
    assert code == 0, msg
    segs = [l.split() for l in (out / "segments").read_text().splitlines()]
    a = [(float(s), float(e)) for _, r, s, e in segs if r == "a"]
    b = [(float(s), float(e)) for _, r, s, e in segs if r == "b"]
    def regions(segs, gap=0.5):  # a pause at the edge of --vad-min-silence may split one and not the other
        out = []
        for s_, e_ in sorted(segs):
            if out and s_ - out[-1][1] < gap:
                out[-1][1] = e_
            else:
                out.append([s_, e_])
        return out

    ra, rb = regions(a), regions(b)
    assert len(ra) == len(rb) == len(spans) and all(abs(x - y) <= 0.1 for p, q in zip(ra, rb) for x, y in zip(p, q))
    for s0, s1 in spans:  # every sentence starts and ends within 0.15 s of a segment boundary
        assert min(abs(s - s0) for s, _ in b) <= 0.15 and min(abs(e - s1) for _, e in b) <= 0.15


def test_streamed_decoding_and_vad_equal_the_whole_recording(call, tmp_path):
    """A recording streamed in blocks (a minute by default; odd sizes here) decodes to exactly the
    waveform `run` decodes, and the VAD gives exactly the same probabilities."""
    from batchser.audio import decode_utterance, stream_recording
    from batchser.corpus import AudioSource, Utterance
    from batchser.vad import SileroVad

    path, wave, _ = call
    st = tmp_path / "c48.wav"
    subprocess.run(["sox", str(path), "-r", "48000", "-c", "2", "-b", "24", str(st)], check=True)
    u = Utterance(utt_id="c", rec_id="c", source=AudioSource("file", str(st)))
    whole = decode_utterance(u, min_samples=1).wave
    blocks = list(stream_recording(u, block_seconds=1.37))
    assert len(blocks) > 10 and np.array_equal(np.concatenate(blocks), whole)
    vad = SileroVad()
    probs, n = vad.probabilities_of_blocks(blocks)
    assert n == len(whole) and probs == vad.probabilities(whole)


def test_python_api_takes_vad_options(call, e2v_dir, tmp_path):
    import batchser

    path, _, _ = call
    (tmp_path / "wav.scp").write_text(f"c {path}\n")
    s = batchser.run(tmp_path / "wav.scp", out=tmp_path / "o", model=str(e2v_dir), vad={"max_segment": 1.5,
                                                                                         "min_segment": 0.2},
                     num_workers=0)
    lab = batchser.open_results(tmp_path / "o").labels
    assert s.n_ok == len(lab) > 3 and lab.duration.max() <= 1.5 + 0.07
    assert batchser.open_results(tmp_path / "o").manifest["config"]["vad"]["max_segment"] == 1.5


def test_vad_edge_cases_empty_shares_retry_errors_and_refusals(call, e2v_dir, tmp_path):
    """Found by a user trial: a share without speech is no error; --retry-errors segments failed
    recordings again; --vad-* without --vad and segment into its own input are refused."""
    path, _, _ = call
    d = tmp_path / "d"
    d.mkdir()
    later = tmp_path / "later.wav"
    (d / "wav.scp").write_text(f"c1 {path}\nlate {later}\n")
    out = tmp_path / "o"
    for i in range(4):  # 2 recordings, 4 shards: two shares are empty
        code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--vad", "--shard", f"{i}/4", "--num-workers", "0")
        assert code in (0, 1), msg
    assert run_cli("merge", out)[0] == 1
    m = open_results(out)
    assert set(m.errors.utt_id) == {"late"} and set(m.labels.rec_id) == {"c1"}
    one = tmp_path / "one"
    assert run_cli("run", d, "--out", one, "--model", e2v_dir, "--vad", "--num-workers", "0")[0] == 1
    shutil.copy(path, later)  # the missing file arrives: --retry-errors segments it
    code, msg = run_cli("run", d, "--out", one, "--model", e2v_dir, "--vad", "--retry-errors", "--num-workers", "0")
    assert code == 0, msg
    r = open_results(one)
    assert set(r.labels.rec_id) == {"c1", "late"} and len(r.errors) == 0
    code, msg = run_cli("run", d, "--out", tmp_path / "x", "--model", e2v_dir, "--vad-max-segment", "3")
    assert code == 2 and "need --vad" in msg
    code, msg = run_cli("segment", d, "--out", d)
    assert code == 2 and "own data dir" in msg and (d / "wav.scp").read_text().startswith("c1 ")
    other = tmp_path / "user"
    other.mkdir()
    (other / "wav.scp").write_text("mine /x.wav\n")  # a file name segment writes, but not its directory
    code, msg = run_cli("segment", d, "--out", other)
    assert code == 2 and (other / "wav.scp").read_text() == "mine /x.wav\n"
