#!/usr/bin/env python3
"""Fine-tune a transformers audio classifier on a Kaldi data dir; the result runs in `batchser run`.

The Hugging Face audio-classification guide's recipe (AutoModelForAudioClassification + Trainer),
driven by a Kaldi data dir instead of a `datasets` hub set:

* labels from `utt2emo` (classes sorted; `--label-map` as in `batchser eval`, `-` drops a class);
* a speaker-independent held-out split from `utt2spk` (`--eval-speakers` of them, default about
  20%; a stratified 20% of utterances when there are fewer than 2 speakers);
* audio decoded by batchser's own loader (`batchser.audio.decode_utterance`: every wav.scp form,
  16 kHz mono, soxr), cut to `--max-seconds` as the guide's `max_length, truncation=True` does;
* `Trainer` with the usual options: `--bf16`, `--grad-accum`, `--batch-size`, `--lr`,
  `--epochs` or `--max-steps`, warm-up ratio 0.1, accuracy on the held-out part each epoch.

The output directory (`save_pretrained`: config.json with id2label, weights, the feature
extractor) is a model directory `batchser run --model OUT` takes unchanged, and `batchser eval`
scores its run. A base model built by `batchser make-test-model` stays a test model (its
BATCHSER_TEST_MODEL marker is copied): a few steps on random weights prove the plumbing only.

    python recipes/finetune/finetune.py data/train --model /models/wav2vec2-base --out exp/ft \
        --epochs 10 --batch-size 8 --grad-accum 4 --bf16
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def split(utts, labels, spk, n_eval_spk: int, seed: int):
    """Indices (train, eval): whole speakers held out; a stratified 20% without speakers."""
    rng = np.random.default_rng(seed)
    speakers = sorted({s for s in spk if s is not None})
    if len(speakers) >= 2 and all(s is not None for s in spk):
        k = n_eval_spk or max(1, int(round(0.2 * len(speakers))))
        held = set(rng.permutation(speakers)[:k].tolist())
        ev = [i for i, s in enumerate(spk) if s in held]
        return [i for i in range(len(utts)) if i not in set(ev)], ev, sorted(held)
    ev = []
    for c in sorted(set(labels)):
        idx = rng.permutation([i for i, l in enumerate(labels) if l == c])
        ev += idx[: max(1, int(round(0.2 * len(idx))))].tolist() if len(idx) > 1 else []
    return [i for i in range(len(utts)) if i not in set(ev)], sorted(ev), []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="Kaldi data dir (wav.scp, utt2emo; utt2spk for a speaker-independent split)")
    ap.add_argument("--model", required=True, help="base model: a transformers dir or hub id")
    ap.add_argument("--out", required=True, help="where the fine-tuned model is saved")
    ap.add_argument("--label-map", default=None, help="as batchser eval's --label-map")
    ap.add_argument("--audio-root", default=None)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--eval-speakers", type=int, default=0, help="speakers held out (default ~20%%)")
    ap.add_argument("--epochs", type=float, default=10.0)
    ap.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimiser steps (overrides --epochs)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPUs that support it)")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args(argv)

    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, Trainer, TrainingArguments

    from batchser.audio import TARGET_SR, decode_utterance
    from batchser.corpus import read_corpus
    from batchser.evaluate import apply_map, read_label_map

    corpus = read_corpus(a.data, audio_root=a.audio_root)
    mapping = read_label_map(a.label_map)
    utts, labels = [], []
    for u in corpus.utterances:
        lab = apply_map(u.ref_label, mapping) if u.ref_label else None
        if lab and lab != "-":
            utts.append(u)
            labels.append(lab)
    if len(set(labels)) < 2:
        sys.exit(f"{a.data}: needs an utt2emo with at least 2 classes (found {sorted(set(labels))})")
    classes = sorted(set(labels))
    label2id = {c: i for i, c in enumerate(classes)}
    train_idx, eval_idx, held = split(utts, labels, [u.spk for u in utts], a.eval_speakers, a.seed)
    print(f"{len(utts)} labelled utterances, {len(classes)} classes; train {len(train_idx)}, held out "
          f"{len(eval_idx)}" + (f" (speakers {', '.join(held)})" if held else " (stratified: no speakers)"))

    fe = AutoFeatureExtractor.from_pretrained(a.model)
    max_len = int(a.max_seconds * TARGET_SR)

    class KaldiAudio(torch.utils.data.Dataset):
        def __init__(self, idx):
            self.idx = idx

        def __len__(self):
            return len(self.idx)

        def __getitem__(self, k):
            i = self.idx[k]
            wave = decode_utterance(utts[i]).wave[:max_len]  # batchser's loader: any wav.scp form, 16 kHz mono
            feats = fe(wave, sampling_rate=TARGET_SR, max_length=max_len, truncation=True)
            key = "input_features" if "input_features" in feats else "input_values"
            return {key: np.asarray(feats[key][0], dtype=np.float32), "label": label2id[labels[i]]}

    def collate(items):
        key = "input_features" if "input_features" in items[0] else "input_values"
        if key == "input_features":  # Whisper: fixed 30-s features
            x = torch.as_tensor(np.stack([it[key] for it in items]))
            return {key: x, "labels": torch.tensor([it["label"] for it in items])}
        padded = fe.pad([{key: it[key]} for it in items], return_tensors="pt", return_attention_mask=True)
        out = {key: padded[key], "labels": torch.tensor([it["label"] for it in items])}
        if "attention_mask" in padded and getattr(fe, "return_attention_mask", False):
            out["attention_mask"] = padded["attention_mask"]
        return out

    model = AutoModelForAudioClassification.from_pretrained(
        a.model, num_labels=len(classes), label2id=label2id, id2label={i: c for c, i in label2id.items()},
        ignore_mismatched_sizes=True)

    def compute_metrics(p):
        pred = np.argmax(p.predictions, axis=1)
        return {"accuracy": float((pred == p.label_ids).mean())}

    import inspect

    # warm-up over the first 10% of steps: transformers 4 spells it warmup_ratio, 5 a float warmup_steps
    warm = ({"warmup_ratio": 0.1} if "warmup_ratio" in inspect.signature(TrainingArguments).parameters
            else {"warmup_steps": 0.1})
    args = TrainingArguments(
        output_dir=str(Path(a.out) / "checkpoints"), eval_strategy="epoch" if eval_idx else "no",
        save_strategy="no", learning_rate=a.lr, per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=a.batch_size, gradient_accumulation_steps=a.grad_accum,
        num_train_epochs=a.epochs, max_steps=a.max_steps, logging_steps=10, **warm,
        bf16=a.bf16, seed=a.seed, report_to=[], remove_unused_columns=False, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=KaldiAudio(train_idx),
                      eval_dataset=KaldiAudio(eval_idx) if eval_idx else None, data_collator=collate,
                      compute_metrics=compute_metrics)
    trainer.train()
    metrics = trainer.evaluate() if eval_idx else {}
    out = Path(a.out)
    trainer.save_model(str(out))
    fe.save_pretrained(str(out))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    base = Path(a.model)
    if (base / "BATCHSER_TEST_MODEL").exists():  # still random weights, a few steps on: a test model
        (out / "BATCHSER_TEST_MODEL").write_text(f"fine-tuned from the test model {base}\n")
    (out / "finetune.json").write_text(json.dumps(
        {"data": str(Path(a.data).resolve()), "base_model": a.model, "classes": classes,
         "train": len(train_idx), "held_out": len(eval_idx), "held_out_speakers": held, "label_map": mapping,
         "held_out_metrics": metrics, "args": vars(a)}, indent=2) + "\n")
    print(f"saved {out}: batchser run DATA --out OUT --model {out}" + (f"; held-out accuracy "
                                                                      f"{metrics.get('eval_accuracy', float('nan')):.3f}"
                                                                      if metrics else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
