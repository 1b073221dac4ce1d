"""Scale: a synthetic corpus of millions of segments over a few thousand recordings.

Measures (prints a table; docs/performance.md keeps the figures):

1. one shard task of ``--shards`` from start to its first finished batch: seconds and peak RSS
   (the real CLI with a tiny random-weight model, killed after its first batch);
2. reader + bucketing alone over the whole corpus (what a whole run holds besides the model):
   seconds, peak RSS, and padding efficiency of chunked bucketing vs one sort of the whole corpus.

Usage:
    python bench/bench_scale.py --segments 10000000 --recordings 3000 --work /tmp/scale
The data dir is written once into --work (about 0.6 GB of text for 10^7 segments) and reused.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def build(work: Path, n_segments: int, n_recs: int, n_files: int = 20, rec_seconds: float = 600.0) -> Path:
    """``n_recs`` wav.scp entries over ``n_files`` real 16 kHz files (the same audio listed many
    times is cheap and reads like distinct recordings), ``n_segments`` segments of 0.5-6 s."""
    import soundfile as sf

    d = work / f"data_{n_segments}_{n_recs}"
    if (d / "segments").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    wav = work / "wav"
    wav.mkdir(exist_ok=True)
    files = []
    for i in range(n_files):
        p = wav / f"f{i:03d}.flac"
        if not p.exists():
            t = np.arange(int(rec_seconds * 16000)) / 16000
            x = 0.1 * np.sin(2 * np.pi * (120 + 10 * i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
            sf.write(p, (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000, subtype="PCM_16")
        files.append(p)
    with open(d / "wav.scp", "w") as f:
        for r in range(n_recs):
            f.write(f"rec{r:05d} {files[r % n_files]}\n")
    per = n_segments // n_recs
    extra = n_segments - per * n_recs
    with open(d / "segments", "w") as f, open(d / "utt2spk", "w") as g:
        for r in range(n_recs):
            k = per + (r < extra)
            starts = np.sort(rng.uniform(0, rec_seconds - 6, k))
            lens = rng.uniform(0.5, 6.0, k)
            rid = f"rec{r:05d}"
            f.writelines(f"{rid}-{int(s * 100):07d}-{int((s + l) * 100):07d}-{j} {rid} {s:.2f} {s + l:.2f}\n"
                         for j, (s, l) in enumerate(zip(starts, lens)))
            g.writelines(f"{rid}-{int(s * 100):07d}-{int((s + l) * 100):07d}-{j} spk{r % 500}\n"
                         for j, (s, l) in enumerate(zip(starts, lens)))
    return d


def build_wavscp(work: Path, n: int, with_utt2dur: bool, n_files: int = 20) -> Path:
    """A wav.scp of ``n`` utterance files (the same few real files listed under many ids: one
    file per utterance, as pre-cut corpora come), utt2spk, and utt2dur or not."""
    d = work / f"wavscp_short_{n}_{'dur' if with_utt2dur else 'nodur'}"
    if (d / "wav.scp").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    import soundfile as sf

    wav = work / "short"
    wav.mkdir(exist_ok=True)
    files, secs = [], []
    for k in range(n_files):  # utterance-length files: 2-8 s
        p = wav / f"u{k:03d}.flac"
        sec = 2.0 + 6.0 * k / max(1, n_files - 1)
        if not p.exists():
            t = np.arange(int(sec * 16000)) / 16000
            sf.write(p, (0.1 * np.sin(2 * np.pi * (150 + 7 * k) * t)).astype(np.float32), 16000, subtype="PCM_16")
        files.append(p)
        secs.append(sec)
    with open(d / "wav.scp", "w") as f, open(d / "utt2spk", "w") as g:
        for i in range(n):
            f.write(f"utt{i:09d} {files[i % len(files)]}\n")
            g.write(f"utt{i:09d} spk{i % 5000}\n")
    if with_utt2dur:
        with open(d / "utt2dur", "w") as f:
            f.writelines(f"utt{i:09d} {secs[i % len(files)]:.3f}\n" for i in range(n))
    return d


def hwm(pid="self") -> float:
    """Peak resident memory (MB) of a live process (VmHWM: this process image only, not the
    parent it was forked from, as ru_maxrss would be)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_batch(data: Path, model: Path, out: Path, shard: str) -> dict:
    """Start a shard task; seconds until its first progress line after a batch, peak RSS."""
    cmd = [sys.executable, "-m", "batchser.cli", "run", str(data), "--out", str(out), "--model", str(model),
           "--shard", shard, "--num-workers", "0", "--progress-every", "0.001", "--overwrite"]
    t0 = time.time()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    got = None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("progress: ") and not line.startswith("progress: 0/"):
            got = time.time() - t0
            rss = hwm(p.pid)
            p.terminate()
            break
    p.wait()
    if got is None:
        raise SystemExit("no batch finished:\n" + "".join(lines[-20:]))
    return {"seconds_to_first_batch": got, "peak_rss_mb": rss}


def reader_only(data: Path, chunk: int, whole_sort: bool) -> dict:
    """Reader + bucketing over the whole corpus in this process (run in a child for its RSS)."""
    code = f"""
import time, json
from pathlib import Path
from batchser.kaldi import KaldiStream
from batchser.batching import make_batches
t0 = time.time()
st = KaldiStream(Path({str(data)!r}))
t_index = time.time() - t0
real = padded = 0.0
n = 0
alld = []
for c in st.chunks({chunk}):
    d = [u.duration for u in c.utterances]
    n += len(d)
    for b in make_batches(d, 160.0, 64):
        real += sum(d[i] for i in b); padded += len(b) * max(d[i] for i in b)
    if {whole_sort}:
        alld.extend(d)
hwm = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
out = dict(n=n, seconds=time.time() - t0, index_seconds=t_index, padding_efficiency=real / padded, peak_rss_mb=hwm)
if {whole_sort}:
    r = p = 0.0
    for b in make_batches(alld, 160.0, 64):
        r += sum(alld[i] for i in b); p += len(b) * max(alld[i] for i in b)
    out["padding_efficiency_whole_sort"] = r / p
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    import json

    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, nargs="+", default=[1000, 100_000, 10_000_000])
    ap.add_argument("--recordings", type=int, default=3000)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/batchser_scale"))
    ap.add_argument("--wavscp", type=int, default=0, metavar="N",
                    help="also: one shard task on a wav.scp of N utterance files, with and without utt2dur")
    ap.add_argument("--whole-sort-max", type=int, default=1_000_000,
                    help="compare with one whole-corpus sort up to this many segments (it needs their memory)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    from batchser.testmodels import make_emotion2vec_dir

    model = a.work / "e2v_tiny"
    if not (model / "model.pt").exists():
        make_emotion2vec_dir(model, size="tiny", seed=1)
    for n in a.segments:
        t = time.time()
        d = build(a.work, n, min(a.recordings, n))
        print(f"== {n:,} segments over {min(a.recordings, n):,} recordings ({d}, built in {time.time() - t:.0f} s)",
              flush=True)
        fb = first_batch(d, model, a.work / f"out_{n}", f"1/{a.shards}")
        print(f"  shard 1/{a.shards}: first batch after {fb['seconds_to_first_batch']:.1f} s, "
              f"peak RSS {fb['peak_rss_mb']:.0f} MB", flush=True)
        ro = reader_only(d, a.chunk, n <= a.whole_sort_max)
        line = (f"  reader+bucketing, whole corpus: {ro['seconds']:.1f} s (index {ro['index_seconds']:.1f} s), "
                f"peak RSS {ro['peak_rss_mb']:.0f} MB, padding efficiency {ro['padding_efficiency']:.4f} "
                f"(chunks of {a.chunk:,})")
        if "padding_efficiency_whole_sort" in ro:
            line += f" vs {ro['padding_efficiency_whole_sort']:.4f} (one sort)"
        print(line, flush=True)
    if a.wavscp:
        for dur in (True, False):
            d = build_wavscp(a.work, a.wavscp, dur)
            fb = first_batch(d, model, a.work / f"out_wavscp_{dur}", f"1/{a.shards}")
            print(f"== wav.scp of {a.wavscp:,} files, {'with' if dur else 'without'} utt2dur: shard 1/{a.shards} "
                  f"first batch after {fb['seconds_to_first_batch']:.1f} s, peak RSS {fb['peak_rss_mb']:.0f} MB",
                  flush=True)


if __name__ == "__main__":
    main()
