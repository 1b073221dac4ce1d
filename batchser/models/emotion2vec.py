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
4. attention: padded keys are masked. funasr's ``AltAttention`` materialises a B x H x T x T
   ALiBi bias and score matrix (10 GB for one 5-minute utterance with 12 heads); we compute
   the same attention in query blocks with ``scaled_dot_product_attention``, building each
   block's ALiBi bias on the fly, so memory grows with T x block, not T x T;
5. pooling and the classifier head: mean over valid frames only.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import TARGET_SR
from ..policy import check_dtype
from .base import BatchOutput, ModelInfo, autocast, frame_weighted_mean, normalise_label, pool_frames


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
    plan = _channels_last_plan(enc)
    if plan is not None:
        return _channels_last_features(enc, plan, parts.conv_spec, wavs, lengths)
    if not parts.group_norm_first:
        return enc.local_features(wavs)
    # GroupNorm over time would mix padding into statistics: run each utterance alone.
    outs = [enc.local_features(wavs[i : i + 1, : int(lengths[i])]) for i in range(wavs.shape[0])]
    T = max(o.shape[1] for o in outs)
    return torch.cat([F.pad(o, (0, 0, 0, T - o.shape[1])) for o in outs], 0)


@dataclass
class _ConvStep:
    """One conv block of the feature extractor, as funasr builds it for ``layer_norm`` mode
    (Conv1d -> Dropout -> [TransposeLast, LayerNorm, TransposeLast] -> GELU), ready to run on
    B x T x C (channels-last) activations."""
    weight: torch.Tensor  # out x (k * in): window order (k, in) of a contiguous B x T x C tensor
    bias: Optional[torch.Tensor]
    k: int
    s: int
    norm: Optional[torch.nn.Module]  # normalises the channel (last) dimension
    act: torch.nn.Module


def _channels_last_plan(enc: torch.nn.Module) -> Optional[List[_ConvStep]]:
    """The extractor as channels-last steps, or None when its structure is not the one known here
    (e.g. ``extractor_mode: default``, whose GroupNorm normalises over time)."""
    proj = list(enc.project_features.children())
    if not proj or type(proj[0]).__name__ != "TransposeLast":
        return None
    steps = []
    for block in enc.local_encoder.conv_layers:
        mods = [m for m in block.children() if not isinstance(m, torch.nn.Dropout)]
        if len(mods) not in (2, 3) or not isinstance(mods[0], torch.nn.Conv1d):
            return None
        conv, act, norm = mods[0], mods[-1], None
        if conv.padding[0] != 0 or conv.dilation[0] != 1 or conv.groups != 1:
            return None
        if not isinstance(act, torch.nn.GELU):
            return None
        if len(mods) == 3:
            inner = list(mods[1].children())
            if (len(inner) != 3 or type(inner[0]).__name__ != "TransposeLast" or inner[0].deconstruct_idx is not None
                    or type(inner[2]).__name__ != "TransposeLast" or not isinstance(inner[1], torch.nn.LayerNorm)):
                return None
            norm = inner[1]
        k, s = conv.kernel_size[0], conv.stride[0]
        w = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, k * conv.in_channels)
        steps.append(_ConvStep(w, conv.bias, k, s, norm, act))
    return steps


def _run_steps(steps: List[_ConvStep], x: torch.Tensor) -> torch.Tensor:
    """Valid convolutions of B x T samples -> B x T' x C: each conv is one GEMM over windows of
    k consecutive (contiguous) frames, and the LayerNorm runs on the last dim with no transposes."""
    h = x[..., None]  # B x T x 1
    for st in steps:
        B, T, C = h.shape
        To = (T - st.k) // st.s + 1
        win = h.as_strided((B, To, st.k * C), (h.stride(0), st.s * C, 1))
        # one 2-D GEMM (the im2col copy happens in reshape/addmm): faster than a batched matmul
        h = F.linear(win.reshape(B * To, st.k * C), st.weight, st.bias).view(B, To, -1)
        if st.norm is not None:
            h = st.norm(h)
        h = st.act(h)
    return h


# Final frames per piece on a CPU: a piece's activations (64 frames -> 4096 x 512 floats in the
# first layer) stay in cache, and GEMMs of a few thousand rows run faster than one of 10^5 rows.
CPU_CHUNK_FRAMES = 64
# The GPU's form (the padded batch through the extractor at once) is taken on CUDA; True forces
# it on a CPU as well (the test suite checks it end to end there), False forces the pieces.
WHOLE_BATCH_EXTRACTOR: Optional[bool] = None


def _channels_last_features(enc, steps: List[_ConvStep], conv_spec, wavs: torch.Tensor,
                            lengths: torch.Tensor) -> torch.Tensor:
    """``enc.local_features`` (conv extractor + projection) on a padded batch, B x T' x D.

    On a CPU each utterance runs alone over its valid samples, in pieces of
    :data:`CPU_CHUNK_FRAMES` output frames: the extractor is a stack of valid convolutions whose
    strides divide the piece offsets, so pieces give exactly the frames of one whole run. On a GPU
    the padded batch runs at once (frames past each utterance's length are padding).
    """
    whole = wavs.is_cuda if WHOLE_BATCH_EXTRACTOR is None else WHOLE_BATCH_EXTRACTOR
    if whole:
        h = _run_steps(steps, wavs)
    else:
        stride = int(np.prod([s for _d, _k, s in conv_spec]))
        field = min_samples(conv_spec)
        flen = conv_output_lengths(lengths, conv_spec)
        T = int(conv_output_lengths(torch.tensor([wavs.shape[1]]), conv_spec)[0])
        h = None
        for i in range(wavs.shape[0]):
            n = int(flen[i])
            for j0 in range(0, n, CPU_CHUNK_FRAMES):
                j1 = min(n, j0 + CPU_CHUNK_FRAMES)
                piece = _run_steps(steps, wavs[i : i + 1, j0 * stride : (j1 - 1) * stride + field])
                if h is None:
                    h = piece.new_zeros(wavs.shape[0], T, piece.shape[-1])
                h[i, j0:j1] = piece[0]
        if h is None:  # no utterance long enough for one frame
            h = _run_steps(steps, wavs)
    for m in list(enc.project_features.children())[1:]:
        h = m(h)
    return h


class LazyAlibi:
    """The ALiBi bias funasr would materialise, described instead: ``-slope[h] * |i - j| * scale[h]``
    between frames, 0 on rows/columns of the ``num_extra`` extra tokens in front.

    Built once per forward with its slopes (and scales) already on the model's device, so no
    layer or query block copies anything from the host. When every layer shares one scale (the
    emotion2vec+ checkpoints), the same object serves all layers and keeps each query block's
    finished bias (masked, in the compute dtype) for the next layer, up to a memory budget.
    """

    def __init__(self, slopes: torch.Tensor, num_extra: int, scale: Optional[torch.Tensor] = None,
                 cache_elements: int = 0):
        self.slopes, self.num_extra, self.scale = slopes, num_extra, scale  # slopes: H (float32)
        self.cache_elements = cache_elements
        self._cache: dict = {}
        self._cached = 0

    def scaled(self, scale: torch.Tensor) -> "LazyAlibi":
        s = scale.reshape(-1).float().to(self.slopes.device)
        return LazyAlibi(self.slopes, self.num_extra, s if self.scale is None else self.scale * s,
                         self.cache_elements)

    def block(self, q0: int, q1: int, n: int, device) -> torch.Tensor:
        """Bias rows q0..q1 over all n keys: H x (q1 - q0) x n, float32."""
        e = self.num_extra
        qi = torch.arange(q0, q1, device=device) - e
        kj = torch.arange(n, device=device) - e
        dist = (qi[:, None] - kj[None, :]).abs().float()
        slopes = self.slopes if self.scale is None else self.slopes * self.scale
        bias = -slopes[:, None, None] * dist[None]
        if e:
            bias = bias.masked_fill(((qi < 0)[:, None] | (kj < 0)[None, :])[None], 0.0)
        return bias

    def attention_bias(self, q0: int, q1: int, n: int, *, heads: int, key_pad: Optional[torch.Tensor],
                       dtype: torch.dtype, device) -> torch.Tensor:
        """The additive mask for query rows q0..q1: ALiBi on the first heads, padded keys -inf;
        1|B x H x (q1 - q0) x n in ``dtype``."""
        key = (q0, q1, n, dtype)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        bias = self.block(q0, q1, n, device)[None]
        if bias.shape[1] not in (1, heads):  # ALiBi on the first heads only, like funasr's attn[:, :h] += bias
            bias = F.pad(bias, (0, 0, 0, 0, 0, heads - bias.shape[1]))
        if key_pad is not None:
            bias = bias.masked_fill(key_pad, float("-inf"))
        bias = bias.to(dtype)
        if self._cached + bias.numel() <= self.cache_elements:
            self._cache[key] = bias
            self._cached += bias.numel()
        return bias


# Elements of one query block's B x H x q x N bias/score tensor. Small blocks stay in cache on a
# CPU (measured: a 60 s utterance, base size, 2 cores: 2^22 -> 17.3 s, 2^28 -> 23.2 s, funasr's
# own attention 23.9 s); a GPU wants bigger ones.
ATTN_BLOCK_ELEMENTS = 1 << 22
ATTN_BLOCK_ELEMENTS_CUDA = 1 << 27
# Elements of finished attention-bias blocks kept across the layers of one forward (shared scale)
ALIBI_CACHE_ELEMENTS = 1 << 24
ALIBI_CACHE_ELEMENTS_CUDA = 1 << 28


def _chunked_attention(mod, x: torch.Tensor, padding_mask=None, alibi_bias=None) -> torch.Tensor:
    """AltAttention.forward, computed in query blocks (same result, bounded memory)."""
    B, N, C = x.shape
    H = mod.num_heads
    qkv = mod.qkv(x).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    key_pad = padding_mask.to(torch.bool)[:, None, None, :] if padding_mask is not None else None
    budget = ATTN_BLOCK_ELEMENTS_CUDA if x.is_cuda else ATTN_BLOCK_ELEMENTS
    step = max(1, min(N, budget // max(1, B * H * N)))
    out = torch.empty_like(q)
    for q0 in range(0, N, step):
        q1 = min(N, q0 + step)
        if alibi_bias is not None:
            bias = alibi_bias.attention_bias(q0, q1, N, heads=H, key_pad=key_pad, dtype=q.dtype, device=x.device)
        else:
            bias = torch.zeros(1, 1, q1 - q0, N, device=x.device)
            if key_pad is not None:
                bias = bias.masked_fill(key_pad, float("-inf"))
            bias = bias.to(q.dtype)
        out[:, :, q0:q1] = F.scaled_dot_product_attention(
            q[:, :, q0:q1], k, v, attn_mask=bias.expand(B, H, q1 - q0, N), scale=mod.scale)
    return mod.proj(out.transpose(1, 2).reshape(B, N, C))


# Valid rows (frames + extra tokens) of each utterance in the batch the transformer is running on;
# set by batched_forward for the int8 layers, which must quantise each utterance on its own.
_UTT_ROWS: contextvars.ContextVar[Optional[List[int]]] = contextvars.ContextVar("_UTT_ROWS", default=None)


class Int8Linear(torch.nn.Module):
    """A Linear layer with int8 weights (one scale per output channel) whose activations are
    quantised per utterance, over its valid rows only (``--dtype int8``, CPU).

    torch's dynamic int8 Linear picks one activation scale per input tensor: on a padded batch
    padding and batch-mates would set an utterance's scale. Running it on each utterance's valid
    rows keeps them out. int8 rounding is still not bit-stable: float noise of ~1e-6 between two
    batch compositions can flip a rounding step, so results are close, not equal (opt-in only).
    """

    def __init__(self, lin: torch.nn.Linear):
        super().__init__()
        from torch.ao.nn.quantized.dynamic import Linear as DynLinear
        from torch.ao.quantization import per_channel_dynamic_qconfig

        lin.qconfig = per_channel_dynamic_qconfig
        with warnings.catch_warnings():
            # torch 2.13 marks its quantized tensor types deprecated (torch is pinned here; a
            # torch that drops them needs this layer rebuilt on torchao)
            warnings.simplefilter("ignore", UserWarning)
            self.q = DynLinear.from_float(lin)
        self.out_features = lin.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _UTT_ROWS.get()
        if rows is None or x.dim() != 3 or len(rows) != x.shape[0]:
            return self.q(x)
        out = x.new_zeros(x.shape[0], x.shape[1], self.out_features)
        for i, n in enumerate(rows):
            out[i, :n] = self.q(x[i, :n])
        return out


def quantize_blocks_int8(model: torch.nn.Module) -> int:
    """Swap every Linear inside the transformer blocks (qkv, proj, fc1, fc2) for :class:`Int8Linear`.
    The conv extractor, positional encoder, norms and classifier head stay float32."""
    blocks = list(model.blocks)
    enc = model.modality_encoders["AUDIO"]
    if enc.context_encoder is not None:
        blocks += list(enc.context_encoder.blocks)
    n = 0
    for blk in blocks:
        for parent in list(blk.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(parent, name, Int8Linear(child))
                    n += 1
    model.batchser_int8 = n > 0  # batched_forward then tells the int8 layers each utterance's rows
    return n


@contextlib.contextmanager
def _memory_efficient_attention(model: torch.nn.Module):
    """Route every AltAttention of ``model`` through :func:`_chunked_attention` while active."""
    mods = [m for m in model.modules() if type(m).__name__ == "AltAttention" and not m.cosine_attention]
    for m in mods:
        m.forward = functools.partial(_chunked_attention, m)
    try:
        yield
    finally:
        for m in mods:
            del m.forward


@torch.no_grad()
def batched_forward(model: torch.nn.Module, wavs: torch.Tensor, lengths: torch.Tensor, attention: str = "chunked"):
    """Run emotion2vec on a padded batch.

    Returns ``(frames B x T' x D, frame_lengths B, logits B x V or None)`` where frames past
    ``frame_lengths`` are padding (undefined values) and logits come from the mean of valid frames.
    ``attention="reference"`` runs funasr's own attention on a materialised bias (for tests).
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

    key_pad = pad
    if enc.extra_tokens is not None:
        x = torch.cat([enc.extra_tokens.expand(B, -1, -1), x], dim=1)
        key_pad = F.pad(pad, (parts.num_extra, 0))

    # ALiBi: one lazily evaluated bias, scaled per layer as funasr scales its materialised one
    alibi = None
    scales = None  # per-layer scales, or None when the (single) scale is folded in
    if enc.get_alibi_bias is not None:
        from funasr.models.emotion2vec.base import get_alibi

        H = enc.modality_cfg.num_alibi_heads
        cache = ALIBI_CACHE_ELEMENTS_CUDA if x.is_cuda else ALIBI_CACHE_ELEMENTS
        alibi = LazyAlibi(-get_alibi(2, H)[:, 0, 1].float().to(x.device), parts.num_extra, cache_elements=cache)
        if enc.alibi_scale is not None:
            sc = enc.alibi_scale.clamp_min(0)
            if sc.size(0) == 1:
                alibi = alibi.scaled(sc.squeeze(0))
            else:
                scales = sc

    def stage_bias(stage_scales: Optional[torch.Tensor], j: int):
        if alibi is None or stage_scales is None:
            return alibi
        return alibi.scaled(stage_scales[j] if stage_scales.size(0) > 1 else stage_scales.squeeze(0))

    def run_blocks(x, blocks, stage_scales):
        for j, blk in enumerate(blocks):
            ab = stage_bias(stage_scales, j)
            if attention != "chunked" and ab is not None:  # funasr's own attention, materialised bias
                ab = ab.block(0, x.shape[1], x.shape[1], x.device)[None].expand(B, -1, -1, -1)
            x, _ = blk(x, padding_mask=key_pad, alibi_bias=ab)
        return x

    # funasr slices per-layer scales per stage: [:prenet] for the context encoder, the rest after
    prenet = enc.modality_cfg.prenet_depth
    ctx = enc.context_encoder
    # int8 layers need each utterance's rows on the host (one sync); other dtypes never wait
    token = _UTT_ROWS.set((flen + parts.num_extra).tolist() if getattr(model, "batchser_int8", False) else None)
    try:
        x = _run_stages(model, ctx, x, run_blocks, scales, prenet, attention)
    finally:
        _UTT_ROWS.reset(token)
    if model.norm is not None:
        x = model.norm(x)
    frames = x[:, parts.num_extra :]

    logits = None
    if model.proj is not None:
        valid = (~pad).to(frames.dtype)[..., None]
        pooled = (frames * valid).sum(1) / flen.clamp_min(1).to(frames.dtype)[:, None]
        logits = model.proj(pooled)
    return frames, flen, logits


def _run_stages(model, ctx, x, run_blocks, scales, prenet: int, attention: str):
    """The context encoder's blocks, then the model's, with funasr's norms around them."""
    with _memory_efficient_attention(model) if attention == "chunked" else contextlib.nullcontext():
        if ctx.norm is not None and not ctx.layer_norm_first:
            x = ctx.norm(x)
        x = run_blocks(x, ctx.blocks, scales[:prenet] if scales is not None else None)
        if ctx.norm is not None and ctx.layer_norm_first:
            x = ctx.norm(x)
        x = run_blocks(x, model.blocks, scales[prenet:] if scales is not None else None)
    return x


def label_list(tokens: List[str]) -> List[Optional[str]]:
    """Class names from funasr's token list; ``None`` marks 'unuse*' slots funasr drops."""
    return [None if t.startswith("unuse") else normalise_label(t) for t in tokens]


def _funasr_lean():
    """funasr's ``AutoModel`` with only the modules emotion2vec needs imported.

    ``import funasr`` runs ``import_submodules``: every one of funasr's ~190 model modules, ~7 s
    of every run's start-up. When funasr is not imported yet, the package is created without
    running its ``__init__``; AutoModel, emotion2vec's model and the tokenizer are imported
    directly (they register themselves as usual). Anything else asked of the package later runs
    its real ``__init__`` then (module ``__getattr__``), so other code in the process sees all of
    funasr. Returns (AutoModel, complete) where ``complete()`` imports the rest (used when a
    checkpoint names a component this lean import did not register).
    """
    import importlib.util
    import os
    import sys

    def complete() -> None:
        m = sys.modules.get("funasr")
        if m is not None and getattr(m, "_batchser_lean", False):
            m._batchser_lean = False
            m.__dict__.pop("__getattr__", None)
            m.__spec__.loader.exec_module(m)

    if "funasr" not in sys.modules:
        spec = importlib.util.find_spec("funasr")
        if spec is not None and spec.loader is not None and spec.origin:
            mod = importlib.util.module_from_spec(spec)
            try:
                with open(os.path.join(os.path.dirname(spec.origin), "version.txt"), encoding="utf-8") as f:
                    mod.__version__ = f.read().strip()
            except OSError:
                pass
            mod._batchser_lean = True

            def __getattr__(name):
                if name.startswith("__"):
                    raise AttributeError(name)
                complete()
                return getattr(mod, name)

            mod.__getattr__ = __getattr__
            sys.modules["funasr"] = mod
    import funasr.models.emotion2vec.model  # noqa: F401  (registers Emotion2vec)
    import funasr.tokenizer.char_tokenizer  # noqa: F401  (registers CharTokenizer)

    if "funasr.auto.auto_model" not in sys.modules:
        with _lazy_cluster_backend():
            from funasr.auto.auto_model import AutoModel
    from funasr.auto.auto_model import AutoModel

    return AutoModel, complete


CLUSTER_BACKEND = "funasr.models.campplus.cluster_backend"


@contextlib.contextmanager
def _lazy_cluster_backend():
    """While ``funasr.auto.auto_model`` is imported: its speaker-clustering back-end (which imports
    scikit-learn, ~1.9 s of start-up, for diarization batchser never asks for) as a stand-in whose
    ``ClusterBackend`` imports the real module when first called. The stand-in leaves
    ``sys.modules`` afterwards, so any later import gets the real module."""
    import importlib
    import sys
    import types

    if CLUSTER_BACKEND in sys.modules:
        yield
        return

    class ClusterBackend:  # what auto_model binds; the real class on first use
        def __new__(cls, *args, **kwargs):
            return importlib.import_module(CLUSTER_BACKEND).ClusterBackend(*args, **kwargs)

    stand_in = types.ModuleType(CLUSTER_BACKEND)
    stand_in.ClusterBackend = ClusterBackend
    sys.modules[CLUSTER_BACKEND] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(CLUSTER_BACKEND) is stand_in:
            del sys.modules[CLUSTER_BACKEND]


def load_funasr(model_dir: str, device: str):
    """``funasr.AutoModel(model=DIR)``: the loader real checkpoints use, with its chatter muted."""
    import io
    import logging

    with contextlib.redirect_stdout(io.StringIO()):
        AutoModel, complete = _funasr_lean()
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        # disable_update: no hub call to check for funasr updates; a local dir: no download.
        # ncpu: keep torch's own thread count (funasr would otherwise force 4 threads).
        # log_level: AutoModel calls logging.basicConfig with it (INFO by default)
        kw = dict(model=str(model_dir), device=device, disable_update=True, disable_pbar=True,
                  ncpu=torch.get_num_threads(), log_level="ERROR")
        try:
            try:
                return AutoModel(**kw)
            except RuntimeError as e:  # a component the lean import did not register: all of funasr
                if "regist" not in str(e).lower():
                    raise
                complete()
                return AutoModel(**kw)
        finally:
            root.setLevel(level)


class Emotion2vecBackend:
    """Model worker for emotion2vec(+) checkpoints in funasr's layout."""

    name = "emotion2vec"
    sample_rate = TARGET_SR
    max_input_samples = None  # any length (long inputs: see batchser.worker)

    def __init__(self, model_dir: str, device: str = "cpu", dtype: str = "float32", info: Optional[ModelInfo] = None):
        self.device = torch.device(device)
        check_dtype(dtype, self.device.type, self.name)
        am = load_funasr(model_dir, str(self.device))
        self.model = am.model.eval()
        if dtype == "int8":
            quantize_blocks_int8(self.model)
        tok = am.kwargs.get("tokenizer")
        tokens = list(tok.token_list) if tok is not None and hasattr(tok, "token_list") else []
        self.raw_labels = label_list(tokens) if self.model.proj is not None else []
        self.keep = [i for i, l in enumerate(self.raw_labels) if l is not None]
        self.labels = [self.raw_labels[i] for i in self.keep]
        self.head_kind = "single_label" if self.labels else "none"
        self.dtype = dtype
        self.conv_spec = _parts(self.model).conv_spec
        self.min_samples = min_samples(self.conv_spec)
        self.info = info or ModelInfo(id=str(model_dir), path=str(model_dir))
        self.embed_dim = int(self.model.cfg.get("embed_dim"))

    def combine_windows(self, embeddings: np.ndarray, scores, frame_counts: np.ndarray):
        """Windows of one long utterance: the frame-weighted mean embedding (= the mean over all
        frames, as for a whole utterance) and the head's scores for it."""
        emb = frame_weighted_mean(embeddings, frame_counts)
        return emb, (self.scores_from_embedding(emb[None])[0] if self.labels else None)

    @torch.no_grad()
    def scores_from_embedding(self, emb: np.ndarray) -> np.ndarray:
        """Class scores from utterance embeddings (N x D): the head funasr applies to the frame mean."""
        x = torch.from_numpy(np.asarray(emb, dtype=np.float32)).to(self.device)
        lg = self.model.proj(x).float()[:, self.keep]
        return torch.softmax(lg, dim=-1).cpu().numpy()

    def forward(self, wavs: List[np.ndarray], frames: bool = False) -> BatchOutput:
        """Run one batch of 16 kHz mono float32 waveforms (any lengths >= ``min_samples``)."""
        lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
        T = int(lengths.max())
        batch = torch.zeros(len(wavs), T, dtype=torch.float32)
        for i, w in enumerate(wavs):
            batch[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            fr, flen, logits = batched_forward(self.model, batch, lengths)
        scores = None
        if logits is not None:
            scores = torch.softmax(logits.float()[:, self.keep], dim=-1).cpu().numpy()
        return pool_frames(fr, flen, scores, frames)
