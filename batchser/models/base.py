"""What every model back-end gives the model worker: one interface, several back-ends behind it.

A back-end (:class:`Backend`) takes a batch of 16 kHz mono waveforms of any lengths and returns
per-utterance results equal to its reference implementation run one utterance at a time:
padding and batch composition never change a result. ``emotion2vec.py`` and ``hf.py``
implement it; the model worker (``batchser.worker``) and the pipeline use only what is written
here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

# Spellings seen in checkpoints' label sets, mapped to one clean English name.
_ALIASES = {
    "<unk>": "unknown", "unk": "unknown", "ang": "angry", "anger": "angry", "hap": "happy",
    "happiness": "happy", "neu": "neutral", "sad": "sad", "sadness": "sad", "fear": "fearful",
    "disgust": "disgusted", "surprise": "surprised", "sur": "surprised", "dis": "disgusted",
    "fea": "fearful",
}


def normalise_label(token: str) -> str:
    """Clean English class name from a checkpoint's token ("生气/angry" -> "angry", "<unk>" -> "unknown").

    The result is lower case, with characters other than letters, digits and ``_`` replaced by
    ``_``, so it can name a column (``score_<label>``).
    """
    t = token.strip()
    if "/" in t:
        t = t.rsplit("/", 1)[1]
    t = t.strip().lower()
    t = _ALIASES.get(t, t)
    t = re.sub(r"[^0-9a-z_]+", "_", t).strip("_")
    return t or "unknown"


# What a model's head outputs (``config.problem_type`` of a transformers classifier):
#   single_label: softmax over classes, the top class is the label
#   multi_label:  a sigmoid per class (several may hold), no single label unless a threshold picks them
#   regression:   raw values per dimension (arousal, valence, ...), no label
#   none:         no head (an embedding-only model)
HEAD_KINDS = ("single_label", "multi_label", "regression", "none")


def head_kind_of(problem_type: Optional[str], num_labels: int) -> str:
    """A transformers config's ``problem_type`` as a head kind. Unset means what transformers'
    own loss assumes: regression for one output, single-label classification otherwise."""
    if problem_type == "regression" or (problem_type is None and num_labels == 1):
        return "regression"
    if problem_type == "multi_label_classification":
        return "multi_label"
    return "single_label"


def activate(logits, head_kind: str):
    """The head's logits (a torch tensor) as the scores ``head_kind`` reports."""
    import torch

    if head_kind == "multi_label":
        return torch.sigmoid(logits)
    if head_kind == "regression":
        return logits
    return torch.softmax(logits, dim=-1)


# extractor arguments batchser sets itself: batching and equality with the references depend on them
FE_OWN_KEYS = ("raw_speech", "sampling_rate", "return_tensors", "padding", "device", "return_attention_mask",
               "max_length", "pad_to_multiple_of")


def parse_fe_options(items) -> Dict[str, Any]:
    """``--fe-option KEY=VALUE`` strings -> a dict; VALUE as JSON where it parses (true, 3, 0.5,
    "x"; also True/False/None), else the string itself."""
    import json

    out: Dict[str, Any] = {}
    for it in items or ():
        key, sep, raw = str(it).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--fe-option {it!r}: expected KEY=VALUE, e.g. do_normalize=true")
        low = raw.strip()
        low = {"True": "true", "False": "false", "None": "null"}.get(low, low)
        try:
            out[key] = json.loads(low)
        except ValueError:
            out[key] = raw
    return out


def check_fe_options(fe, options: Dict[str, Any], model: str) -> Dict[str, Any]:
    """Refuse keys that the feature extractor's ``__call__`` does not take (many extractors
    swallow unknown keywords silently: a typo would change nothing and say nothing) and keys
    batchser sets itself."""
    import inspect

    if not options:
        return {}
    params = inspect.signature(fe.__call__).parameters
    known = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    for k in options:
        if k in FE_OWN_KEYS:
            raise ValueError(f"--fe-option {k}: batchser sets {k} itself (it decides batching and padding)")
        if k not in known:
            raise ValueError(f"--fe-option {k}: {type(fe).__name__} of {model} takes no {k!r} when called; it takes: "
                             + ", ".join(n for n in known if n not in FE_OWN_KEYS))
    return dict(options)


@dataclass
class ModelInfo:
    """Where the weights came from, for the manifest."""

    id: str
    path: str
    backend: str = ""
    revision: Optional[str] = None
    sha256: Optional[str] = None
    test_model: bool = False


@dataclass
class BatchOutput:
    """One batch's results, rows in the order the waveforms were given."""

    embeddings: np.ndarray  # B x D, mean of valid frames
    # B x C, by the back-end's head_kind: softmax (single_label), sigmoid per class (multi_label),
    # raw outputs (regression); None for embedding-only models
    scores: Optional[np.ndarray]
    frames: Optional[List[np.ndarray]] = field(default=None)  # per utterance, T_i x D


@runtime_checkable
class Backend(Protocol):
    """The interface between the model worker and a model."""

    name: str  # "emotion2vec" | "transformers"
    labels: List[str]  # class (or dimension) names, normalised: score_<label> / value_<label> columns; []: none
    head_kind: str  # one of HEAD_KINDS: what ``scores`` hold
    embed_dim: int  # utterance / frame embedding size
    sample_rate: int  # what forward() expects (batchser.audio.TARGET_SR)
    max_input_samples: Optional[int]  # longest input the model takes (Whisper: 30 s); None = any
    min_samples: int  # shortest input that yields one frame
    info: ModelInfo

    def forward(self, wavs: List[np.ndarray], frames: bool = False) -> BatchOutput:
        """Results for a batch of waveforms (float32, ``sample_rate``), rows in input order;
        ``frames`` also returns each utterance's frame embeddings."""
        ...

    def combine_windows(self, embeddings: np.ndarray, scores: Optional[np.ndarray],
                        frame_counts: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """One utterance's (embedding, scores) from the results of its windows (W x D, W x C)
        and the windows' frame counts."""
        ...


def pool_frames(frames, lengths, scores: Optional[np.ndarray], want_frames: bool) -> BatchOutput:
    """BatchOutput from padded frame embeddings (B x T x D torch tensor) and valid lengths:
    the utterance embedding is the mean over each row's valid frames only."""
    import torch

    fr = frames.float()
    valid = (torch.arange(fr.shape[1], device=fr.device)[None, :] < lengths[:, None]).to(fr.dtype)
    emb = (fr * valid[..., None]).sum(1) / lengths.clamp_min(1).to(fr.dtype)[:, None]
    frame_list = None
    if want_frames:
        f = fr.cpu().numpy()
        frame_list = [f[i, : int(lengths[i])] for i in range(f.shape[0])]
    return BatchOutput(embeddings=emb.cpu().numpy(), scores=scores, frames=frame_list)


def frame_weighted_mean(x: np.ndarray, frame_counts: np.ndarray) -> np.ndarray:
    """Mean of per-window rows weighted by their frame counts (= the mean over all frames)."""
    w = frame_counts.astype(np.float64)[:, None] / frame_counts.sum()
    return (x * w).sum(0).astype(np.float32)


def autocast(device, dtype: str):
    """AMP context for ``dtype`` ('float32' = none) on ``device``."""
    import contextlib

    import torch

    if dtype in ("float32", "int8"):  # int8: quantised layers, no AMP
        return contextlib.nullcontext()
    dt = {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    return torch.autocast(device_type=torch.device(device).type, dtype=dt)
