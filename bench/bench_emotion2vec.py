#!/usr/bin/env python3
"""batchser vs funasr's own loop on the same corpus and the same model directory, in one run.

    python bench/bench_emotion2vec.py --corpus ../shared/corpora/ravdess --size base

Steps: (1) build (or reuse) a random-weight emotion2vec+ model of the requested size (speed does
not depend on the weights' values); (2) decode the corpus once to 16 kHz float WAVs so both tools
read identical audio; (3) time funasr's `AutoModel(model=DIR).generate(input=wav.scp, output_dir=...)`
(what the model card tells users to do) and `batchser run` on that copy, each in its own process
(peak RSS per tool); (4) time `batchser run` on the original files too (decode + resample included);
(5) check the answers agree (labels identical, max score and embedding differences); (6) count the
model's FLOPs per audio second (torch.utils.flop_counter) and report utilisation: achieved model
FLOP/s over this machine's GEMM rate (measured fp32 sgemm on a CPU, data-sheet dense bf16 peak on
a GPU), end to end and within the model's share of the run; batchser's time split (waiting for
audio / model / writing) shows whether the loader keeps up.
Prints a table and writes bench_result.json into --work.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _child import decode_to_16k, run_child  # noqa: E402


def worker_funasr(model_dir: str, scp: str, out: str, device: str) -> dict:
    import contextlib
    import io

    t0 = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        import torch
        from funasr import AutoModel

        # same torch thread count as batchser uses (funasr's default would force 4 threads)
        am = AutoModel(model=model_dir, device=device, disable_update=True, disable_pbar=True,
                       ncpu=torch.get_num_threads())
    t1 = time.time()
    res = am.generate(input=scp, output_dir=out, granularity="utterance", extract_embedding=True)
    t2 = time.time()
    return {"load_s": t1 - t0, "run_s": t2 - t0,
            "results": {r["key"]: {"scores": list(map(float, r["scores"])),
                                   "feats": np.asarray(r["feats"]).tolist()} for r in res}}


def worker_batchser(model_dir: str, scp: str, out: str, device: str, extra: list) -> dict:
    from batchser.runner import RunConfig, run

    t0 = time.time()
    kw = dict(zip(extra[::2], extra[1::2]))
    cfg = RunConfig(input=scp, out=out, model=model_dir, device=device, overwrite=True, progress=False,
                    audio_root=kw.get("audio_root"),
                    batch_seconds=float(kw["batch_seconds"]) if kw.get("batch_seconds") else None,
                    num_workers=int(kw.get("num_workers", -1)), dtype=kw.get("dtype", "auto"))
    s = run(cfg, log=lambda *_: None)
    return {"run_s": time.time() - t0, "n_ok": s.n_ok, "n_errors": s.n_errors,
            "padding_efficiency": s.padding_efficiency,
            "time_split_s": {"waiting_for_audio": s.loader_wait_seconds, "model": s.model_seconds,
                             "writing": s.write_seconds}}


# dense bf16 tensor-core peaks (no sparsity), FLOP/s, from NVIDIA's data sheets
GPU_BF16_PEAK = {"H100 SXM": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H200": 989e12,
                 "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def worker_flops(model_dir: str, device: str) -> dict:
    """FLOPs of one forward per audio second (torch.utils.flop_counter on a 10-s input) and this
    machine's GEMM rate: the measured fp32 sgemm rate on a CPU, the data-sheet bf16 peak on a GPU
    (falling back to a measured bf16 GEMM rate for a GPU not in the table)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from batchser.models.emotion2vec import Emotion2vecBackend

    be = Emotion2vecBackend(model_dir, device="cpu")
    wav = np.random.default_rng(0).standard_normal(160000).astype(np.float32) * 0.1
    with FlopCounterMode(display=False) as fc:
        be.forward([wav])
    per_s = fc.get_total_flops() / 10.0
    out = {"model_flops_per_audio_s": per_s}
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_BF16_PEAK.items() if all(w in name for w in k.split())), None)
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        a @ a
        torch.cuda.synchronize()
        t = time.time()
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
        out.update(gpu=name, peak_flops=peak, measured_gemm_flops=20 * 2 * 8192 ** 3 / (time.time() - t),
                   peak_source="data sheet, dense bf16" if peak else "measured bf16 GEMM")
        out["peak_flops"] = peak or out["measured_gemm_flops"]
    else:
        # best of several runs over the model's own GEMM shapes (rows x in -> out): the rate this
        # CPU's BLAS reaches in the most favourable case, as a stand-in for a peak
        rate = 0.0
        for m, k, n in ((2048, 1536, 512), (1400, 768, 3072), (1400, 3072, 768)):
            a, b = torch.randn(m, k), torch.randn(k, n)
            for _ in range(5):
                t = time.perf_counter()
                a @ b
                rate = max(rate, 2 * m * k * n / (time.perf_counter() - t))
        out.update(peak_flops=rate, measured_gemm_flops=rate,
                   peak_source="best measured fp32 GEMM on the model's shapes")
    return out


def synthetic_long_tail(utts, n: int, work: Path):
    """N clips of real speech with a long-tail length mix, as 16 kHz WAVs (seeded, repeatable)."""
    import soundfile as sf

    from batchser.audio import load_utterance
    from batchser.corpus import AudioSource, Utterance

    rng = np.random.default_rng(0)
    speech = np.concatenate([load_utterance(u) for u in utts])
    d = work / "synthetic"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        secs = rng.uniform(20, 60) if rng.random() < 0.1 else rng.uniform(1, 5)
        k = int(secs * 16000)
        a = int(rng.integers(0, len(speech)))
        clip = np.take(speech, np.arange(a, a + k), mode="wrap")
        p = d / f"syn{i:05d}.wav"
        sf.write(str(p), clip, 16000, subtype="FLOAT")
        out.append(Utterance(utt_id=f"syn{i:05d}", rec_id=f"syn{i:05d}", source=AudioSource("file", str(p))))
    return out


def child(role: str, args: list) -> dict:
    """Run one tool in a fresh process; its JSON plus wall time (and the peak RSS it reports)."""
    return run_child(__file__, ["--role", role, "--", *args])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", default=str(HERE.parent.parent / "shared" / "corpora" / "ravdess"))
    ap.add_argument("--audio-root", default=None, help="relative wav.scp paths resolve here (default: the corpus)")
    ap.add_argument("--size", default="base", choices=["tiny", "base", "large"])
    ap.add_argument("--work", default="/tmp/batchser-bench")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N utterances")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-seconds", type=float, default=0, help="0: batchser's default for the device")
    ap.add_argument("--num-workers", type=int, default=-1)
    ap.add_argument("--synthetic", type=int, default=0,
                    help="instead of the corpus as is, N clips cut from it: ~90%% of 1-5 s, ~10%% of 20-60 s "
                         "(a long-tail mix; longer clips loop the speech)")
    ap.add_argument("--dtype", default="auto", help="batchser's --dtype (funasr runs float32): e.g. int8 on a CPU")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run funasr and batchser alternately N times; report each one's median run")
    ap.add_argument("rest", nargs="*")
    a = ap.parse_args()

    if a.role:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if a.role == "funasr":
            r = worker_funasr(*a.rest[:4])
        elif a.role == "flops":
            r = worker_flops(*a.rest[:2])
        else:
            r = worker_batchser(*a.rest[:4], a.rest[4:])
        r["peak_rss_mb"] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, usage.ru_maxrss) / 1024
        print(json.dumps(r))
        return

    from batchser.corpus import read_corpus
    from batchser.testmodels import make_emotion2vec_dir

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model = work / f"e2v_{a.size}"
    if not (model / "model.pt").exists():
        make_emotion2vec_dir(model, size=a.size, seed=0)
    corpus = read_corpus(a.corpus, audio_root=a.audio_root or a.corpus)
    utts = corpus.utterances[: a.limit] if a.limit else corpus.utterances
    if a.synthetic:
        utts = synthetic_long_tail(utts, a.synthetic, work)
    # the original corpus, paths made absolute, for batchser end to end
    orig = work / "orig"
    orig.mkdir(exist_ok=True)
    (orig / "wav.scp").write_text("".join(f"{u.utt_id} {u.source.value}\n" for u in utts))
    # identical 16 kHz audio for both tools
    c16 = work / "c16"
    _, audio_s = decode_to_16k(utts, c16)

    common = [str(model)]
    opts = ["batch_seconds", str(a.batch_seconds), "num_workers", str(a.num_workers), "dtype", a.dtype]
    # alternate the two tools --repeat times and keep each one's median run: a shared machine's
    # speed drifts by several percent over minutes, which one pair of runs would show as a ratio
    fus, bss = [], []
    for _ in range(a.repeat):
        fus.append(child("funasr", common + [str(c16 / "wav.scp"), str(work / "out_funasr"), a.device]))
        bss.append(child("batchser", common + [str(c16 / "wav.scp"), str(work / "out_bs16"), a.device] + opts))
    fu = sorted(fus, key=lambda r: r["run_s"])[(len(fus) - 1) // 2]
    bs = sorted(bss, key=lambda r: r["run_s"])[(len(bss) - 1) // 2]
    bo = child("batchser", common + [str(orig / "wav.scp"), str(work / "out_bsorig"), a.device] + opts)
    fl = child("flops", [str(model), a.device])

    import batchser

    res = batchser.open_results(work / "out_bs16")
    df = res.labels.set_index("utt_id")
    emb = res.embeddings()
    labels = [c[len("score_"):] for c in df.columns if c.startswith("score_")]
    same, max_ds, max_de, min_cos = 0, 0.0, 0.0, 1.0
    for k, ref in fu["results"].items():
        row = df.loc[k]
        s_bs = np.array([row[f"score_{l}"] for l in labels])
        s_fu = np.array(ref["scores"])
        same += int(np.argmax(s_bs) == np.argmax(s_fu))
        max_ds = max(max_ds, float(np.abs(s_bs - s_fu).max()))
        e_bs, e_fu = emb[df.index.get_loc(k)], np.array(ref["feats"])
        max_de = max(max_de, float(np.abs(e_bs - e_fu).max()))
        min_cos = min(min_cos, float(e_bs @ e_fu / np.linalg.norm(e_bs) / np.linalg.norm(e_fu)))
    n = len(fu["results"])
    out = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPU cores, {a.device}",
        "model": f"emotion2vec+ {a.size} (random weights)", "batchser_dtype": a.dtype, "utterances": n, "audio_seconds": audio_s,
        "funasr_loop": {"wall_s": fu["wall_s"], "run_s": fu["run_s"], "x_rt": audio_s / fu["run_s"],
                        "utt_per_s": n / fu["run_s"], "peak_rss_mb": fu["peak_rss_mb"]},
        "batchser_16k": {"wall_s": bs["wall_s"], "run_s": bs["run_s"], "x_rt": audio_s / bs["run_s"],
                         "utt_per_s": n / bs["run_s"], "peak_rss_mb": bs["peak_rss_mb"],
                         "padding_efficiency": bs["padding_efficiency"]},
        "batchser_original_files": {"wall_s": bo["wall_s"], "run_s": bo["run_s"], "x_rt": audio_s / bo["run_s"],
                                    "peak_rss_mb": bo["peak_rss_mb"]},
        "model_flops": {
            "per_audio_second": fl["model_flops_per_audio_s"],
            "gemm_rate_reference": fl["peak_flops"], "reference": fl["peak_source"],
            # model FLOPs done per wall second of the whole run, and of the model's own time
            "utilisation_end_to_end": fl["model_flops_per_audio_s"] * audio_s / bs["run_s"] / fl["peak_flops"],
            "utilisation_in_forward": fl["model_flops_per_audio_s"] * audio_s / bs["time_split_s"]["model"]
            / fl["peak_flops"],
        },
        "batchser_time_split_s": bs["time_split_s"],
        "runs_s": {"funasr_loop": [r["run_s"] for r in fus], "batchser_16k": [r["run_s"] for r in bss]},
        "ratio_batchser_over_funasr_run": fu["run_s"] / bs["run_s"],
        "ratio_batchser_over_funasr_wall": fu["wall_s"] / bs["wall_s"],
        "agreement": {"labels_identical": f"{same}/{n}", "max_score_diff": max_ds, "max_embedding_diff": max_de,
                      "min_embedding_cosine": min_cos},
    }
    (work / "bench_result.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
