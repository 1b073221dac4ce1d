#!/usr/bin/env python3
"""batchser vs transformers' pipeline("audio-classification") on the same files and model directory.

    python bench/bench_transformers.py [--kind whisper|w2v2] [--size tiny|large-v3] [--batch-size 8]

Builds a random-weight model (Whisper sizes from batchser.testmodels; speed does not depend on the
weights), decodes the corpus once to 16 kHz float WAVs, then times, each in its own process:
`pipeline(..., batch_size=B, num_workers=W)` over the file list, and `batchser run`. Reports
utterances/s, x real time, peak RSS, the ratio, and agreement (labels identical, max score diff).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _child import decode_to_16k, run_child  # noqa: E402


def worker_pipeline(model: str, scp: str, device: str, bs: int, nw: int) -> dict:
    from transformers import pipeline

    import soundfile as sf

    t = time.time()
    pipe = pipeline("audio-classification", model=model, device=device)
    items = [l.split(maxsplit=1) for l in Path(scp).read_text().splitlines()]
    # the 16 kHz files read with soundfile (inside the timed part): the pipeline's own path from
    # there on, and no ffmpeg needed (GPU machines may have none)
    audio = [{"raw": sf.read(p, dtype="float32")[0], "sampling_rate": 16000} for _, p in items]
    res = pipe(audio, batch_size=bs, num_workers=nw, top_k=None)
    out = {k: {r["label"]: r["score"] for r in rs} for (k, _), rs in zip(items, res)}
    return {"run_s": time.time() - t, "results": out}


def worker_batchser(model: str, scp: str, device: str, out: str) -> dict:
    from batchser.runner import RunConfig, run

    t = time.time()
    s = run(RunConfig(input=scp, out=out, model=model, device=device, overwrite=True, progress=False),
            log=lambda *_: None)
    return {"run_s": time.time() - t, "padding_efficiency": s.padding_efficiency}


def child(args):
    return run_child(__file__, ["--role", *args])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", default=str(HERE.parent.parent / "shared" / "corpora" / "ravdess"))
    ap.add_argument("--audio-root", default=None, help="relative wav.scp paths resolve here (default: the corpus)")
    ap.add_argument("--kind", default="whisper", choices=["whisper", "w2v2"])
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--work", default="/tmp/batchser-bench-hf")
    a = ap.parse_args()
    if a.role:
        role, *rest = a.role
        r = worker_pipeline(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4])) if role == "pipeline" \
            else worker_batchser(*rest)
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(r))
        return

    from batchser.corpus import read_corpus
    from batchser.testmodels import make_wav2vec2_classifier_dir, make_whisper_classifier_dir

    work = Path(a.work)
    model = work / f"{a.kind}_{a.size}"
    if not (model / "config.json").exists():
        (make_whisper_classifier_dir(model, size=a.size) if a.kind == "whisper"
         else make_wav2vec2_classifier_dir(model))
    utts = read_corpus(a.corpus, audio_root=a.audio_root or a.corpus).utterances[: a.limit]
    scp, audio = decode_to_16k(utts, work)
    pl = child(["pipeline", str(model), str(scp), a.device, str(a.batch_size), str(a.num_workers)])
    bs = child(["batchser", str(model), str(scp), a.device, str(work / "out")])
    import batchser

    df = batchser.open_results(work / "out").labels.set_index("utt_id")
    from batchser.models import normalise_label  # the pipeline reports id2label as spelt

    same, maxd = 0, 0.0
    for k, ref in pl["results"].items():
        row = df.loc[k]
        same += int(row.label == normalise_label(max(ref, key=ref.get)))
        maxd = max(maxd, float(max(abs(row[f"score_{normalise_label(l)}"] - v) for l, v in ref.items())))
    n = len(pl["results"])
    out = {"date": time.strftime("%Y-%m-%d"), "device": a.device, "model": f"{a.kind} {a.size} (random weights)",
           "utterances": n, "audio_seconds": audio,
           "pipeline": {k: pl[k] for k in ("wall_s", "run_s", "peak_rss_mb")} | {"utt_per_s": n / pl["run_s"],
                                                                               "x_rt": audio / pl["run_s"]},
           "batchser": {k: bs[k] for k in ("wall_s", "run_s", "peak_rss_mb", "padding_efficiency")}
           | {"utt_per_s": n / bs["run_s"], "x_rt": audio / bs["run_s"]},
           "ratio_batchser_over_pipeline": pl["run_s"] / bs["run_s"],
           "agreement": {"labels_identical": f"{same}/{n}", "max_score_diff": maxd}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
