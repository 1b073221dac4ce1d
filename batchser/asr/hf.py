"""transformers engine: a ``WhisperForConditionalGeneration`` directory or hub id, equal to
``pipeline("automatic-speech-recognition", model=DIR)`` called file by file (greedy unless
``--asr-beam-size``), batched.

Inputs of up to 30 s are padded to the 30-s window by the model's own feature extractor (per
utterance, so a batch-mate never changes another's features) and decoded together in one
``generate`` call. Longer ones go alone through ``generate``'s sequential long-form decoding,
with the full-length features and attention mask the pipeline gives it.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .base import WINDOW_SAMPLES, AsrInfo, AsrModelError, AsrOptions, Transcript, not_available


class HfWhisper:
    def __init__(self, path: Path, *, device: str, opts: AsrOptions, batch_size: int):
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        from ..policy import resolve_dtype

        try:
            dtype = resolve_dtype(opts.dtype if opts.dtype in ("auto", "float32", "float16", "bfloat16", "fp32", "fp16",
                                                               "bf16") else _bad_dtype(opts.dtype), device)
        except AsrModelError:
            raise
        except ValueError as e:  # float16 on a CPU, ...: the policy's message names --dtype
            raise AsrModelError(f"--asr-dtype {opts.dtype}: {str(e).replace('--dtype', '--asr-dtype')}") from e
        self.torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        try:
            self.processor = AutoProcessor.from_pretrained(str(path))
            self.model = WhisperForConditionalGeneration.from_pretrained(str(path), dtype=self.torch_dtype)
        except (OSError, ValueError) as e:
            raise not_available(f"--asr {path}: transformers cannot load it as a Whisper model with its processor "
                                f"(tokenizer + feature extractor): {e}") from e
        self.model.to(device).eval()
        self.device, self.opts, self.batch_size = device, opts, batch_size
        gc = self.model.generation_config
        self.multilingual = bool(getattr(gc, "is_multilingual", False))
        self.lang_to_id = dict(getattr(gc, "lang_to_id", None) or {})
        self.id_to_lang = {v: k[2:-2] for k, v in self.lang_to_id.items()}
        langs = sorted(self.id_to_lang.values()) if self.multilingual else ["en"]
        # the pipeline's rule: a generation config that sets no length gets max_new_tokens=256
        # (generate's own default would stop at 20 tokens)
        set_ = gc.to_diff_dict()
        self._length = {} if ("max_length" in set_ or "max_new_tokens" in set_) else {"max_new_tokens": 256}
        self.info = AsrInfo(id=str(path), path=str(path), engine="transformers", multilingual=self.multilingual,
                            languages=langs)

    def _generate_kwargs(self, n: int) -> dict:
        """What the pipeline would pass: only the options given (generate's own defaults otherwise:
        without a language it detects one per input and, as transformers does, adds no task token)."""
        kw = {"num_beams": self.opts.beam_size, **self._length}
        if self.multilingual:  # English-only models refuse language and task
            if self.opts.task is not None:
                kw["task"] = self.opts.task
            if self.opts.language is not None:
                kw["language"] = [self.opts.language] * n
        return kw

    def _detect(self, feats) -> List[str]:
        ids = self.model.detect_language(input_features=feats)
        return [self.id_to_lang.get(int(i), str(int(i))) for i in ids.reshape(-1)]

    def transcribe(self, waves: Sequence[np.ndarray]) -> List[Transcript]:
        import torch

        fe = self.processor.feature_extractor
        out: List[Optional[Transcript]] = [None] * len(waves)
        short = [i for i, w in enumerate(waves) if len(w) <= WINDOW_SAMPLES]
        long_ = [i for i, w in enumerate(waves) if len(w) > WINDOW_SAMPLES]
        with torch.inference_mode():
            for b in range(0, len(short), self.batch_size):
                idx = short[b:b + self.batch_size]
                p = fe([np.asarray(waves[i], dtype=np.float32) for i in idx], sampling_rate=fe.sampling_rate,
                       return_tensors="pt", return_attention_mask=True)
                feats = p.input_features.to(self.device, self.torch_dtype)
                langs = self._languages(feats)
                seq = self.model.generate(input_features=feats, attention_mask=p.attention_mask.to(self.device),
                                          **self._generate_kwargs(len(idx)))
                seq = seq["sequences"] if isinstance(seq, dict) else seq
                for i, text, lang in zip(idx, self.processor.batch_decode(seq, skip_special_tokens=True), langs):
                    out[i] = Transcript(text=text.strip(), language=lang)
            for i in long_:
                p = fe(np.asarray(waves[i], dtype=np.float32), sampling_rate=fe.sampling_rate, truncation=False,
                       padding="longest", return_tensors="pt", return_attention_mask=True)
                feats = p.input_features.to(self.device, self.torch_dtype)
                langs = self._languages(feats[..., :3000])
                # long-form decoding needs timestamps (transformers refuses it without); the text is the same
                seq = self.model.generate(input_features=feats, attention_mask=p.attention_mask.to(self.device),
                                          return_timestamps=True, **self._generate_kwargs(1))
                seq = seq["sequences"] if isinstance(seq, dict) else seq
                out[i] = Transcript(text=self.processor.batch_decode(seq, skip_special_tokens=True)[0].strip(),
                                    language=langs[0])
        return out  # type: ignore[return-value]

    def _languages(self, feats) -> List[str]:
        """The language of each input: the given one, the model's only one, or detected (Whisper's
        own detection, which generate would run anyway)."""
        n = feats.shape[0]
        if self.opts.language is not None:
            return [self.opts.language] * n
        if not self.multilingual:
            return ["en"] * n
        return self._detect(feats)


def _bad_dtype(d: str) -> str:
    raise AsrModelError(f"--asr-dtype {d!r}: a transformers Whisper runs in float32, float16 or bfloat16 "
                        "(int8 and the other compute types are for CTranslate2 models)")
