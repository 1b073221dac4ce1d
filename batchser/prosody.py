"""Interpretable prosody features per utterance: pitch, loudness, pauses, speaking rate.

Computed on the 16 kHz waveform in the loader workers (CPU), vectorised (numpy, scipy, Praat):

* F0: Praat's autocorrelation pitch tracker (through praat-parselmouth), 10 ms steps,
  60-600 Hz. Statistics over voiced frames only: mean, median, standard deviation and range
  (5th-95th percentile, robust to octave errors) in Hz and in semitones re 100 Hz.
  ``voiced_fraction``: voiced frames / all frames.
* Loudness: ``rms_dbfs`` (RMS of the whole utterance), ``loud_mean_dbfs`` / ``loud_std_db``
  (25 ms frames every 10 ms, over non-pause frames), ``peak_dbfs`` (largest |sample|); dBFS is
  20 log10 of an amplitude on the [-1, 1] scale.
* ``pause_ratio``: share of frames quieter than 25 dB under the utterance's loud frames (95th
  percentile of frame levels) or than -60 dBFS.
* ``speech_rate_syl_s``: a syllable-nucleus count per second (after de Jong & Wempe, 2009):
  peaks of the smoothed frame intensity that stand out by >= 2 dB from the dips around them,
  lie above the pause threshold and fall on voiced frames; divided by the utterance duration.
  ``articulation_rate_syl_s`` divides by the non-pause time instead.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from .audio import TARGET_SR

SR = TARGET_SR
HOP = 160  # 10 ms
WIN = 400  # 25 ms
F0_FLOOR, F0_CEIL = 60.0, 600.0
EPS = 1e-10

COLUMNS: List[str] = [
    "f0_mean_hz", "f0_median_hz", "f0_std_hz", "f0_range_hz",
    "f0_mean_st", "f0_median_st", "f0_std_st", "f0_range_st", "voiced_fraction",
    "rms_dbfs", "loud_mean_dbfs", "loud_std_db", "peak_dbfs",
    "pause_ratio", "speech_rate_syl_s", "articulation_rate_syl_s",
]


def pitch_track(y: np.ndarray, floor: float = F0_FLOOR, ceil: float = F0_CEIL) -> np.ndarray:
    """F0 per 10 ms frame (0 = unvoiced), frame i centred at i * 10 ms (as the intensity frames)."""
    import parselmouth

    n = 1 + len(y) // HOP
    if len(y) < int(3 * SR / floor):  # Praat needs three periods of the floor
        return np.zeros(n)
    snd = parselmouth.Sound(np.asarray(y, dtype=np.float64)[None, :], sampling_frequency=float(SR))
    p = snd.to_pitch_ac(time_step=HOP / SR, pitch_floor=floor, pitch_ceiling=ceil)
    f = p.selected_array["frequency"]
    # Praat frames sit half a step off our grid (0.025, 0.035, ...): round half up, never to even
    idx = np.floor(np.asarray(p.xs()) * SR / HOP + 0.5 + 1e-9).astype(int)
    out = np.zeros(n)
    keep = (idx >= 0) & (idx < n)
    out[idx[keep]] = f[keep]
    return out


def frame_db(y: np.ndarray) -> np.ndarray:
    """RMS level (dBFS) of 25 ms frames every 10 ms, frame i centred at i * 10 ms."""
    pad = np.pad(np.asarray(y, dtype=np.float64), (WIN // 2, WIN // 2))
    n = 1 + len(y) // HOP
    idx = np.arange(n)[:, None] * HOP + np.arange(WIN)[None, :]
    idx = np.minimum(idx, len(pad) - 1)
    rms = np.sqrt(np.mean(pad[idx] ** 2, axis=1))
    return 20 * np.log10(rms + EPS)


def _stats(f0: np.ndarray) -> Dict[str, float]:
    v = f0[f0 > 0]
    if v.size == 0:
        return {k: float("nan") for k in COLUMNS[:8]}
    st = 12 * np.log2(v / 100.0)
    p5, p95 = np.percentile(v, [5, 95])
    s5, s95 = np.percentile(st, [5, 95])
    return {"f0_mean_hz": float(v.mean()), "f0_median_hz": float(np.median(v)), "f0_std_hz": float(v.std()),
            "f0_range_hz": float(p95 - p5), "f0_mean_st": float(st.mean()), "f0_median_st": float(np.median(st)),
            "f0_std_st": float(st.std()), "f0_range_st": float(s95 - s5)}


def syllable_nuclei(db: np.ndarray, voiced: np.ndarray, threshold: float) -> int:
    """Intensity peaks standing out >= 2 dB from surrounding dips, above threshold, on voiced frames."""
    from scipy.signal import find_peaks

    sm = np.convolve(db, np.ones(5) / 5, mode="same")  # 50 ms smoothing
    peaks, _ = find_peaks(sm, prominence=2.0, height=threshold, distance=8)  # >= 80 ms apart
    return int(np.count_nonzero(voiced[peaks]))


def prosody(y: np.ndarray, f0_floor: float = F0_FLOOR, f0_ceil: float = F0_CEIL) -> Dict[str, float]:
    """All prosody columns for one 16 kHz mono utterance."""
    y = np.asarray(y, dtype=np.float64)
    dur = len(y) / SR
    db = frame_db(y)
    f0 = pitch_track(y, f0_floor, f0_ceil)
    pause_thr = max(np.percentile(db, 95) - 25.0, -60.0)
    pause = db < pause_thr
    speech = ~pause
    out = _stats(f0)
    out["voiced_fraction"] = float(np.mean(f0 > 0))
    out["rms_dbfs"] = float(20 * np.log10(np.sqrt(np.mean(y ** 2)) + EPS))
    out["loud_mean_dbfs"] = float(db[speech].mean()) if speech.any() else float("nan")
    out["loud_std_db"] = float(db[speech].std()) if speech.any() else float("nan")
    out["peak_dbfs"] = float(20 * np.log10(np.max(np.abs(y)) + EPS))
    out["pause_ratio"] = float(pause.mean())
    n_syl = syllable_nuclei(db, f0 > 0, pause_thr)
    out["speech_rate_syl_s"] = n_syl / dur if dur > 0 else float("nan")
    speech_time = speech.sum() * HOP / SR
    out["articulation_rate_syl_s"] = n_syl / speech_time if speech_time > 0 else float("nan")
    return out


def explain(row: Dict[str, float], base: Dict[str, float], what: str = "speaker") -> Optional[str]:
    """A templated sentence from measured values only, relative to a baseline (medians)."""
    parts = []
    if np.isfinite(row.get("f0_median_st", np.nan)) and np.isfinite(base.get("f0_median_st", np.nan)):
        d = round(row["f0_median_st"] - base["f0_median_st"], 1)
        parts.append(f"pitch at {what} median" if d == 0 else
                     f"pitch {d:+.1f} st {'above' if d > 0 else 'below'} {what} median")
    if np.isfinite(row.get("f0_range_st", np.nan)) and np.isfinite(base.get("f0_range_st", np.nan)):
        d = row["f0_range_st"] - base["f0_range_st"]
        if abs(d) >= 1.0:
            parts.append(f"pitch range {'wider' if d > 0 else 'narrower'} by {abs(d):.1f} st")
    if np.isfinite(row.get("loud_mean_dbfs", np.nan)) and np.isfinite(base.get("loud_mean_dbfs", np.nan)):
        parts.append(f"loudness {row['loud_mean_dbfs'] - base['loud_mean_dbfs']:+.1f} dB")
    r, b = row.get("speech_rate_syl_s", np.nan), base.get("speech_rate_syl_s", np.nan)
    if np.isfinite(r) and np.isfinite(b) and b > 0:
        rel = r / b
        word = "fast" if rel >= 1.15 else "slow" if rel <= 0.85 else "usual rate"
        parts.append(f"{word} ({r:.1f} vs {b:.1f} syl/s)")
    return ", ".join(parts) if parts else None


def explanations(df, key: str = "spk"):
    """utt_id -> explanation for a table with prosody columns, baselines per speaker (or corpus)."""
    import pandas as pd

    use_spk = key in df.columns and df[key].notna().all()
    cols = ["f0_median_st", "f0_range_st", "loud_mean_dbfs", "speech_rate_syl_s"]
    if use_spk:
        base = df.groupby(key)[cols].median()
        rows = [explain(r, base.loc[r[key]].to_dict(), "speaker") for r in df.to_dict("records")]
    else:
        b = df[cols].median().to_dict()
        rows = [explain(r, b, "corpus") for r in df.to_dict("records")]
    return pd.DataFrame({"utt_id": df.utt_id.to_numpy(), "explanation": rows,
                         "baseline": "speaker" if use_spk else "corpus"})
