"""emotion2vec / emotion2vec+ through funasr, run in padded batches with per-utterance results.

funasr's ``Emotion2vec.inference`` runs one utterance at a time with ``padding_mask=None``.
Handing it a padded batch is wrong in several places (measured: embeddings off by up to
0.33). This module reuses funasr's own sub-modules and weights, and fixes each place where
padding would leak into valid frames:

1. waveform normalisation (``F.layer_norm`` over the whole utterance) -> over valid samples only;
2. conv feature extractor: valid convolutions, so frames inside the output length never see
   padding, *except* with a GroupNorm first layer (``extractor_mode: default``), which
   normalises over time: that layer is then run per utterance;
3. the convolutional relative positional encoder ("same" padding, several layers): padded
   frames are zeroed before every Conv1d, as the reference's implicit zero padding would be;
4. attention: padded keys are masked (funasr's own ``AltAttention`` does this given the mask);
5. pooling and the classifier head: mean over valid frames only.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .base import BatchOutput, ModelInfo, normalise_label


@dataclass
class _Parts:
    enc: torch.nn.Module
    conv_spec: list
    group_norm_first: bool
    num_extra: int


def _parts(model: torch.nn.Module) -> _Parts:
    enc = model.modality_encoders["AUDIO"]
    spec = list(enc.feature_enc_layers)
    first = enc.local_encoder.conv_layers[0]
    gn = any(isinstance(m, torch.nn.GroupNorm) for m in first.modules())
    return _Parts(enc=enc, conv_spec=spec, group_norm_first=gn,
                  num_extra=int(enc.modality_cfg.num_extra_tokens))


def conv_output_lengths(lengths: torch.Tensor, conv_spec) -> torch.Tensor:
    """Frames the conv feature extractor yields for ``lengths`` samples (no padding, floor)."""
    out = lengths.to(torch.long)
    for _dim, k, s in conv_spec:
        out = torch.div(out - k, s, rounding_mode="floor") + 1
    return out.clamp_min(0)


def min_samples(conv_spec) -> int:
    """Shortest input (samples) that yields one frame."""
    n = 1
    for _dim, k, s in reversed(conv_spec):
        n = (n - 1) * s + k
    return n


def normalise_waveforms(wavs: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance zero-mean/unit-variance over valid samples; padding stays 0.

    Equals ``F.layer_norm(x, x.shape)`` on each unpadded utterance (biased variance, eps 1e-5).
    """
    T = wavs.shape[1]
    valid = torch.arange(T, device=wavs.device)[None, :] < lengths[:, None]
    n = lengths.clamp_min(1).to(wavs.dtype)[:, None]
    x = wavs.masked_fill(~valid, 0.0)
    mean = x.sum(1, keepdim=True) / n
    var = ((x - mean).masked_fill(~valid, 0.0) ** 2).sum(1, keepdim=True) / n
    y = (x - mean) * torch.rsqrt(var + eps)
    return y.masked_fill(~valid, 0.0)


@contextlib.contextmanager
def _zero_padded_conv_inputs(module: torch.nn.Module, pad_mask: torch.Tensor):
    """Zero the padded time steps of the input of every Conv1d inside ``module``.

    ``pad_mask`` is B x T (True = padding). Conv1d inputs are B x C x T.
    """
    def hook(_mod, args):
        x = args[0]
        return (x.masked_fill(pad_mask[:, None, : x.shape[-1]], 0.0),) + tuple(args[1:])

    handles = [m.register_forward_pre_hook(hook) for m in module.modules()
               if isinstance(m, torch.nn.Conv1d)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _local_features(parts: _Parts, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    enc = parts.enc
    if not parts.group_norm_first:
        return enc.local_features(wavs)
    # GroupNorm over time would mix padding into statistics: run each utterance alone.
    outs = [enc.local_features(wavs[i : i + 1, : int(lengths[i])]) for i in range(wavs.shape[0])]
    T = max(o.shape[1] for o in outs)
    return torch.cat([F.pad(o, (0, 0, 0, T - o.shape[1])) for o in outs], 0)


@torch.no_grad()
def batched_forward(model: torch.nn.Module, wavs: torch.Tensor, lengths: torch.Tensor):
    """Run emotion2vec on a padded batch.

    Returns ``(frames B x T' x D, frame_lengths B, logits B x V or None)`` where frames past
    ``frame_lengths`` are padding (undefined values) and logits come from the mean of valid frames.
    """
    parts = _parts(model)
    enc = parts.enc
    cfg = model.cfg
    lengths = lengths.to(wavs.device)
    x = normalise_waveforms(wavs, lengths) if cfg.get("normalize", False) else wavs
    x = _local_features(parts, x, lengths)  # B x T' x D
    B, T, _ = x.shape
    flen = conv_output_lengths(lengths, parts.conv_spec).clamp_max(T)
    pad = torch.arange(T, device=x.device)[None, :] >= flen[:, None]

    if enc.relative_positional_encoder is not None:
        with _zero_padded_conv_inputs(enc.relative_positional_encoder, pad):
            x_pos = enc.relative_positional_encoder(x)
        x = x + x_pos

    alibi_bias = None
    alibi_scale = enc.alibi_scale
    if enc.get_alibi_bias is not None:
        alibi_bias = enc.get_alibi_bias(
            batch_size=B, time_steps=T, heads=enc.modality_cfg.num_alibi_heads,
            dtype=torch.float32, device=x.device,
        )
        if alibi_scale is not None:
            alibi_scale = alibi_scale.clamp_min(0)
            if alibi_scale.size(0) == 1:
                alibi_bias = alibi_bias * alibi_scale.squeeze(0).type_as(alibi_bias)
                alibi_scale = None

    key_pad = pad
    if enc.extra_tokens is not None:
        n = enc.extra_tokens.size(1)
        x = torch.cat([enc.extra_tokens.expand(B, -1, -1), x], dim=1)
        key_pad = F.pad(pad, (n, 0))
        if alibi_bias is not None:
            alibi_bias = F.pad(alibi_bias, (n, 0, n, 0))

    prenet = enc.modality_cfg.prenet_depth
    x = enc.context_encoder(
        x, key_pad, alibi_bias,
        alibi_scale[:prenet] if alibi_scale is not None else None,
    )
    main_scale = alibi_scale[prenet:] if alibi_scale is not None and alibi_scale.size(0) > 1 else alibi_scale
    for i, blk in enumerate(model.blocks):
        ab = alibi_bias
        if ab is not None and main_scale is not None:
            scale = main_scale[i] if main_scale.size(0) > 1 else main_scale.squeeze(0)
            ab = ab * scale.type_as(ab)
        x, _ = blk(x, padding_mask=key_pad, alibi_bias=ab)
    if model.norm is not None:
        x = model.norm(x)
    frames = x[:, parts.num_extra :]

    logits = None
    if model.proj is not None:
        valid = (~pad).to(frames.dtype)[..., None]
        pooled = (frames * valid).sum(1) / flen.clamp_min(1).to(frames.dtype)[:, None]
        logits = model.proj(pooled)
    return frames, flen, logits


def label_list(tokens: List[str]) -> List[Optional[str]]:
    """Class names from funasr's token list; ``None`` marks 'unuse*' slots funasr drops."""
    return [None if t.startswith("unuse") else normalise_label(t) for t in tokens]


def load_funasr(model_dir: str, device: str):
    """``funasr.AutoModel(model=DIR)``: the loader real checkpoints use, with its chatter muted."""
    import io
    import logging

    with contextlib.redirect_stdout(io.StringIO()):
        from funasr import AutoModel

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            # disable_update: no hub call to check for funasr updates; a local dir: no download.
            # ncpu: keep torch's own thread count (funasr would otherwise force 4 threads).
            return AutoModel(model=str(model_dir), device=device, disable_update=True, disable_pbar=True,
                             ncpu=torch.get_num_threads())
        finally:
            root.setLevel(level)


class Emotion2vecBackend:
    """Model worker for emotion2vec(+) checkpoints in funasr's layout."""

    name = "emotion2vec"
    sample_rate = 16000

    def __init__(self, model_dir: str, device: str = "cpu", dtype: str = "float32", info: Optional[ModelInfo] = None):
        self.device = torch.device(device)
        am = load_funasr(model_dir, str(self.device))
        self.model = am.model.eval()
        tok = am.kwargs.get("tokenizer")
        tokens = list(tok.token_list) if tok is not None and hasattr(tok, "token_list") else []
        self.raw_labels = label_list(tokens) if self.model.proj is not None else []
        self.keep = [i for i, l in enumerate(self.raw_labels) if l is not None]
        self.labels = [self.raw_labels[i] for i in self.keep]
        self.dtype = dtype
        self.conv_spec = _parts(self.model).conv_spec
        self.min_samples = min_samples(self.conv_spec)
        self.info = info or ModelInfo(id=str(model_dir), path=str(model_dir))
        self.embed_dim = int(self.model.cfg.get("embed_dim"))

    def autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        dt = {"float16": torch.float16, "bfloat16": torch.bfloat16}[self.dtype]
        return torch.autocast(device_type=self.device.type, dtype=dt)

    def forward(self, wavs: List[np.ndarray], frames: bool = False) -> BatchOutput:
        """Run one batch of 16 kHz mono float32 waveforms (any lengths >= ``min_samples``)."""
        lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
        T = int(lengths.max())
        batch = torch.zeros(len(wavs), T, dtype=torch.float32)
        for i, w in enumerate(wavs):
            batch[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        with self.autocast():
            fr, flen, logits = batched_forward(self.model, batch, lengths)
        fr = fr.float()
        valid = (torch.arange(fr.shape[1], device=fr.device)[None, :] < flen[:, None]).to(fr.dtype)
        emb = (fr * valid[..., None]).sum(1) / flen.clamp_min(1).to(fr.dtype)[:, None]
        scores = None
        if logits is not None:
            lg = logits.float()[:, self.keep]
            scores = torch.softmax(lg, dim=-1).cpu().numpy()
        frame_list = None
        if frames:
            fr_cpu = fr.cpu().numpy()
            frame_list = [fr_cpu[i, : int(flen[i])] for i in range(len(wavs))]
        return BatchOutput(embeddings=emb.cpu().numpy(), scores=scores, frames=frame_list)
