"""Loader: formats, pipes, arks, segments, downmix, resampling, and clear errors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from batchser.audio import AudioError, load_utterance, probe_duration, resample
from batchser.corpus import AudioSource, Utterance
from conftest import speechlike, write_wav


def utt(kind, value, **kw):
    return Utterance(utt_id="u", rec_id="u", source=AudioSource(kind, value), **kw)


def tone(sr, secs=1.0, f=440.0):
    t = np.arange(int(sr * secs)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize("subtype,atol", [("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-8), ("FLOAT", 0)])
def test_wav_subtypes(tmp_path, subtype, atol):
    x = speechlike(16000, 1)
    p = write_wav(tmp_path / "x.wav", x, 16000, subtype)
    y = load_utterance(utt("file", str(p)))
    assert y.dtype == np.float32 and len(y) == 16000
    np.testing.assert_allclose(y, x, atol=atol + 1e-7)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_compressed_formats(tmp_path, fmt):
    x = tone(16000)
    p = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(p), x, 16000, format=fmt)
    y = load_utterance(utt("file", str(p)))
    assert abs(len(y) - 16000) <= 16
    assert np.corrcoef(y[:15000], x[:15000])[0, 1] > 0.9


def test_resampling_keeps_frequency_and_length(tmp_path):
    for sr in (8000, 22050, 44100, 48000):
        p = write_wav(tmp_path / f"t{sr}.wav", tone(sr, 1.0, 440.0), sr)
        y = load_utterance(utt("file", str(p)))
        assert abs(len(y) - 16000) <= 1
        spec = np.abs(np.fft.rfft(y))
        assert abs(np.argmax(spec) * 16000 / len(y) - 440.0) < 2.0


def test_stereo_is_mean_of_channels(tmp_path):
    a, b = speechlike(16000, 1), speechlike(16000, 2)
    p = write_wav(tmp_path / "s.wav", np.stack([a, b], 1), 16000)
    np.testing.assert_allclose(load_utterance(utt("file", str(p))), (a + b) / 2, atol=1e-7)


def test_segment_reads_only_the_span(tmp_path):
    x = speechlike(48000, 3)
    p = write_wav(tmp_path / "r.wav", x, 16000)
    y = load_utterance(utt("file", str(p), start=0.5, end=1.25))
    np.testing.assert_array_equal(y, x[8000:20000])
    y2 = load_utterance(utt("file", str(p), start=2.0))
    np.testing.assert_array_equal(y2, x[32000:])
    with pytest.raises(AudioError, match="past the end"):
        load_utterance(utt("file", str(p), start=9.0, end=10.0))


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")
def test_pipe_sox(tmp_path):
    x = tone(44100)
    p = tmp_path / "x.flac"
    sf.write(str(p), x, 44100)
    y = load_utterance(utt("pipe", f"sox {p} -t wav -"))
    assert abs(len(y) - 16000) <= 2


def test_pipe_failure_carries_stderr_and_exit_code():
    with pytest.raises(AudioError) as e:
        load_utterance(utt("pipe", "echo 'codec exploded' >&2; exit 3"))
    assert "exit code 3" in str(e.value) and "codec exploded" in str(e.value)


def test_pipe_timeout():
    with pytest.raises(AudioError, match="timed out"):
        load_utterance(utt("pipe", "sleep 5"), pipe_timeout=0.5)


def test_pipe_garbage_output():
    with pytest.raises(AudioError, match="not audio"):
        load_utterance(utt("pipe", "echo hello"))


def test_ark_entry(tmp_path):
    import kaldiio

    x = (speechlike(8000, 4) * 32767).astype(np.int16)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'a.ark'},{tmp_path / 'a.scp'}", write_function="soundfile") as w:
        w("k", (8000, x))
    spec = (tmp_path / "a.scp").read_text().split()[1]
    y = load_utterance(utt("ark", spec))
    assert abs(len(y) - 16000) <= 2


def test_empty_nan_short_corrupt(tmp_path):
    p = write_wav(tmp_path / "e.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="empty"):
        load_utterance(utt("file", str(p)))
    x = speechlike(16000, 0)
    x[100] = np.nan
    p = write_wav(tmp_path / "n.wav", x)
    with pytest.raises(AudioError, match="NaN"):
        load_utterance(utt("file", str(p)))
    p = write_wav(tmp_path / "s.wav", speechlike(200, 0))
    with pytest.raises(AudioError, match="too short"):
        load_utterance(utt("file", str(p)))
    bad = tmp_path / "c.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match="cannot decode"):
        load_utterance(utt("file", str(bad)))


def test_probe_duration_from_header(tmp_path):
    p = write_wav(tmp_path / "d.wav", speechlike(24000, 0), 16000)
    assert probe_duration(utt("file", str(p))) == pytest.approx(1.5)
    assert probe_duration(utt("file", str(p), start=0.5, end=1.0)) == pytest.approx(0.5)
    assert probe_duration(utt("pipe", "true")) is None
    assert probe_duration(utt("pipe", "true", duration=3.0)) == 3.0


def test_resample_matches_librosa():
    import librosa

    x = speechlike(22050, 5, sr=22050)
    np.testing.assert_allclose(resample(x, 22050), librosa.resample(x, orig_sr=22050, target_sr=16000), atol=1e-6)


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt,subtype,channels", [("WAV", "PCM_16", 1), ("WAV", "PCM_24", 2), ("WAV", "FLOAT", 1),
                                                  ("FLAC", "PCM_16", 2), ("OGG", "VORBIS", 1)])
def test_equals_librosa_load_16k_mono(tmp_path, sr, fmt, subtype, channels):
    """Stated tolerance: decoded + downmixed + resampled samples equal librosa.load(sr=16000,
    mono=True) (soxr HQ) within 1e-5 absolute, same length."""
    import librosa

    x = np.stack([speechlike(int(sr * 1.3), c, sr=sr) for c in range(channels)], 1)
    p = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(p), x, sr, format=fmt, subtype=subtype)
    ref, _ = librosa.load(str(p), sr=16000, mono=True)
    y = load_utterance(utt("file", str(p)))
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, atol=1e-5)
