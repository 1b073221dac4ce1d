"""``--asr`` as a stage: the waveforms the emotion model took, transcribed in the engine's batches."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from ..columns import Fields
from .core import Batch, StageFailure


def transcribe_items(asr, waves: List[np.ndarray], ids: List[str]) -> Tuple[List[Optional[object]], List[Optional[str]]]:
    """One transcript per waveform, or the error of the one that failed. A failing batch is run
    again one utterance at a time, so that one bad utterance never costs the others; when every
    one of several fails alone too, :class:`StageFailure` stops the run (as the emotion model's
    worker does) instead of writing them all into errors/.
    """
    try:
        return list(asr.transcribe(waves)), [None] * len(waves)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:
        if len(waves) == 1:
            return [None], [f"{ids[0]}: speech recognition failed: {type(e).__name__}: {e}"]
        first = e
    out: List[Optional[object]] = []
    errs: List[Optional[str]] = []
    for w, i in zip(waves, ids):
        t, e = transcribe_items(asr, [w], [i])
        out += t
        errs += e
    if all(e is not None for e in errs):
        raise StageFailure(f"the speech recogniser failed on a batch of {len(ids)} utterances ({', '.join(ids[:5])}"
                           f"{', ...' if len(ids) > 5 else ''}) and on each of them alone: {type(first).__name__}: "
                           f"{first}. This is not one utterance's fault, so the run stops instead of blaming them"
                           ) from first
    return out, errs


class AsrStage:
    """``text`` (stripped) and ``language`` (detected, given, or the model's only one) per row."""

    name = "asr"
    prediction_fields: Fields = [("text", pa.string()), ("language", pa.string())]
    annotation_fields: Fields = []
    window_fields = None

    def __init__(self, engine, opts, device: str):
        self.engine, self.opts, self.device = engine, opts, device

    def settings(self) -> Dict:
        """The recogniser's weights and the options that change a transcript."""
        info = self.engine.info
        return {"asr": {**self.opts.settings(info.engine, self.device), "model": info.sha256 or info.id}}

    def run(self, batch: Batch) -> None:
        live = batch.live()
        texts, errors = transcribe_items(self.engine, [it.wave for it in live], [it.utt.utt_id for it in live])
        for it, t, e in zip(live, texts, errors):
            if e is not None:
                it.fail("asr", e)
            else:
                it.columns.update(text=t.text, language=t.language)
