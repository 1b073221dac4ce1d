#!/usr/bin/env python3
"""Loader throughput: decode + downmix + resample to 16 kHz, in decoder processes, no model.

    python bench/bench_loader.py [--corpus ../shared/corpora/ravdess] [--decoders 0 1 2] [--repeat 3]

Reports audio seconds decoded per wall second (x real time) in total and per decoder, the
padding efficiency of batchser's length bucketing on the corpus's real duration mix (at the
CPU and CUDA batch defaults), and peak RSS. The corpus list is repeated --repeat times so the
run is long enough to time.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(HERE.parent.parent / "shared" / "corpora" / "ravdess"))
    ap.add_argument("--decoders", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    from batchser.audio import TARGET_SR, probe_duration
    from batchser.batching import make_batches
    from batchser.corpus import read_corpus
    from batchser.loader import make_loader
    from batchser.policy import DEFAULT_BATCH

    c = read_corpus(a.corpus, audio_root=a.corpus)
    utts = c.utterances * a.repeat
    durs = [probe_duration(u) for u in utts]
    total = sum(durs)
    print(f"corpus: {a.corpus}: {len(c.utterances)} files x {a.repeat} = {total / 60:.1f} min of audio")
    for dev, (bs, mb) in DEFAULT_BATCH.items():
        batches = make_batches(durs, bs, mb)
        padded = sum(len(b) * max(durs[i] for i in b) for b in batches)
        print(f"padding efficiency ({dev} defaults: {bs:g} s, <= {mb} per batch): {total / padded:.1%} "
              f"in {len(batches)} batches")
    batches = make_batches(durs, *DEFAULT_BATCH["cpu"])
    for nw in a.decoders:
        dl = make_loader(utts, batches, pipe_timeout=300.0, min_samples=400, features=False, num_decoders=nw)
        t = time.time()
        n = 0
        for items in dl:
            n += sum(len(it.wave) for it in items if it.error is None)
        dt = time.time() - t
        rt = n / TARGET_SR / dt
        print(f"decoders={nw}: {rt:7.1f}x real time total, {rt / max(nw, 1):7.1f}x per decoder "
              f"({n / TARGET_SR / 60:.1f} min in {dt:.1f} s)")
    print(f"peak RSS: main {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
          f"decoders {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB (largest)")


if __name__ == "__main__":
    main()
