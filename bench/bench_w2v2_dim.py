"""audEERING's dimensional model: batchser's batched back-end vs the model card's own loop.

A random-weight model of the public checkpoint's real dimensions (``make-test-model --kind
w2v2-dim --size large-robust-12``: wav2vec2-large-robust pruned to 12 layers, ~165 M parameters)
runs the first ``--files`` RAVDESS files (or synthetic audio when ``../shared`` is absent): the
card's ``process_func`` one file at a time, and ``DimensionalBackend.forward`` in length-bucketed
batches (``--batch-seconds``), alternately ``--rounds`` times. Prints both times, the ratio and the
largest difference between their outputs.

    python bench/bench_w2v2_dim.py --files 24 --rounds 2
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RAVDESS = Path(os.environ.get("BATCHSER_SHARED", REPO.parent / "shared")) / "corpora" / "ravdess"


def load_waves(n: int):
    from batchser.audio import decode_utterance
    from batchser.corpus import read_corpus

    if (RAVDESS / "wav.scp").exists():
        c = read_corpus(str(RAVDESS), audio_root=str(RAVDESS))
        return [decode_utterance(u).wave for u in c.utterances[:n]]
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(rng.uniform(2, 5) * 16000))).astype(np.float32) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-seconds", type=float, default=32.0)
    a = ap.parse_args()
    from transformers import Wav2Vec2Processor
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    from batchser.batching import make_batches
    from batchser.models.w2v2_dim import DimensionalBackend, RegressionHead
    from batchser.testmodels import make_w2v2_dim_dir

    class EmotionModel(Wav2Vec2PreTrainedModel):  # the model card's class
        def __init__(self, config):
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values):
            h = torch.mean(self.wav2vec2(input_values)[0], dim=1)
            return h, self.classifier(h)

    waves = load_waves(a.files)
    secs = sum(len(w) for w in waves) / 16000
    with tempfile.TemporaryDirectory() as tmp:
        mdir = make_w2v2_dim_dir(Path(tmp) / "dim", size="large-robust-12")
        processor = Wav2Vec2Processor.from_pretrained(str(mdir))
        card = EmotionModel.from_pretrained(str(mdir)).eval()
        ours = DimensionalBackend(str(mdir))
        batches = make_batches([len(w) / 16000 for w in waves], a.batch_seconds, 8)

        def run_card():
            out = []
            for w in waves:
                y = processor(w, sampling_rate=16000)["input_values"][0].reshape(1, -1)
                with torch.no_grad():
                    out.append(card(torch.from_numpy(y))[1].numpy()[0])
            return np.stack(out)

        def run_ours():
            out = [None] * len(waves)
            for b in batches:
                r = ours.forward([waves[i] for i in b])
                for i, v in zip(b, r.scores):
                    out[i] = v
            return np.stack(out)

        t_card, t_ours = [], []
        for r in range(a.rounds):
            for name in (("card", "ours") if r % 2 == 0 else ("ours", "card")):
                t = time.perf_counter()
                res = run_card() if name == "card" else run_ours()
                (t_card if name == "card" else t_ours).append(time.perf_counter() - t)
                if name == "card":
                    ref = res
                else:
                    got = res
        diff = float(np.abs(ref - got).max())
        print(f"{len(waves)} files, {secs:.1f} s of audio, {torch.get_num_threads()} threads, {len(batches)} batches")
        print(f"card process_func loop: {min(t_card):.2f} s ({secs / min(t_card):.1f}x real time); batchser batched: "
              f"{min(t_ours):.2f} s ({secs / min(t_ours):.1f}x); ratio {min(t_card) / min(t_ours):.2f}x; "
              f"max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
