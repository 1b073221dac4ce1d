"""Kaldi reader: every wav.scp form, side tables, and errors that name file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from batchser.corpus import CorpusError, read_corpus, safe_filename
from conftest import speechlike, write_wav


@pytest.fixture
def audio(tmp_path):
    return write_wav(tmp_path / "a.wav", speechlike(16000, 0))


def scp(tmp_path: Path, text: str, name="wav.scp") -> Path:
    d = tmp_path / "d"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text, encoding="utf-8", newline="")
    return d


def test_plain_paths_pipes_and_ark(tmp_path, audio):
    import kaldiio
    import numpy as np

    ark = tmp_path / "x.ark"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_path / 'x.scp'}", write_function="soundfile") as w:
        w("k", (16000, (np.zeros(800) + 0.1).astype(np.float32)))
    ark_line = (tmp_path / "x.scp").read_text().split(None, 1)[1].strip()
    d = scp(tmp_path, f"r1 {audio}\nr2 cat {audio} |\nr3 {ark_line}\n")
    c = read_corpus(d)
    kinds = {u.utt_id: u.source.kind for u in c.utterances}
    assert kinds == {"r1": "file", "r2": "pipe", "r3": "ark"}
    assert c.errors == []


def test_relative_path_resolves_against_cwd_or_audio_root(tmp_path, audio, monkeypatch):
    d = scp(tmp_path, "r1 a.wav\n")
    monkeypatch.chdir(tmp_path)
    assert read_corpus(d).utterances[0].source.value == str(tmp_path / "a.wav")
    monkeypatch.chdir(d)
    c = read_corpus(d)
    assert c.utterances == [] and "not found" in c.errors[0].message
    assert read_corpus(d, audio_root=str(tmp_path)).utterances[0].utt_id == "r1"


def test_relative_path_next_to_scp_suggests_audio_root(tmp_path, monkeypatch):
    d = scp(tmp_path, "r1 w/a.wav\n")
    write_wav(d / "w" / "a.wav", speechlike(1600, 0))
    monkeypatch.chdir(tmp_path)
    c = read_corpus(d / "wav.scp")
    msg = c.errors[0].message
    assert f"{d / 'wav.scp'}:1" in msg and "--audio-root" in msg and str(d) in msg


def test_bad_lines_name_file_and_line(tmp_path, audio):
    d = scp(tmp_path, f"r1 {audio}\r\n\r\nlonely\nr1 {audio}\nr2 /no/such.wav\nr3 some words here\n")
    c = read_corpus(d)
    assert [u.utt_id for u in c.utterances] == ["r1"]  # CRLF accepted, empty line skipped
    errs = {e.utt_id: e.message for e in c.errors}
    assert set(errs) == {"lonely", "r2", "r3"}
    assert f"{d / 'wav.scp'}:3" in errs["lonely"] and "malformed" in errs["lonely"]
    assert "not found" in errs["r2"] and ":5" in errs["r2"]
    assert "spaces" in errs["r3"] and ":6" in errs["r3"]
    # the duplicate r1 line is reported (warning) but r1 is processed once
    assert any("duplicate" in w.message and ":4" in w.message for w in c.warnings)
    assert c.n_input == 4


def test_path_with_spaces_that_exists_is_a_file(tmp_path):
    p = write_wav(tmp_path / "my file.wav", speechlike(1600, 0))
    c = read_corpus(scp(tmp_path, f"r1 {p}\n"))
    assert c.utterances[0].source.value == str(p)


def test_no_pipes_refuses_commands(tmp_path, audio):
    c = read_corpus(scp(tmp_path, f"r1 cat {audio} |\n"), allow_pipes=False)
    assert c.utterances == [] and "--no-pipes" in c.errors[0].message


def test_segments_spk_dur_and_labels(tmp_path, audio):
    d = scp(tmp_path, f"rec1 {audio}\nrec2 /missing.wav\n")
    (d / "segments").write_text(
        "u1 rec1 0.0 0.5\nu2 rec1 0.5 -1\nu3 rec9 0 1\nu4 rec1 0.7 0.2\nu5 rec1 x 1\nu6 rec2 0 1\nu7 rec1 0\n")
    (d / "utt2spk").write_text("u1 s1\nu2 s2\n")
    (d / "utt2emo").write_text("u1 happy\nu2 sad\n")
    (d / "reco2dur").write_text("rec1 1.0\n")
    c = read_corpus(d)
    u = {x.utt_id: x for x in c.utterances}
    assert set(u) == {"u1", "u2"}
    assert (u["u1"].start, u["u1"].end, u["u1"].duration, u["u1"].spk, u["u1"].ref_label) == (0.0, 0.5, 0.5, "s1", "happy")
    assert u["u2"].end is None and u["u2"].duration == pytest.approx(0.5)  # from reco2dur
    e = {x.utt_id: x.message for x in c.errors}
    assert "rec9" in e["u3"] and "not in wav.scp" in e["u3"]
    assert "start 0.7 >= end 0.2" in e["u4"] and "segments:4" in e["u4"]
    assert "bad start/end" in e["u5"]
    assert "unusable" in e["u6"] and "not found" in e["u6"]
    assert "malformed segment" in e["u7"]
    assert c.n_input == 7  # every segment line is work or an error row


def test_utf8_ids_and_safe_filenames(tmp_path, audio):
    c = read_corpus(scp(tmp_path, f"говорящий-1 {audio}\n"))
    assert c.utterances[0].utt_id == "говорящий-1"
    for bad in ["../../etc/passwd", "/abs/x", "..", "a/b"]:
        s = safe_filename(bad)
        assert "/" not in s and not s.startswith(".")


def test_missing_input_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError):
        read_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="without a wav.scp"):
        read_corpus(tmp_path / "empty")


def test_invalid_utf8_names_the_file(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_bytes(b"r1 \xff\xfe.wav\n")
    with pytest.raises(CorpusError, match="UTF-8"):
        read_corpus(d)


def test_utt2dur_gives_durations(tmp_path, audio):
    d = scp(tmp_path, f"r1 {audio}\n")
    (d / "utt2dur").write_text("r1 1.00\n")
    assert read_corpus(d).utterances[0].duration == 1.0


def test_infinite_segment_times_are_bad_lines(tmp_path):
    """An end of 'inf' is rejected like 'nan' (it broke the shard split: found by a user trial)."""
    from batchser.kaldi import KaldiStream
    from batchser.shards import Shard

    wav = tmp_path / "r.wav"
    import numpy as np
    import soundfile as sf

    sf.write(wav, np.zeros(16000, np.float32), 16000)
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"r {wav}\nq {wav}\n")
    (d / "segments").write_text("a r 0 0.5\nbad r 1.0 inf\nb q 0 0.5\nworse q -inf 0.4\n")
    c = read_corpus(d)
    assert sorted(u.utt_id for u in c.utterances) == ["a", "b"]
    assert sorted(e.utt_id for e in c.errors) == ["bad", "worse"]
    shares = [{u.utt_id for ch in KaldiStream(d, shard=Shard(k, 2)).chunks() for u in ch.utterances} for k in range(2)]
    assert sorted(map(len, shares)) == [1, 1]  # the split is not thrown off
