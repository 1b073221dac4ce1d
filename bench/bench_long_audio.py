#!/usr/bin/env python3
"""Long utterances: whole vs --max-seconds windows, and the memory a whole long utterance takes.

    python bench/bench_long_audio.py [--corpus ../shared/corpora/ravdess] [--size base] [--lengths 60 180]

Builds long real-speech signals by concatenating one speaker's recordings (16 kHz), runs each
whole and in windows of several lengths (batchser.worker.run_items, as `batchser run` does),
and reports how far the windowed result is from the whole one: embedding cosine similarity,
max class-score difference, same argmax. Also reports time and peak RSS of the whole run.
Random-weight models: the differences show how much cross-window context matters to this
architecture, not to a trained model's decisions.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(HERE.parent.parent / "shared" / "corpora" / "ravdess"))
    ap.add_argument("--size", default="base")
    ap.add_argument("--work", default="/tmp/batchser-bench")
    ap.add_argument("--lengths", type=float, nargs="+", default=[60, 180])
    ap.add_argument("--windows", type=float, nargs="+", default=[10, 30, 60])
    a = ap.parse_args()

    from batchser.audio import load_utterance
    from batchser.corpus import read_corpus
    from batchser.models.emotion2vec import Emotion2vecBackend
    from batchser.testmodels import make_emotion2vec_dir
    from batchser.worker import run_items

    model = Path(a.work) / f"e2v_{a.size}"
    if not (model / "model.pt").exists():
        make_emotion2vec_dir(model, size=a.size, seed=0)
    be = Emotion2vecBackend(str(model))
    c = read_corpus(a.corpus, audio_root=a.corpus)
    spk = c.utterances[0].spk
    speech = np.concatenate([load_utterance(u) for u in c.utterances if u.spk == spk])
    rows = []
    for L in a.lengths:
        n = int(L * 16000)
        x = np.tile(speech, int(np.ceil(n / len(speech))))[:n]
        t = time.time()
        whole, _, _ = run_items(be, [x], frames=False, max_samples=n)
        t_whole = time.time() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        w = whole[0]
        for win in a.windows:
            if win >= L:
                continue
            t = time.time()
            r = run_items(be, [x], frames=False, max_samples=int(win * 16000))[0][0]
            cos = float(np.dot(w.embedding, r.embedding) / np.linalg.norm(w.embedding) / np.linalg.norm(r.embedding))
            rows.append({"seconds": L, "window_s": win, "windows": r.windows,
                         "embedding_cosine": cos,
                         "max_score_diff": float(np.abs(w.scores - r.scores).max()),
                         "same_label": bool(np.argmax(w.scores) == np.argmax(r.scores)),
                         "time_windows_s": time.time() - t, "time_whole_s": t_whole,
                         "peak_rss_mb_so_far": rss})
            print(json.dumps(rows[-1]))
    out = Path(a.work) / "bench_long_audio.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
