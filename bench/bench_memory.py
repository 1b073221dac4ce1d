#!/usr/bin/env python3
"""Peak memory of a whole `batchser run` against corpus length (1k vs 100k utterances).

    python bench/bench_memory.py [--sizes 1000 100000] [--size tiny]

Builds one Kaldi data dir per size: 100 recordings (real speech cut from ../shared/corpora/ravdess
when it is there, else synthetic speech-like noise) and N segments of 0.05-0.25 s spread over
them, with utt2spk. Each size runs `batchser run` in a fresh process with the same model; the
script prints wall time, x real time and peak RSS of the main process and of the largest decoding
worker, and the growth per 1,000 utterances between the smallest and the largest size.
Short segments keep a 100k-utterance run to minutes: what grows with the corpus is per-utterance
bookkeeping (manifest, batches, ids), not audio, so segment length does not change the picture.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _child import run_child  # noqa: E402

REC_SECONDS = 60.0


def make_corpus(d: Path, n: int, recordings: int = 100) -> float:
    """A data dir of ``n`` segments over ``recordings`` 60-s recordings; returns audio seconds."""
    import soundfile as sf

    d.mkdir(parents=True, exist_ok=True)
    (d / "wav").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    speech = None
    ravdess = HERE.parent.parent / "shared" / "corpora" / "ravdess"
    if (ravdess / "wav.scp").exists():
        from batchser.audio import load_utterance
        from batchser.corpus import read_corpus

        speech = np.concatenate([load_utterance(u) for u in read_corpus(ravdess, audio_root=str(ravdess)).utterances[:40]])
    with open(d / "wav.scp", "w") as f:
        for r in range(recordings):
            p = d / "wav" / f"rec{r:04d}.wav"
            if not p.exists():
                k = int(REC_SECONDS * 16000)
                if speech is not None:
                    y = np.take(speech, np.arange(r * 7919, r * 7919 + k), mode="wrap")
                else:
                    y = (rng.standard_normal(k) * 0.1 * np.sin(np.arange(k) / 800.0) ** 2).astype(np.float32)
                sf.write(str(p), y, 16000, subtype="PCM_16")
            f.write(f"rec{r:04d} {p}\n")
    per = -(-n // recordings)
    total = 0.0
    with open(d / "segments", "w") as f, open(d / "utt2spk", "w") as g:
        i = 0
        for r in range(recordings):
            t = 0.0
            for _ in range(per):
                if i == n:
                    break
                dur = float(rng.uniform(0.05, 0.25))
                if t + dur > REC_SECONDS:
                    t = 0.0
                u = f"spk{r % 20:02d}-rec{r:04d}-{i:07d}"
                f.write(f"{u} rec{r:04d} {t:.3f} {t + dur:.3f}\n")
                g.write(f"{u} spk{r % 20:02d}\n")
                t += dur
                total += dur
                i += 1
    return total


def child(data: str, out: str, model: str, batch: str) -> dict:
    from batchser.runner import RunConfig, run

    t0 = time.time()
    s = run(RunConfig(input=data, out=out, model=model, device="cpu", overwrite=True, progress=False,
                      max_batch_size=int(batch)), log=lambda *_: None)
    return {"run_s": time.time() - t0, "n_ok": s.n_ok, "n_errors": s.n_errors, "audio_s": s.audio_seconds,
            "main_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000])
    ap.add_argument("--size", default="tiny", choices=["tiny", "base"], help="model size (random weights)")
    ap.add_argument("--max-batch-size", type=int, default=64, help="short segments: more per batch")
    ap.add_argument("--work", default="/tmp/batchser-bench-memory")
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    from batchser.testmodels import make_emotion2vec_dir

    work = Path(a.work)
    model = work / f"e2v_{a.size}"
    if not (model / "model.pt").exists():
        make_emotion2vec_dir(model, size=a.size, seed=0)
    rows = []
    for n in a.sizes:
        d = work / f"corpus_{n}"
        audio = make_corpus(d, n)
        r = run_child(__file__, ["--child", str(d), str(work / f"out_{n}"), str(model), str(a.max_batch_size)])
        assert r["n_ok"] + r["n_errors"] == n, r
        rows.append((n, audio, r))
        print(f"{n:>8,} utterances ({audio / 3600:.2f} h): {r['run_s']:.1f} s, {audio / r['run_s']:.0f}x real time, "
              f"ok {r['n_ok']:,} errors {r['n_errors']:,}; peak RSS main {r['main_peak_rss_mb']:.0f} MB, "
              f"largest worker {r['worker_peak_rss_mb']:.0f} MB (forked: counts pages shared with the main process)",
              flush=True)
    if len(rows) > 1:
        (n0, _, r0), (n1, _, r1) = rows[0], rows[-1]
        per_k = (r1["main_peak_rss_mb"] - r0["main_peak_rss_mb"]) / (n1 - n0) * 1000
        print(f"main-process growth: {r1['main_peak_rss_mb'] - r0['main_peak_rss_mb']:+.0f} MB from {n0:,} to "
              f"{n1:,} utterances ({per_k:.2f} MB per 1,000 utterances)")


if __name__ == "__main__":
    main()
