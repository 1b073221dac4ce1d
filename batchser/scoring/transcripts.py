"""``--asr`` as a stage: the waveforms the emotion model took, transcribed in the engine's batches."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from ..columns import Fields
from ..isolate import each_alone
from .core import Batch, StageFailure


def transcribe_items(asr, waves: List[np.ndarray], ids: List[str]) -> Tuple[List[Optional[object]], List[Optional[str]]]:
    """One transcript per waveform, or the error of the one that failed (``isolate.each_alone``:
    a failing batch runs again one utterance at a time; all failing alone stops the run)."""
    return each_alone(asr.transcribe, waves, ids, what="speech recognition", failure=StageFailure)


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
