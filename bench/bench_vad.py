"""VAD speed and memory: `batchser segment` on one long recording built from espeak-ng speech.

A minute of synthetic speech with pauses (espeak-ng sentences between 1-3 s silences) is
repeated to ``--minutes`` and written as a 16 kHz WAV (block by block). Then `batchser segment`
runs on it in one process (``--num-workers 0``): wall time, x real time, and the process's peak
RSS (VmHWM), which must not grow with the recording (decoding and VAD stream a minute at a time).

    python bench/bench_vad.py --minutes 180
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def minute_of_speech(tmp: Path) -> np.ndarray:
    import soxr

    rng = np.random.default_rng(0)
    parts, n = [], 0
    k = 0
    while n < 60 * SR:
        p = tmp / f"s{k}.wav"
        subprocess.run(["espeak-ng", "-w", str(p), f"This is sentence {k}, spoken at an even pace."], check=True)
        x, sr = sf.read(p, dtype="float32")
        x = soxr.resample(x, sr, SR).astype(np.float32)
        sil = (0.001 * rng.standard_normal(int(rng.uniform(1, 3) * SR))).astype(np.float32)
        parts += [x, sil]
        n += len(x) + len(sil)
        k += 1
    return np.concatenate(parts)[: 60 * SR]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=60)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        m = minute_of_speech(tmp)
        wav = tmp / "long.wav"
        with sf.SoundFile(wav, "w", SR, 1, subtype="PCM_16") as f:
            for _ in range(a.minutes):
                f.write(m)
        (tmp / "wav.scp").write_text(f"long {wav}\n")
        code = ("import sys, resource; from batchser.cli import main; sys.argv = ['batchser', 'segment', "
                f"{str(tmp / 'wav.scp')!r}, '--out', {str(tmp / 'seg')!r}, '--num-workers', '0', '-q']\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "print([l for l in open(chr(47) + 'proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
        t0 = time.time()
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        dt = time.time() - t0
        if p.returncode:
            raise SystemExit(p.stderr)
        hwm = int(p.stdout.strip().splitlines()[-1]) / 1024
        n = len((tmp / "seg" / "segments").read_text().splitlines())
        print(f"{a.minutes} min recording: {dt:.1f} s ({a.minutes * 60 / dt:.0f}x real time, one process), "
              f"{n} segments, peak RSS {hwm:.0f} MB")


if __name__ == "__main__":
    main()
