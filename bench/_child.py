"""Shared by the bench scripts: run one tool in a fresh process (so peak RSS is its own)."""
from __future__ import annotations

import json
import subprocess
import sys
import time


def run_child(script: str, argv: list) -> dict:
    """``python script *argv``; the child prints one JSON line last. Adds ``wall_s``."""
    t = time.time()
    p = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["wall_s"] = time.time() - t
    return r


def decode_to_16k(utts, d) -> tuple:
    """Decode utterances once with batchser's loader into 16 kHz float WAVs under ``d`` and write
    ``d/wav.scp``, so every tool compared reads identical audio. Returns (wav.scp path, seconds)."""
    from pathlib import Path

    import soundfile as sf

    from batchser.audio import load_utterance

    d = Path(d)
    (d / "wav").mkdir(parents=True, exist_ok=True)
    lines, secs = [], 0.0
    for u in utts:
        y = load_utterance(u)
        secs += len(y) / 16000
        p = d / "wav" / f"{u.utt_id}.wav"
        sf.write(str(p), y, 16000, subtype="FLOAT")
        lines.append(f"{u.utt_id} {p}\n")
    (d / "wav.scp").write_text("".join(lines))
    return d / "wav.scp", secs
