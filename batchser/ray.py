"""For users' own Ray Data pipelines: :class:`EmotionPredictor`, the callable class
``ds.map_batches`` takes (``--engine ray`` itself is :mod:`batchser.ray_engine`)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np


class EmotionPredictor:
    """A callable class for ``ray.data.Dataset.map_batches``: emotion labels, class scores and
    embeddings of a batch of audio, equal to ``batchser run``'s (the same stages and scoring core,
    through :class:`batchser.EmotionRecognizer`)::

        ds = ray.data.read_parquet("s3://bucket/index.parquet")          # a column of paths or URLs
        ds = ds.map_batches(EmotionPredictor, fn_constructor_kwargs={"model": "/models/e2v"},
                            concurrency=4, num_gpus=1, batch_size=None)

    Args:
        model, device, dtype, **options: as :class:`batchser.EmotionRecognizer`.
        path_column: a column of file paths or URLs (s3://, gs://, http(s)://), decoded as a run
            decodes; or
        audio_column, sampling_rate: a column of waveforms (1-D arrays) and their rate in Hz.
        id_column: the utterance ids (default: the file stems, else the row numbers).

    Returns per batch the input columns and: ``utt_id``, ``duration``, ``label``, ``score``,
    ``score_<class>`` (or ``value_<dim>``), ``embedding`` (a 2-D float32 array), and with ``asr=``
    ``text`` and ``language``. A row that cannot be decoded raises, naming it.
    """

    def __init__(self, model: str = "emotion2vec_plus_base", *, device: str = "auto", path_column: str = "path",
                 audio_column: Optional[str] = None, sampling_rate: Optional[int] = None,
                 id_column: Optional[str] = None, **options):
        from .api import EmotionRecognizer

        self.rec = EmotionRecognizer(model, device=device, **options)
        self.path_column, self.audio_column = path_column, audio_column
        self.sampling_rate, self.id_column = sampling_rate, id_column

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.audio_column is not None:
            inputs = [np.asarray(x, dtype=np.float32) for x in batch[self.audio_column]]
        else:
            inputs = [str(p) for p in batch[self.path_column]]
        ids = [str(i) for i in batch[self.id_column]] if self.id_column else None
        pred = self.rec.predict(inputs, sampling_rate=self.sampling_rate, ids=ids)
        out = {k: v for k, v in batch.items()}
        for col in pred.labels.columns:
            if col not in ("rec_id", "spk", "start", "end"):
                out[col] = pred.labels[col].to_numpy()
        out["embedding"] = pred.embeddings
        return out
