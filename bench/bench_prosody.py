#!/usr/bin/env python3
"""Prosody features: CPU cost per audio second, and F0 agreement with peers.

    python bench/bench_prosody.py [--corpus ../shared/corpora/ravdess] [--every 4]

Prints (1) the time batchser.prosody.prosody() takes per audio second (one core), split into
F0 (Praat) and the rest; (2) median F0 on synthetic tones vs the true frequency; (3) per
recording median F0 over frames both call voiced, batchser (Praat autocorrelation) vs librosa
pYIN, with the share of recordings within 2%.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(HERE.parent.parent / "shared" / "corpora" / "ravdess"))
    ap.add_argument("--every", type=int, default=4, help="use every k-th recording for the pYIN comparison")
    a = ap.parse_args()

    import librosa

    from batchser.audio import load_utterance
    from batchser.corpus import read_corpus
    from batchser.prosody import pitch_track, prosody

    utts = read_corpus(a.corpus, audio_root=a.corpus).utterances
    wavs = [load_utterance(u) for u in utts]
    secs = sum(len(w) for w in wavs) / 16000
    t = time.process_time()
    for w in wavs:
        prosody(w)
    total = time.process_time() - t
    t = time.process_time()
    for w in wavs:
        pitch_track(w)
    f0 = time.process_time() - t
    print(f"CPU cost: {total / secs * 1000:.1f} ms per audio second ({secs / total:.0f}x real time per core); "
          f"F0 {f0 / secs * 1000:.1f} ms/s, the rest {(total - f0) / secs * 1000:.1f} ms/s  [{len(wavs)} files, {secs:.0f} s]")
    print("\ntones: true Hz -> median F0 (error)")
    for f in (80, 110, 150, 220, 330, 440):
        x = 0.5 * np.sin(2 * np.pi * f * np.arange(24000) / 16000)
        m = prosody(x)["f0_median_hz"]
        print(f"  {f:4d} -> {m:8.2f} ({(m / f - 1) * 100:+.3f}%)")
    print("\nreal speech: median F0 on frames both call voiced, batchser (Praat) vs librosa pYIN")
    rel = []
    pooled: dict = {}
    for u, w in list(zip(utts, wavs))[:: a.every]:
        ours = pitch_track(w)
        py, vf, _ = librosa.pyin(w, fmin=60, fmax=600, sr=16000, frame_length=1024, hop_length=160)
        n = min(len(ours), len(py))
        both = (ours[:n] > 0) & vf[:n]
        a_, b_ = np.median(ours[:n][both]), np.median(py[:n][both])
        rel.append(a_ / b_ - 1)
        po = pooled.setdefault(u.spk, ([], []))
        po[0].append(ours[:n][both])
        po[1].append(py[:n][both])
        print(f"  {u.utt_id:<32} {a_:7.1f} {b_:7.1f} {(a_ / b_ - 1) * 100:+6.2f}%  voiced: ours {np.mean(ours > 0):.2f} "
              f"pyin {np.mean(vf):.2f}")
    rel = np.abs(rel)
    print(f"within 2%: {np.mean(rel < 0.02):.0%} of {len(rel)} recordings; median |difference| {np.median(rel) * 100:.2f}%")
    for spk, (o, p) in sorted(pooled.items()):
        mo, mp = np.median(np.concatenate(o)), np.median(np.concatenate(p))
        print(f"speaker {spk}: median F0 over all voiced-in-both frames: ours {mo:.1f} Hz, pyin {mp:.1f} Hz "
              f"({(mo / mp - 1) * 100:+.2f}%)")


if __name__ == "__main__":
    main()
