"""transformers audio classifiers: Whisper (``WhisperForAudioClassification``) and the
wav2vec2/HuBERT/WavLM family (``AutoModelForAudioClassification`` + ``AutoFeatureExtractor``).

Results equal transformers' own unbatched forward on the same audio:

* Whisper pads or truncates every input to 30 s, so batching adds no padding of its own; the
  log-mel features are computed for the whole batch on the model's device (transformers' torch
  feature path, whose per-item max clamp and normalisation are per utterance). Inputs longer than
  30 s are handled by the model worker (windows, scores averaged) or truncated (see
  ``--long-audio``). Embedding: the encoder's last hidden state averaged over the frames that
  cover the audio (50 Hz), not over the 30-s padding.
* wav2vec2-family models whose feature extractor returns an attention mask are batched with it.
  Models trained without one (``return_attention_mask: false``, e.g. group-norm wav2vec2-base)
  change their output when padded, so they run one utterance per forward: exact, slower.
  Embedding: the last hidden state averaged over valid frames.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch

from ..audio import TARGET_SR
from ..policy import check_dtype
from .base import (BatchOutput, ModelInfo, activate, autocast, check_fe_options, frame_weighted_mean, head_kind_of,
                   normalise_label, pool_frames)

WHISPER_HOP = 160  # samples per mel frame; the encoder halves it again: 320 samples per frame


class TransformersBackend:
    name = "transformers"
    sample_rate = TARGET_SR

    def __init__(self, model_dir: str, device: str = "cpu", dtype: str = "float32", info: Optional[ModelInfo] = None,
                 fe_options: Optional[dict] = None):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.device = torch.device(device)
        check_dtype(dtype, self.device.type, self.name)
        self.dtype = dtype
        self.fe = AutoFeatureExtractor.from_pretrained(model_dir)
        # --fe-option: keywords for every extractor call (a from_pretrained keyword such as the Whisper
        # card's do_normalize=True only sets an attribute that WhisperFeatureExtractor.__call__ ignores)
        self.fe_options = check_fe_options(self.fe, fe_options or {}, str(model_dir))
        # float32 weights whatever dtype the checkpoint was saved in (transformers 5 would keep fp16
        # weights, which fail with float32 inputs on a CPU); --dtype bf16/fp16 run through autocast
        self.model = AutoModelForAudioClassification.from_pretrained(model_dir).float().eval().to(self.device)
        cfg = self.model.config
        self.is_whisper = cfg.model_type == "whisper"
        self.labels = [normalise_label(str(cfg.id2label[i])) for i in range(cfg.num_labels)]
        if len(set(self.labels)) != len(self.labels):  # keep columns unique
            self.labels = [f"{l}_{i}" if self.labels.count(l) > 1 else l for i, l in enumerate(self.labels)]
        self.head_kind = head_kind_of(getattr(cfg, "problem_type", None), cfg.num_labels)
        self.info = info or ModelInfo(id=str(model_dir), path=str(model_dir), backend="transformers")
        self.embed_dim = int(getattr(cfg, "d_model", None) or cfg.hidden_size)
        if self.is_whisper:
            self.max_input_samples = int(self.fe.n_samples)
            self.min_samples = 400
            self.batched = True
        else:
            self.max_input_samples = None
            self.min_samples = 400
            self.batched = bool(getattr(self.fe, "return_attention_mask", False))
        if int(getattr(self.fe, "sampling_rate", TARGET_SR)) != TARGET_SR:
            raise ValueError(f"{model_dir}: the feature extractor expects {self.fe.sampling_rate} Hz; "
                             f"batchser feeds {TARGET_SR} Hz")

    def _run_keeping_last_hidden(self, x, **kw):
        """Whisper: (model output, encoder's last hidden state, = ``hidden_states[-1]``). A hook on
        the encoder keeps just that tensor: ``output_hidden_states=True`` would hold every layer's
        (2 GB more for a batch of 8 with Whisper-large-v3). (The wav2vec2 family keeps
        ``hidden_states[-1]``: transformers captures it before the encoder's final LayerNorm.)"""
        enc = self.model.encoder
        kept = []
        h = enc.register_forward_hook(lambda _m, _a, o: kept.append(o[0]))
        try:
            out = self.model(x, **kw)
        finally:
            h.remove()
        return out, kept[-1]

    def _whisper(self, wavs: List[np.ndarray], frames: bool):
        if self.fe_options:  # the model card's path: pad to the 30-s window first, so that a call-time
            # do_normalize runs over the whole window, as the card's preprocess_audio does (without
            # normalisation the extractor's own zero padding gives the same features)
            m = self.max_input_samples
            inputs = [np.pad(w[:m], (0, m - len(w[:m]))) for w in wavs]
        else:
            inputs = wavs
        feats = self.fe(inputs, sampling_rate=TARGET_SR, return_tensors="pt", device=str(self.device), **self.fe_options)
        x = feats.input_features.to(self.device)
        with autocast(self.device, self.dtype):
            out, hid = self._run_keeping_last_hidden(x)
        hid = hid.float()  # B x 1500 x D
        n = torch.tensor([min(hid.shape[1], -(-len(w) // (2 * WHISPER_HOP))) for w in wavs], device=hid.device)
        return out.logits.float(), hid, n

    def _w2v(self, wavs: List[np.ndarray], frames: bool):
        feats = self.fe(wavs, sampling_rate=TARGET_SR, return_tensors="pt", padding=True,
                        return_attention_mask=self.batched, **self.fe_options)
        x = feats.input_values.to(self.device)
        mask = feats.get("attention_mask")
        mask = mask.to(self.device) if mask is not None else None
        with autocast(self.device, self.dtype):
            out = self.model(x, attention_mask=mask, output_hidden_states=True)
        hid = out.hidden_states[-1].float()
        if mask is not None:
            fmask = self.model._get_feature_vector_attention_mask(hid.shape[1], mask)
            n = fmask.sum(1)
        else:
            n = torch.full((hid.shape[0],), hid.shape[1], device=hid.device)
        return out.logits.float(), hid, n

    @torch.no_grad()
    def _forward(self, wavs: List[np.ndarray], frames: bool) -> BatchOutput:
        logits, hid, n = (self._whisper if self.is_whisper else self._w2v)(wavs, frames)
        return pool_frames(hid, n, activate(logits, self.head_kind).cpu().numpy(), frames)

    def forward(self, wavs: List[np.ndarray], frames: bool = False) -> BatchOutput:
        """One batch of 16 kHz mono float32 waveforms (Whisper: each at most 30 s)."""
        if self.batched or len(wavs) == 1:
            return self._forward(wavs, frames)
        outs = [self._forward([w], frames) for w in wavs]  # padding would change these models' output
        return BatchOutput(embeddings=np.concatenate([o.embeddings for o in outs]),
                           scores=np.concatenate([o.scores for o in outs]),
                           frames=[o.frames[0] for o in outs] if frames else None)

    def combine_windows(self, embeddings: np.ndarray, scores: np.ndarray, frame_counts: np.ndarray):
        """Windows of one long utterance: frame-weighted mean embedding, frame-weighted mean scores
        (probabilities, or a regression head's values)."""
        return frame_weighted_mean(embeddings, frame_counts), frame_weighted_mean(scores, frame_counts)
