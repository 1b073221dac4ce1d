"""OUT/explanations.parquet: each utterance's prosody relative to its speaker's baseline (templated);
OUT/explanations/: the texts ``batchser explain`` had a language model write.

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


def explain_schema():
    import pyarrow as pa

    return pa.schema([("utt_id", pa.string()), ("prompt_sha256", pa.string()), ("model", pa.string()),
                      ("text", pa.string()), ("error", pa.string())])


class ExplanationsWriter:
    """OUT/explanations/: ``batchser explain``'s texts in atomic parts, and the settings that made
    them (its own settings.json: another model or prompt is refused). What a killed run committed
    is kept; ``done`` says which utterances a rerun skips."""

    def __init__(self, out: Path, *, settings: dict, part_size: int = 200):
        import json

        import pyarrow.parquet as pq

        from . import verify

        self.path = Path(out) / layout.LLM_EXPLANATIONS
        self.path.mkdir(exist_ok=True)
        s = self.path / "_settings.json"  # "_": readers of the folder as a dataset skip it (pyarrow, pandas)
        if s.exists():
            try:
                old = json.loads(s.read_text(encoding="utf-8"))
            except ValueError as e:
                raise ValueError(f"{s} is not the JSON batchser wrote ({e}): delete {self.path} to start again") from e
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                raise ValueError(f"{self.path} was made with other settings ("
                                 + "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                                 + f"): use the same options, or delete {self.path} to explain again")
        else:
            atomic.write_text(s, json.dumps(settings, indent=2, sort_keys=True) + "\n")
        for f in self.path.glob(".*.tmp"):  # a write a kill cut short
            f.unlink()
        parts = sorted(self.path.glob("part-*.parquet"))
        bad = [f"{layout.LLM_EXPLANATIONS}/{p.name}: {why}" for p in parts if (why := verify.parquet_rows(p)[1])]
        # (verify.advice says what to do with a damaged explanations/ part)
        if bad:
            raise verify.DamagedPart(verify.advice(Path(out), bad))
        self.ids = {u for p in parts for u in pq.read_table(p, columns=["utt_id"]).column("utt_id").to_pylist()}
        self.next = max([int(p.stem.split("-")[-1]) for p in parts] + [-1]) + 1
        self.part_size = part_size
        self.rows: list = []

    def done(self, ids):
        import numpy as np

        return np.array([u in self.ids for u in ids], dtype=bool)

    def add(self, rows: list) -> None:
        self.rows += rows
        if len(self.rows) >= self.part_size:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.rows:
            return
        atomic.save_parquet(self.path / f"{layout.part_stem(None, self.next)}.parquet",
                            pa.Table.from_pylist(self.rows, schema=explain_schema()))
        self.ids.update(r["utt_id"] for r in self.rows)
        self.next += 1
        self.rows = []
