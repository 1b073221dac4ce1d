"""``batchser explain OUT --llm MODEL`` (``batchser.explain``): an explanation in words for every labels row, written by a
language model from the row's label and scores and its interpretable features against the
speaker's (or the corpus') median: the SEmoLLM approach (shared/references/semollm-readme.md),
batched and resumable.

The prompt is a template file (``batchser/prompts/explain.txt``; ``--prompt`` for your own) filled
with ``str.format`` fields: ``{utt_id}``, ``{spk}``, ``{label}``, ``{score}``, ``{scores}``,
``{facts}`` (one line per fact), ``{baseline}`` ("speaker" or "corpus"), ``{duration}``. A
model with a chat template gets it as the user's message. Generation is greedy by default, with
left padding, so a batch gives the tokens one prompt at a time gives. Labels and scores are never
changed: the texts go to OUT/explanations/ (utt_id, prompt_sha256, model, text, error), one
atomic part at a time, through the store; a rerun continues where a killed one stopped.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .isolate import each_alone

DEFAULT_PROMPT = Path(__file__).parent / "prompts" / "explain.txt"
# (column, what it is, unit): the facts a prompt may state, when the run computed them
FACTS = [("f0_median_st", "median pitch", "st"), ("f0_range_st", "pitch range", "st"),
         ("f0_median_hz", "median F0", "Hz"), ("loud_mean_dbfs", "loudness", "dB"),
         ("loud_std_db", "loudness variation", "dB"), ("speech_rate_syl_s", "speaking rate", "syl/s"),
         ("pause_ratio", "share of pauses", ""), ("voiced_fraction", "voiced share", ""),
         ("egemaps_jitterLocal_sma3nz_amean", "jitter", ""), ("egemaps_shimmerLocaldB_sma3nz_amean", "shimmer", "dB"),
         ("egemaps_HNRdBACF_sma3nz_amean", "harmonics-to-noise ratio", "dB")]
NEEDS = "f0_median_st"  # without prosody columns there is nothing to explain from


class ExplainFailure(RuntimeError):
    """The language model failed on a batch and on each of its prompts alone: not one row's fault."""


def baselines(df) -> Tuple[Dict[object, Dict[str, float]], str]:
    """Medians of the fact columns per speaker (every row has one), else over the corpus."""
    cols = [c for c, _, _ in FACTS if c in df.columns]
    if "spk" in df.columns and df.spk.notna().all():
        return {k: v for k, v in df.groupby("spk")[cols].median().to_dict("index").items()}, "speaker"
    return {None: df[cols].median().to_dict()}, "corpus"


def facts_text(row: Dict, base: Dict[str, float], what: str) -> str:
    lines = []
    for col, name, unit in FACTS:
        v, b = row.get(col), base.get(col)
        if v is None or not np.isfinite(v):
            continue
        u = f" {unit}" if unit else ""
        if b is not None and np.isfinite(b):
            lines.append(f"- {name}: {v:.2f}{u} ({what} median {b:.2f}{u}, {v - b:+.2f})")
        else:
            lines.append(f"- {name}: {v:.2f}{u}")
    f0 = row.get("f0_median_hz")
    if f0 is not None and np.isfinite(f0):
        lines.append(f"- voice: {'low' if f0 < 165 else 'high'}-pitched ({f0:.0f} Hz; below 165 Hz is typical of "
                     "male voices)")
    return "\n".join(lines) if lines else "- none measured (no voiced speech)"


def prompts_of(df, template: str) -> List[str]:
    """One filled template per row of ``df`` (the labels table of a run with --features)."""
    base, what = baselines(df)
    score_cols = [c for c in df.columns if c.startswith("score_")]
    out = []
    for r in df.to_dict("records"):
        b = base[r.get("spk")] if what == "speaker" else base[None]
        scores = ", ".join(f"{c[len('score_'):]} {r[c]:.2f}" for c in score_cols if r.get(c) is not None)
        score = r.get("score")
        out.append(template.format(utt_id=r["utt_id"], spk=r.get("spk"), label=r.get("label"),
                                   score=float(score) if score is not None else float("nan"), scores=scores,
                                   facts=facts_text(r, b, what), baseline=what, duration=r.get("duration")))
    return out


@dataclass
class Generator:
    """A causal LM and its tokenizer: greedy (or beam) generation for a batch of prompts."""

    model: object
    tokenizer: object
    max_new_tokens: int = 96
    chat: bool = True

    def render(self, prompt: str) -> str:
        t = self.tokenizer
        if self.chat and getattr(t, "chat_template", None):
            return t.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)
        return prompt

    def __call__(self, prompts: Sequence[str]) -> List[str]:
        import torch

        t = self.tokenizer
        enc = t([self.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=t.pad_token_id)
        return [s.strip() for s in t.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]


def identify(llm: str, hub: str = "auto") -> Dict:
    """Where ``llm`` (a local directory or hub id) is and what identifies its weights, without
    loading it (a rerun with nothing left to do, or with other settings, loads nothing)."""
    from .models.resolve import locate, weights_sha256

    mid, path, _ = locate(llm, hub, what="--llm")
    return {"id": mid, "path": str(path), "weights_sha256": weights_sha256(str(path)),
            "test_model": (Path(path) / "BATCHSER_TEST_MODEL").exists()}


def load_generator(path: str, *, device: str = "cpu", dtype: str = "float32", max_new_tokens: int = 96) -> Generator:
    """The causal LM in directory ``path`` and its tokenizer (left padding), on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"  # new tokens follow every prompt directly
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    td = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=td).to(device).eval()
    return Generator(model, tok, max_new_tokens)


def generate_items(gen: Callable[[Sequence[str]], List[str]], prompts: List[str], ids: List[str]
                   ) -> Tuple[List[Optional[str]], List[Optional[str]]]:
    """Texts, or per prompt the error: a failing batch is run again one prompt at a time."""
    return each_alone(gen, prompts, ids, what="language model's generation", failure=ExplainFailure)


@dataclass
class Explained:
    written: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    dir: str = ""


def explain(out_dir: str, *, llm: str, prompt: Optional[str] = None, max_new_tokens: int = 96, batch_size: int = 8,
            device: str = "auto", dtype: str = "auto", part_size: int = 200, log: Callable[[str], None] = print,
            generator: Optional[Generator] = None) -> Explained:
    """Explanations of every labels row of ``out_dir`` not explained yet (see the module's doc).

    Raises:
        ValueError: the run has no prosody features (names the flag to add), or OUT/explanations/
            was made with another model, prompt or setting.
        ExplainFailure: the model fails on everything (resumable: what was written is kept).
    """
    from .policy import resolve_device, resolve_dtype
    from .store import ExplanationsWriter, OutputLock, open_results

    res = open_results(out_dir)
    df = res.labels
    if NEEDS not in df.columns:
        raise ValueError(f"{out_dir} has no prosody features to explain from: run it again with --features prosody "
                         "(or --features prosody,egemaps), e.g. batchser run DATA --out OUT --features prosody")
    template = Path(prompt).read_text(encoding="utf-8") if prompt else DEFAULT_PROMPT.read_text(encoding="utf-8")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if dt == "int8":
        raise ValueError("--dtype int8 is for emotion2vec; explain takes float32, bfloat16 or float16")
    info = identify(llm) if generator is None else {"id": llm, "weights_sha256": None, "test_model": False}
    settings = {"model": info["weights_sha256"] or info["id"], "prompt_sha256": sha(template),
                "max_new_tokens": max_new_tokens, "dtype": dt, "greedy": True}
    t0 = time.time()
    with OutputLock(res.dir, command=["batchser", "explain", str(out_dir)], log=log):
        w = ExplanationsWriter(res.dir, settings=settings, part_size=part_size)  # other settings: refused here
        todo = df[~w.done(df.utt_id.tolist())]
        r = Explained(skipped=len(df) - len(todo), dir=str(w.path))
        if len(todo) and generator is None:  # nothing left to do: no model is loaded
            if info["test_model"]:
                log(f"note: {llm} is a random-weight TEST language model: its explanations are gibberish")
            generator = load_generator(info["path"], device=dev, dtype=dt, max_new_tokens=max_new_tokens)
        prompts, ids = prompts_of(todo, template), todo.utt_id.tolist()
        order = np.argsort([-len(p) for p in prompts], kind="stable")  # similar lengths pad little
        try:
            for k in range(0, len(order), batch_size):
                sel = order[k:k + batch_size]
                texts, errs = generate_items(generator, [prompts[i] for i in sel], [ids[i] for i in sel])
                w.add([{"utt_id": ids[i], "prompt_sha256": sha(prompts[i]), "model": info["id"], "text": t, "error": e}
                       for i, t, e in zip(sel, texts, errs)])
                r.written += sum(e is None for e in errs)
                r.failed += sum(e is not None for e in errs)
        finally:
            w.flush()
    r.seconds = time.time() - t0
    return r


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
