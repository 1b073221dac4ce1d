"""A long recording end to end: `batchser run wav.scp --vad --timeline 2,1`, then `batchser plot`.

The recording is built from real speech: the RAVDESS files of ``../shared/corpora/ravdess`` (or
espeak-ng sentences when it is absent) one after another with 0.5-4 s pauses of low noise, to
``--minutes``, written as one 16 kHz WAV listed in a plain wav.scp. The model is a random-weight
emotion2vec of the real base architecture (``--size base``: the compute of emotion2vec+ base;
its labels mean nothing) unless ``--model`` names another. Prints the time split (VAD, model,
waiting for audio, writing) from the manifest, the counts, and where the PNG is.

    python bench/bench_long_recording.py --minutes 60 --keep /tmp/long
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
REPO = Path(__file__).resolve().parents[1]
RAVDESS = Path(os.environ.get("BATCHSER_SHARED", REPO.parent / "shared")) / "corpora" / "ravdess"


def utterances(tmp: Path):
    import soxr

    if (RAVDESS / "wav.scp").exists():
        for line in (RAVDESS / "wav.scp").read_text().splitlines():
            x, sr = sf.read(RAVDESS / line.split()[1], dtype="float32", always_2d=True)
            yield soxr.resample(x.mean(1), sr, SR).astype(np.float32)
    else:
        for k in range(200):
            p = tmp / "s.wav"
            subprocess.run(["espeak-ng", "-w", str(p), f"This is sentence {k}, spoken at an even pace."], check=True)
            x, sr = sf.read(p, dtype="float32")
            yield soxr.resample(x, sr, SR).astype(np.float32)


def build(path: Path, minutes: float, tmp: Path) -> float:
    rng = np.random.default_rng(0)
    n_total = int(minutes * 60 * SR)
    n = 0
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:
        while n < n_total:
            for x in utterances(tmp):
                sil = (0.002 * rng.standard_normal(int(rng.uniform(0.5, 4.0) * SR))).astype(np.float32)
                for block in (x, sil):
                    block = block[: n_total - n]
                    f.write(block)
                    n += len(block)
                if n >= n_total:
                    break
    return n / SR


def vmhwm_mb(pid_status: str) -> float:
    for line in pid_status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--model", default=None, help="a model dir or id (default: a random-weight emotion2vec)")
    ap.add_argument("--size", default="base", help="size of the random-weight emotion2vec (tiny, base)")
    ap.add_argument("--timeline", default="2,1")
    ap.add_argument("--keep", default=None, help="write everything here instead of a temporary directory")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(a.keep or tmp_s)
        tmp.mkdir(parents=True, exist_ok=True)
        wav = tmp / "call.wav"
        secs = build(wav, a.minutes, tmp)
        (tmp / "wav.scp").write_text(f"call {wav}\n")
        model = a.model
        if model is None:
            from batchser.testmodels import make_emotion2vec_dir

            model = str(make_emotion2vec_dir(tmp / f"e2v_{a.size}", size=a.size, seed=0))
        out = tmp / "out"
        cmd = [sys.executable, "-m", "batchser", "run", str(tmp / "wav.scp"), "--out", str(out), "--model", model,
               "--vad", "--timeline", a.timeline, "--overwrite", "--progress-every", "60"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, check=True, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        sys.stderr.write(r.stderr)
        import re

        m = re.search(r"^vad: .* in ([0-9.]+) s;", r.stderr, re.M)
        vad_s = float(m.group(1)) if m else float("nan")
        man = json.loads((out / "manifest.json").read_text())
        t1 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "batchser", "plot", str(out), "--rec", "call", "--png",
                        str(tmp / "call.png")], check=True)
        t_plot = time.perf_counter() - t1
        ts = man["time_split_seconds"]
        print(f"recording: {secs / 60:.1f} min; segments: {man['counts']['results_total']}, speech "
              f"{man['audio_hours'] * 60:.1f} min; timeline windows: {man['timeline']['windows_this_run']}")
        print(f"run --vad --timeline {a.timeline}: {wall:.1f} s wall ({secs / wall:.1f}x real time of the recording); "
              f"vad {vad_s:.1f} s, model {ts['model']:.1f} s, waiting for audio "
              f"{ts['waiting_for_audio']:.1f} s, writing {ts['writing']:.1f} s; plot {t_plot:.1f} s -> {tmp / 'call.png'}")
        print(f"device {man['device']} ({man['device_name']}), dtype {man['dtype']}, model {model}")


if __name__ == "__main__":
    main()
