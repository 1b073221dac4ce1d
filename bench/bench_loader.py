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
    ap.add_argument("--formats", action="store_true",
                    help="also time one decoder on copies of the corpus as 16 kHz WAV, 48 kHz WAV, 16 kHz FLAC and "
                         "48 kHz FLAC (16-bit), and say how many decoders 20,000x real time needs for each")
    ap.add_argument("--work", default="/tmp/batchser-bench-loader")
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
    if a.formats:
        formats(utts[: len(c.utterances)], Path(a.work), a.repeat)
    print(f"peak RSS: main {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
          f"decoders {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB (largest)")


def formats(utts, work: Path, repeat: int) -> None:
    """One decoder (in-process, as each decoder process runs) per format: x real time and the
    decoders a GPU at 20,000x real time would need."""
    import soundfile as sf

    from batchser.audio import TARGET_SR, load_utterance, resample
    from batchser.corpus import AudioSource, Utterance

    waves = [load_utterance(u) for u in utts]
    secs = sum(len(w) for w in waves) / TARGET_SR
    for sr, fmt in ((16000, "WAV"), (48000, "WAV"), (16000, "FLAC"), (48000, "FLAC")):
        d = work / f"{fmt.lower()}{sr // 1000}k"
        d.mkdir(parents=True, exist_ok=True)
        files = []
        for i, w in enumerate(waves):
            p = d / f"u{i:04d}.{fmt.lower()}"
            if not p.exists():
                sf.write(str(p), resample(w, TARGET_SR, sr) if sr != TARGET_SR else w, sr, subtype="PCM_16", format=fmt)
            files.append(Utterance(f"u{i}", f"u{i}", AudioSource("file", str(p))))
        t = time.perf_counter()
        for _ in range(repeat):
            for u in files:
                load_utterance(u)
        rt = secs * repeat / (time.perf_counter() - t)
        print(f"{fmt:4} {sr // 1000:2d} kHz 16-bit: {rt:7.0f}x real time per decoder; 20,000x needs "
              f"{20000 / rt:5.1f} decoders")


if __name__ == "__main__":
    main()
