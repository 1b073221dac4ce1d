"""Scale: durations computed once (batchser prepare), and shard tasks that read only their share."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from conftest import speechlike, write_wav


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def test_prepare_writes_utt2dur_for_files_pipes_and_reports_unreadable(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    a = write_wav(tmp_path / "a.wav", speechlike(16000 * 2, 1))
    b = write_wav(tmp_path / "b.wav", speechlike(22050 * 3, 2, sr=22050), sr=22050)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF nonsense" * 10)
    (d / "wav.scp").write_text(f"a {a}\nb {b}\np cat {a} |\nj {junk}\nm /no/such.wav\n")
    code, out = run_cli("prepare", d, "--nj", "2")
    assert code == 1 and "j:" in out and str(junk) in out  # the unreadable one, named
    assert "wav.scp:5" in out and "2 unreadable" in out  # and the missing one
    got = dict(l.split() for l in (d / "utt2dur").read_text().splitlines())
    assert got == {"a": "2.000", "b": "3.000", "p": "2.000"}
    from batchser.corpus import read_corpus

    c = read_corpus(d)
    assert {u.utt_id: u.duration for u in c.utterances} == {"a": 2.0, "b": 3.0, "p": 2.0, "j": None}
    assert [e.utt_id for e in c.errors] == ["m"]


def test_prepare_with_segments_and_into_another_dir(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    r = write_wav(tmp_path / "r.wav", speechlike(16000 * 5, 3))
    (d / "wav.scp").write_text(f"r {r}\n")
    (d / "segments").write_text("s1 r 0.5 1.5\ns2 r 2.0 -1\ns3 r 4.5 6.0\n")  # s3 runs past the end
    (d / "utt2spk").write_text("s1 x\ns2 x\n")
    out = tmp_path / "prepared"
    code, _ = run_cli("prepare", d, "--out-dir", out, "--nj", "1")
    assert code == 0 and not (d / "utt2dur").exists()  # the original is untouched
    assert (out / "reco2dur").read_text() == "r 5.000\n"
    assert (out / "utt2dur").read_text() == "s1 1.000\ns2 3.000\ns3 0.500\n"  # cut at the end, as run cuts it
    assert (out / "segments").read_text() == (d / "segments").read_text() and (out / "utt2spk").exists()


def test_a_shard_task_reads_no_other_shards_audio(e2v_dir, tmp_path, make_corpus, monkeypatch):
    """After prepare, --shard i/N splits by the data dir's durations: the task opens only its own
    share's files (every header read and decode is watched)."""
    import soundfile as sf

    lens = {f"u{i:02d}": 0.3 + 0.1 * (i % 6) for i in range(18)}
    d = make_corpus(lens)
    assert run_cli("prepare", d, "--nj", "2")[0] == 0
    opened = []
    real_info, real_sf = sf.info, sf.SoundFile

    def spy_info(path, *a, **k):
        opened.append(str(path))
        return real_info(path, *a, **k)

    class SpySoundFile(real_sf):
        def __init__(self, file, *a, **k):
            opened.append(str(file))
            super().__init__(file, *a, **k)

    monkeypatch.setattr(sf, "info", spy_info)
    monkeypatch.setattr(sf, "SoundFile", SpySoundFile)
    out = tmp_path / "o"
    shares = []
    for i in range(3):
        opened.clear()
        assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/3", "--num-workers", "0", "-q")[0] == 0
        mine = set(open_results(out / "shards" / f"shard-{i:04d}-of-0003").labels.utt_id)
        shares.append(mine)
        touched = {p.rsplit("/", 1)[-1][:-4] for p in opened if p.endswith(".wav")}
        assert touched == mine, f"shard {i} opened {sorted(touched - mine)} of other shards"
    assert set().union(*shares) == set(lens) and sum(map(len, shares)) == len(lens)
    per = [sum(lens[u] for u in s) for s in shares]
    assert max(per) - min(per) <= 0.8  # balanced by the prepared durations


def test_without_durations_shards_are_count_balanced_without_header_reads(e2v_dir, tmp_path, make_corpus, monkeypatch):
    import batchser.audio as audio

    d = make_corpus({f"u{i}": 0.4 for i in range(7)})
    probed = []
    orig = audio.probe_duration
    monkeypatch.setattr(audio, "probe_duration", lambda u: probed.append(u.utt_id) or orig(u))
    import batchser.pipeline as pipeline

    monkeypatch.setattr(pipeline, "probe_duration", lambda u: probed.append(u.utt_id) or orig(u))
    code, msg = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--shard", "1/3", "--num-workers", "0")
    assert code == 0 and "batchser prepare" in msg
    mine = set(open_results(tmp_path / "o" / "shards" / "shard-0001-of-0003").labels.utt_id)
    assert set(probed) == mine and len(mine) in (2, 3)


def test_shards_keep_a_recordings_segments_together(e2v_dir, tmp_path):
    """With segments, whole recordings go to one task: no task reads another task's recordings."""
    d = tmp_path / "d"
    d.mkdir()
    lines, segs = [], []
    for r in range(6):
        p = write_wav(tmp_path / f"r{r}.wav", speechlike(16000 * 2, r))
        lines.append(f"r{r} {p}\n")
        segs += [f"r{r}-a r{r} 0.0 0.9\n", f"r{r}-b r{r} 1.0 1.9\n"]
    (d / "wav.scp").write_text("".join(lines))
    (d / "segments").write_text("".join(segs))
    out = tmp_path / "o"
    recs = []
    for i in range(2):
        assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/2", "--num-workers", "0", "-q")[0] == 0
        lab = open_results(out / "shards" / f"shard-{i:04d}-of-0002").labels
        recs.append(set(lab.rec_id))
        assert len(lab) == 2 * len(recs[-1])  # both segments of each of its recordings
    assert not recs[0] & recs[1] and len(recs[0] | recs[1]) == 6 and len(recs[0]) == 3
