"""The reader and loader against lhotse's Kaldi import and kaldiio on the same data dirs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from batchser.audio import load_utterance, probe_duration
from batchser.corpus import read_corpus
from conftest import speechlike

lhotse = pytest.importorskip("lhotse")
kaldiio = pytest.importorskip("kaldiio")


@pytest.fixture
def kaldi_dir(tmp_path, monkeypatch):
    """A data dir with plain relative paths, a pipe entry and PCM-16 audio at 16 kHz."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wav").mkdir()
    lines = []
    for i, n in enumerate([16000, 24321, 40000]):
        sf.write(f"wav/r{i}.wav", speechlike(n, i), 16000, subtype="PCM_16")
        lines.append(f"r{i} wav/r{i}.wav")
    if shutil.which("sox"):
        sf.write("wav/p.wav", speechlike(20000, 7), 16000, subtype="PCM_16")
        lines.append("rp sox wav/p.wav -t wav - |")
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "utt2spk").write_text("".join(f"{l.split()[0]} s{l.split()[0][-1]}\n" for l in lines))
    return d


def _lhotse(d):
    recs, sups, _ = lhotse.kaldi.load_kaldi_data_dir(d, sampling_rate=16000, num_jobs=1)
    return recs, sups


def test_same_recordings_durations_and_samples_as_lhotse(kaldi_dir):
    recs, sups = _lhotse(kaldi_dir)
    c = read_corpus(kaldi_dir)
    assert sorted(u.utt_id for u in c.utterances) == sorted(r.id for r in recs)
    for u in c.utterances:
        rec = recs[u.utt_id]
        y = load_utterance(u)
        ref = rec.load_audio()[0]
        # lhotse's Kaldi import rounds recording durations to 10 ms (num_samples follows);
        # batchser keeps every sample, so the lengths agree to within half of that.
        assert abs(len(y) - rec.num_samples) <= 80 and len(ref) == rec.num_samples
        n = min(len(y), len(ref))
        np.testing.assert_allclose(y[:n], ref[:n], atol=1e-6)
        d = probe_duration(u)
        if d is not None:
            assert d == pytest.approx(rec.duration, abs=0.005)
            assert d * 16000 == pytest.approx(len(y))
    assert {s.id: s.speaker for s in sups} == {u.utt_id: u.spk for u in c.utterances}


def test_same_segments_as_lhotse(kaldi_dir):
    (kaldi_dir / "segments").write_text("a r0 0.10 0.60\nb r1 0.00 1.20\nc r2 1.5 2.5\n")
    (kaldi_dir / "utt2spk").write_text("a s0\nb s1\nc s2\n")
    (kaldi_dir / "text").write_text("a x\nb y\nc z\n")  # lhotse wants a transcript with segments
    recs, sups = _lhotse(kaldi_dir)
    c = read_corpus(kaldi_dir)
    ours = {u.utt_id: u for u in c.utterances}
    assert set(ours) == {s.id for s in sups}
    for s in sups:
        u = ours[s.id]
        assert (u.start, u.duration, u.spk) == (pytest.approx(s.start), pytest.approx(s.duration), s.speaker)
        ref = recs[s.recording_id].load_audio(offset=s.start, duration=s.duration)[0]
        y = load_utterance(u)
        assert abs(len(y) - len(ref)) <= 1
        n = min(len(y), len(ref))
        np.testing.assert_allclose(y[:n], ref[:n], atol=1e-6)


def test_same_audio_as_kaldiio(kaldi_dir):
    ref = kaldiio.load_scp(str(kaldi_dir / "wav.scp"))
    c = read_corpus(kaldi_dir)
    assert sorted(ref.keys()) == sorted(u.utt_id for u in c.utterances)
    for u in c.utterances:
        rate, x = ref[u.utt_id]
        assert rate == 16000
        np.testing.assert_allclose(load_utterance(u), x.astype(np.float32) / 32768.0, atol=1e-7)
