"""eGeMAPS (openSMILE) beside batchser's prosody columns: cost per audio second per core, and how
close the two are where they measure the same thing (F0 in semitones, loudness).

Reads the RAVDESS files of ``../shared/corpora/ravdess`` (or espeak-ng sentences when absent),
decodes them as a run does (16 kHz mono), and for each: ``egemaps()`` and ``prosody()``, timed
alternately in one process (one core). Prints the cost of each in ms per audio second and x real
time, the F0 difference (eGeMAPS' semitones re 27.5 Hz moved to batchser's re 100 Hz:
-12 log2(100/27.5) = -22.35 st), and the rank correlation of the loudness measures across files.

    python bench/bench_egemaps.py
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RAVDESS = Path(os.environ.get("BATCHSER_SHARED", REPO.parent / "shared")) / "corpora" / "ravdess"
ST_SHIFT = 12 * np.log2(100 / 27.5)


def waves():
    from batchser.audio import decode_utterance
    from batchser.corpus import read_corpus

    if (RAVDESS / "wav.scp").exists():
        c = read_corpus(str(RAVDESS), audio_root=str(RAVDESS))
        for u in c.utterances:
            yield decode_utterance(u).wave
        return
    import soundfile as sf
    import soxr

    with tempfile.TemporaryDirectory() as tmp:
        for k in range(40):
            p = Path(tmp) / "s.wav"
            subprocess.run(["espeak-ng", "-w", str(p), f"Sentence number {k} is spoken here."], check=True)
            x, sr = sf.read(p, dtype="float32")
            yield soxr.resample(x, sr, 16000).astype(np.float32)


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from batchser.egemaps import egemaps
    from batchser.prosody import prosody

    secs = t_e = t_p = 0.0
    f0_e, f0_p, loud_e, loud_p = [], [], [], []
    for i, w in enumerate(waves()):
        secs += len(w) / 16000
        order = (egemaps, prosody) if i % 2 else (prosody, egemaps)
        out = {}
        for f in order:
            t = time.perf_counter()
            out[f.__name__] = f(w)
            dt = time.perf_counter() - t
            if f is egemaps:
                t_e += dt
            else:
                t_p += dt
        e, p = out["egemaps"], out["prosody"]
        if e["egemaps_F0semitoneFrom27_5Hz_sma3nz_amean"] > 0 and np.isfinite(p["f0_mean_st"]):
            f0_e.append(e["egemaps_F0semitoneFrom27_5Hz_sma3nz_amean"] - ST_SHIFT)
            f0_p.append(p["f0_mean_st"])
        loud_e.append(e["egemaps_loudness_sma3_amean"])
        loud_p.append(p["loud_mean_dbfs"])
    n = len(loud_e)
    d = np.array(f0_e) - np.array(f0_p)
    print(f"{n} files, {secs:.1f} s of audio, one core")
    print(f"egemaps: {1000 * t_e / secs:.1f} ms per audio second ({secs / t_e:.0f}x real time); "
          f"prosody: {1000 * t_p / secs:.1f} ms ({secs / t_p:.0f}x)")
    print(f"F0 mean (semitones re 100 Hz), eGeMAPS - prosody over {len(d)} voiced files: mean {d.mean():+.2f} st, "
          f"median |diff| {np.median(np.abs(d)):.2f} st, 90th percentile |diff| {np.percentile(np.abs(d), 90):.2f} st; "
          f"Pearson r {np.corrcoef(f0_e, f0_p)[0, 1]:.3f}")
    print(f"loudness: Spearman rank correlation of eGeMAPS loudness_sma3_amean (sone) and loud_mean_dbfs: "
          f"{spearman(np.array(loud_e), np.array(loud_p)):.3f}")


if __name__ == "__main__":
    main()
