"""OUT/explanations.parquet: each utterance's prosody relative to its speaker's baseline.

Baselines are per speaker, so they need every utterance of the directory: written at the end
of a run (and by ``batchser merge`` for array jobs), recomputed on each resume; label parts are
immutable once committed, so the explanations are a table of their own.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from . import atomic, layout


def write_explanations(out_dir: str | os.PathLike, *, explain: Callable, table: str = layout.LABELS) -> None:
    """(Re)write OUT/explanations.parquet from ``table``'s prosody columns: ``explain`` (the
    prosody module's ``explanations``) turns the table into (utt_id, explanation, baseline)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = layout.parts(Path(out_dir), table)
    if not parts:
        return
    df = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    if df.empty or "f0_median_st" not in df.columns:
        return
    atomic.save_parquet(Path(out_dir) / layout.EXPLANATIONS,
                        pa.Table.from_pandas(explain(df), preserve_index=False))
