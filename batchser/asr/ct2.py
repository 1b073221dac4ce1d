"""CTranslate2 engine (a faster-whisper directory), equal to
``faster_whisper.WhisperModel(DIR).transcribe(audio, beam_size=B, without_timestamps=True,
condition_on_previous_text=False, temperature=0)`` per utterance of up to 30 s, and to the same
call with ``without_timestamps=False`` (faster-whisper's default) for longer ones, but batched.
Why timestamps over 30 s: without them every window is cut at a fixed 30 s and a sentence that
crosses the cut is lost (measured: 10 of 13 sentences of a 46.6-s file); with them a window ends
at the last timestamp the model gives and the next one starts there.

Why it can batch and stay equal: without previous-text conditioning, faster-whisper's seek loop
takes an utterance's log-mel features (computed once over the whole utterance) 30 s at a time,
and a window depends on the earlier ones only through where it starts (30 s on, or earlier when
the model ended the window on timestamp tokens). So batchser runs that loop for all utterances at
once: round k encodes and decodes every utterance's k-th window together, with the reference's
prompt, suppressed tokens and limits, its no-speech rule (a window whose no-speech probability
is above 0.6 and whose mean log-probability is not above -1 gives no text) and its own
``_split_segments_by_timestamps`` for the text and the next seek. Decoding is at temperature 0 only: faster-whisper's default fallback to sampling at
higher temperatures is random, so batchser does not do it (documented in the README).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .base import WINDOW_SAMPLES, AsrInfo, AsrModelError, AsrOptions, Transcript, not_available, resolved_dtype

NO_SPEECH_THRESHOLD = 0.6  # faster-whisper's defaults
LOG_PROB_THRESHOLD = -1.0
MAX_INITIAL_TIMESTAMP = 1.0


def _device(device: str) -> Tuple[str, int]:
    if device.startswith("cuda"):
        return "cuda", int(device.split(":", 1)[1]) if ":" in device else 0
    return "cpu", 0


class Ct2Whisper:
    """A faster-whisper model directory run in batches of windows."""

    def __init__(self, path: Path, *, device: str, opts: AsrOptions, batch_size: int):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise not_available(f"--asr {path} is a CTranslate2 (faster-whisper) model: pip install 'batchser[asr]' "
                                "(faster-whisper)") from e
        dev, index = _device(device)
        # auto: the saved type on a GPU; float32 on a CPU (what CTranslate2 falls back to there, with a warning)
        compute = resolved_dtype(opts.dtype, "ctranslate2", device)
        try:
            self.model = WhisperModel(str(path), device=dev, device_index=index, compute_type=compute)
        except ValueError as e:  # an unsupported compute type on this device
            raise AsrModelError(f"--asr-dtype {opts.dtype}: {e}") from e
        except RuntimeError as e:
            raise not_available(f"--asr {path}: CTranslate2 cannot load it as a faster-whisper model: {e}") from e
        self.opts, self.batch_size = opts, batch_size
        m = self.model
        langs = list(m.supported_languages) if m.model.is_multilingual else ["en"]
        self.info = AsrInfo(id=str(path), path=str(path), engine="ctranslate2",
                            multilingual=bool(m.model.is_multilingual), languages=langs)
        self._tokenizers: Dict[str, object] = {}

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                                   task=self.opts.task or "transcribe", language=language)
        return self._tokenizers[language]

    def _encode(self, feats: List[np.ndarray]):
        from faster_whisper.transcribe import get_ctranslate2_storage

        return self.model.model.encode(get_ctranslate2_storage(np.ascontiguousarray(np.stack(feats))),
                                       to_cpu=False)

    def _languages(self, features: List[np.ndarray]) -> List[str]:
        """faster-whisper's detection on each utterance's first 30 s (its language_detection_segments=1)."""
        from faster_whisper.audio import pad_or_trim

        out: List[str] = []
        for i in range(0, len(features), self.batch_size):
            batch = [pad_or_trim(f[:, :3000]) for f in features[i:i + self.batch_size]]
            for res in self.model.model.detect_language(self._encode(batch)):
                out.append(res[0][0][2:-2])
        return out

    def transcribe(self, waves: Sequence[np.ndarray]) -> List[Transcript]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        fe, wm = self.model.feature_extractor, self.model
        features = [fe(np.asarray(w, dtype=np.float32)) for w in waves]
        if self.info.multilingual and self.opts.language is None:
            langs = self._languages(features)
        else:
            langs = [self.opts.language or "en"] * len(waves)
        content = [f.shape[-1] - 1 for f in features]  # faster-whisper drops the last frame
        # over 30 s: with timestamps, so that each window ends where speech does and the next starts
        # there (without, a sentence across a window edge is lost); up to 30 s: one window, no timestamps
        stamps = [len(w) > WINDOW_SAMPLES for w in waves]  # the reference's rule is on samples, not frames
        seek = [0] * len(waves)
        texts = [""] * len(waves)
        # faster-whisper's seek loop, run for all utterances at once: round k batches every utterance's
        # k-th window (where its seek now is: usually 30 s on, earlier when the model ended on timestamps)
        while True:
            active = [i for i in range(len(waves)) if seek[i] < content[i]]
            if not active:
                break
            by_prompt: Dict[Tuple[str, bool], List[int]] = {}
            for i in active:
                by_prompt.setdefault((langs[i], stamps[i]), []).append(i)
            for (lang, with_stamps), idx in by_prompt.items():
                tok = self._tokenizer(lang)
                prompt = list(tok.sot_sequence) + ([] if with_stamps else [tok.no_timestamps])
                suppress = get_suppressed_tokens(tok, [-1])
                for b in range(0, len(idx), self.batch_size):
                    group = idx[b:b + self.batch_size]
                    sizes = {i: min(fe.nb_max_frames, content[i] - seek[i]) for i in group}
                    enc = self._encode([pad_or_trim(features[i][:, seek[i]:seek[i] + sizes[i]]) for i in group])
                    results = wm.model.generate(
                        enc, [prompt] * len(group), length_penalty=1, repetition_penalty=1, no_repeat_ngram_size=0,
                        max_length=wm.max_length, return_scores=True, return_no_speech_prob=True,
                        suppress_blank=True, suppress_tokens=suppress,
                        max_initial_timestamp_index=int(round(MAX_INITIAL_TIMESTAMP / wm.time_precision)),
                        beam_size=self.opts.beam_size, patience=1)
                    for i, r in zip(group, results):
                        seek[i] = self._advance(tok, r, texts, i, seek[i], sizes[i])
        return [Transcript(text=t.strip(), language=l) for t, l in zip(texts, langs)]

    def _advance(self, tok, r, texts: List[str], i: int, seek: int, size: int) -> int:
        """One window's result, as faster-whisper's generate_segments takes it: the no-speech rule,
        segments split at timestamp pairs (a segment of zero length or blank text is dropped); the
        new seek."""
        wm = self.model
        tokens = r.sequences_ids[0]
        n = len(tokens)
        avg_logprob = r.scores[0] * n / (n + 1)
        if r.no_speech_prob > NO_SPEECH_THRESHOLD and not avg_logprob > LOG_PROB_THRESHOLD:
            return seek + size  # no speech: faster-whisper skips the window
        tpf = wm.feature_extractor.time_per_frame
        segments, new_seek, _ = wm._split_segments_by_timestamps(
            tokenizer=tok, tokens=tokens, time_offset=seek * tpf, segment_size=size, segment_duration=size * tpf,
            seek=seek)
        for seg in segments:
            text = tok.decode(seg["tokens"])
            if seg["start"] == seg["end"] or not text.strip():
                continue
            texts[i] += text
        # a window that ends on <|0.00|> would not move faster-whisper's seek (it would loop for ever)
        return new_seek if new_seek > seek else seek + size
