"""audEERING's dimensional wav2vec2 layout (``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim``).

The checkpoint is not a transformers class: its config names ``Wav2Vec2ForSpeechClassification``
and its model card defines the model in code (``EmotionModel``): a ``Wav2Vec2Model`` encoder,
the mean of the last hidden state over time, and a two-layer regression head (``dense`` ->
tanh -> ``out_proj``) giving arousal, dominance and valence (roughly 0...1), in the order of
``id2label``. ``AutoModelForAudioClassification`` would load it with a random head, silently;
this back-end builds the card's own modules so the public weights load unchanged.

Batched: the feature extractor normalises each utterance over its own samples and returns an
attention mask; the encoder masks padded frames; the mean runs over each utterance's valid
frames only. So a padded batch equals the card's one-utterance ``process_func`` (tested). A
checkpoint whose extractor returns no attention mask runs one utterance per forward.
Embedding: the pooled hidden state, as the card's ``embeddings=True``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from ..audio import TARGET_SR
from ..policy import check_dtype
from .base import BatchOutput, ModelInfo, autocast, check_fe_options, frame_weighted_mean, normalise_label

ARCHITECTURE = "Wav2Vec2ForSpeechClassification"


def is_dim_layout(path: Path) -> bool:
    """Whether ``path/config.json`` is audEERING's dimensional layout."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return ARCHITECTURE in (cfg.get("architectures") or []) and cfg.get("model_type") == "wav2vec2"


class RegressionHead(nn.Module):
    """The card's head: dropout, dense, tanh, dropout, out_proj (parameter names as saved)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.final_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, x):
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


def model_class():
    """The card's ``EmotionModel`` as a transformers model (so ``from_pretrained`` loads the
    saved ``wav2vec2.*`` and ``classifier.*`` weights); built lazily: transformers is heavy."""
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class DimensionalWav2Vec2(Wav2Vec2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values, attention_mask=None):
            hidden = self.wav2vec2(input_values, attention_mask=attention_mask)[0]
            if attention_mask is None:
                pooled = hidden.mean(1)
                n = torch.full((hidden.shape[0],), hidden.shape[1], device=hidden.device)
            else:
                valid = self.wav2vec2._get_feature_vector_attention_mask(hidden.shape[1], attention_mask)
                n = valid.sum(1)
                pooled = (hidden * valid[..., None].to(hidden.dtype)).sum(1) / n.clamp_min(1)[:, None].to(hidden.dtype)
            return hidden, pooled, self.classifier(pooled), n

    return DimensionalWav2Vec2


class DimensionalBackend:
    name = "w2v2-dim"
    sample_rate = TARGET_SR
    head_kind = "regression"
    max_input_samples = None
    min_samples = 400

    def __init__(self, model_dir: str, device: str = "cpu", dtype: str = "float32", info: Optional[ModelInfo] = None,
                 fe_options: Optional[dict] = None):
        from transformers import AutoFeatureExtractor

        self.device = torch.device(device)
        check_dtype(dtype, self.device.type, "transformers")
        self.dtype = dtype
        self.fe = AutoFeatureExtractor.from_pretrained(model_dir)
        self.fe_options = check_fe_options(self.fe, fe_options or {}, str(model_dir))
        self.model = model_class().from_pretrained(model_dir).float().eval().to(self.device)
        cfg = self.model.config
        self.labels = [normalise_label(str(cfg.id2label[i])) for i in range(cfg.num_labels)]
        self.embed_dim = int(cfg.hidden_size)
        self.batched = bool(getattr(self.fe, "return_attention_mask", False))
        self.info = info or ModelInfo(id=str(model_dir), path=str(model_dir), backend=self.name)
        if int(getattr(self.fe, "sampling_rate", TARGET_SR)) != TARGET_SR:
            raise ValueError(f"{model_dir}: the feature extractor expects {self.fe.sampling_rate} Hz; "
                             f"batchser feeds {TARGET_SR} Hz")

    @torch.no_grad()
    def _forward(self, wavs: List[np.ndarray], frames: bool) -> BatchOutput:
        feats = self.fe(wavs, sampling_rate=TARGET_SR, return_tensors="pt", padding=True,
                        return_attention_mask=self.batched, **self.fe_options)
        x = feats.input_values.to(self.device)
        mask = feats.get("attention_mask")
        with autocast(self.device, self.dtype):
            hidden, pooled, values, n = self.model(x, attention_mask=mask.to(self.device) if mask is not None else None)
        frame_list = None
        if frames:
            h = hidden.float().cpu().numpy()
            frame_list = [h[i, : int(n[i])] for i in range(h.shape[0])]
        return BatchOutput(embeddings=pooled.float().cpu().numpy(), scores=values.float().cpu().numpy(),
                           frames=frame_list)

    def forward(self, wavs: List[np.ndarray], frames: bool = False) -> BatchOutput:
        """One batch of 16 kHz mono float32 waveforms; ``scores`` are the head's raw values."""
        if self.batched or len(wavs) == 1:
            return self._forward(wavs, frames)
        outs = [self._forward([w], frames) for w in wavs]
        return BatchOutput(embeddings=np.concatenate([o.embeddings for o in outs]),
                           scores=np.concatenate([o.scores for o in outs]),
                           frames=[o.frames[0] for o in outs] if frames else None)

    def combine_windows(self, embeddings: np.ndarray, scores: np.ndarray, frame_counts: np.ndarray):
        """Windows of one long utterance: the mean over all frames of the pooled states, and the
        head applied to it (as one forward over the whole utterance would pool)."""
        emb = frame_weighted_mean(embeddings, frame_counts)
        with torch.no_grad():
            v = self.model.classifier(torch.from_numpy(emb[None]).to(self.device)).float().cpu().numpy()[0]
        return emb, v
