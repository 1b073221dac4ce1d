"""Stages that add columns beside the prediction: the decoders' features (``--features``) and
trained heads on each embedding (``--head``)."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from ..columns import Fields, float_fields, head_fields
from .core import Batch


def feature_fields(sets: Sequence[str]) -> Fields:
    """The columns of the feature sets (``--features``): prosody's, then eGeMAPS' 88."""
    fields: Fields = []
    if "prosody" in sets:
        from ..prosody import COLUMNS

        fields += float_fields(COLUMNS)
    if "egemaps" in sets:
        from ..egemaps import columns

        fields += float_fields(columns())
    return fields


class FeaturesStage:
    """The feature columns the decoders computed beside each waveform (``loader.DecodeDataset``)."""

    name = "features"
    prediction_fields: Fields = []
    window_fields = None

    def __init__(self, sets: Sequence[str]):
        self.sets = tuple(sets)
        self.annotation_fields = feature_fields(self.sets)

    def settings(self) -> Dict:
        return {}  # the feature sets are a setting of the whole run (also without this stage)

    def run(self, batch: Batch) -> None:
        for it in batch.live():
            it.columns.update(it.features or {})


class HeadsStage:
    """Trained heads (``batchser train-head``) on each utterance's embedding: ``head_<name>_*``."""

    name = "heads"
    prediction_fields: Fields = []
    window_fields = None

    def __init__(self, heads: Sequence):
        self.heads = list(heads)
        self.annotation_fields = [f for h in self.heads for f in head_fields(h.name, h.labels)]

    def settings(self) -> Dict:
        return {"heads": [{"name": h.name, "weights_sha256": h.meta.get("weights_sha256")} for h in self.heads]}

    def run(self, batch: Batch) -> None:
        live = batch.live()
        e = np.stack([it.embedding for it in live])
        for h in self.heads:
            for it, cols in zip(live, h.columns(h.predict(e))):
                it.columns.update(cols)
