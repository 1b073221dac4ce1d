#!/usr/bin/env python3
"""Reader speed and memory on a 1,000,000-line corpus (wav.scp with segments, and plain wav.scp).

    python bench/bench_reader.py [--lines 1000000] [--recordings 1000]

Writes synthetic data dirs under --work (tiny real WAV files, so path checks are real stats),
then reads each with batchser's reader in a fresh process and prints wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(path: str) -> None:
    from batchser.corpus import read_corpus

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.time()
    c = read_corpus(path)
    dt = time.time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"utterances": len(c.utterances), "errors": len(c.errors), "seconds": dt,
                      "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - base) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--recordings", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/batchser-bench-reader")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child)
    import numpy as np
    import soundfile as sf

    w = Path(a.work)
    (w / "wav").mkdir(parents=True, exist_ok=True)
    for r in range(a.recordings):
        p = w / "wav" / f"rec{r:06d}.wav"
        if not p.exists():
            sf.write(str(p), np.zeros(1600, np.float32), 16000)
    seg = w / "segments_dir"
    seg.mkdir(exist_ok=True)
    per = a.lines // a.recordings
    with open(seg / "wav.scp", "w") as f:
        for r in range(a.recordings):
            f.write(f"rec{r:06d} {w}/wav/rec{r:06d}.wav\n")
    with open(seg / "segments", "w") as f, open(seg / "utt2spk", "w") as g:
        for r in range(a.recordings):
            for k in range(per):
                u = f"spk{r % 500:03d}-rec{r:06d}-{k:06d}"
                f.write(f"{u} rec{r:06d} {k * 2.0:.2f} {k * 2.0 + 1.5:.2f}\n")
                g.write(f"{u} spk{r % 500:03d}\n")
    plain = w / "plain_dir"
    plain.mkdir(exist_ok=True)
    with open(plain / "wav.scp", "w") as f:
        for i in range(a.lines):
            f.write(f"utt{i:08d} {w}/wav/rec{i % a.recordings:06d}.wav\n")
    for name, d in (("segments", seg), ("plain wav.scp", plain)):
        p = subprocess.run([sys.executable, __file__, "--child", str(d)], capture_output=True, text=True, check=True)
        r = json.loads(p.stdout)
        print(f"{name:>14}: {r['utterances']:,} utterances in {r['seconds']:.1f} s "
              f"({r['utterances'] / r['seconds']:,.0f}/s), peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(+{r['rss_growth_mb']:.0f} MB for the manifest)")


if __name__ == "__main__":
    main()
