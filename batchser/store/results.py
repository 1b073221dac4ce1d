"""Read an output directory back: ``batchser.open_results("outputs/")``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from . import layout, verify


class NoTimeline(AttributeError, ValueError):
    """A run made without --timeline (an AttributeError too, so ``hasattr(res, "timeline")`` is False)."""


class Results:
    """Labels and errors tables plus embeddings aligned with the labels table's row order, or,
    for ``batchser features``' output (``kind == "features"``), the features table.

    Every part read is checked first (``store.verify``): a damaged one raises ``DamagedPart``
    naming the file and what to do, instead of numpy's or pyarrow's words.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        if (self.dir / layout.LABELS).is_dir():
            self.kind, self._table = "run", layout.LABELS
        elif (self.dir / layout.FEATURES).is_dir():
            self.kind, self._table = "features", layout.FEATURES
        else:
            raise FileNotFoundError(f"{self.dir} is not a batchser output directory (no labels/){what_it_is(self.dir)}")
        self._parts: List[Path] = layout.parts(self.dir, self._table)
        self._checked = set()

    def _check(self, arrays: bool = False) -> None:
        """The parts read are whole (``arrays``: their embeddings and frames too), checked once."""
        if arrays not in self._checked:
            found = ([p for part in self._parts for p in verify.labels_part_problems(self.dir, part)] if arrays
                     else [f"{self._table}/{p.name}: {why}" for p in self._parts if (why := verify.parquet_rows(p)[1])])
            if found:
                raise verify.DamagedPart(verify.advice(self.dir, found))
            self._checked.add(arrays)

    @property
    def features(self):
        """``batchser features``' table (utt_id, where it is, the feature columns) as a DataFrame;
        in a run with --features the same columns are in :attr:`labels`."""
        import pandas as pd
        import pyarrow.parquet as pq

        if self.kind != "features":
            raise AttributeError(f"{self.dir} is the output of `batchser run`: its --features columns are in .labels")
        self._check()
        return (pd.concat([pq.read_table(p).to_pandas() for p in self._parts], ignore_index=True)
                if self._parts else pd.DataFrame())

    def labels_table(self):
        """The labels as a pyarrow Table (parts in order)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._parts or self.kind != "run":
            return None
        self._check()
        return pa.concat_tables([pq.read_table(p) for p in self._parts])

    @property
    def labels(self):
        """The labels as a pandas DataFrame (empty if nothing succeeded)."""
        import pandas as pd

        t = self.labels_table()
        return t.to_pandas() if t is not None else pd.DataFrame()

    @property
    def errors(self):
        """The errors table (utt_id, stage, message) as a pandas DataFrame."""
        import pandas as pd
        import pyarrow.parquet as pq

        parts = layout.parts(self.dir, layout.ERRORS)
        if not parts:
            return pd.DataFrame({"utt_id": [], "stage": [], "message": []})
        return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)

    @property
    def timeline(self):
        """``--timeline`` runs: one row per window (utt_id, rec_id, spk, window, start, end in
        recording time, label, score, score_<class>...), as a pandas DataFrame.

        Only windows of committed labels parts are read (a run killed between writing a
        timeline part and its labels part leaves one that the next run removes).

        Raises:
            ValueError: the run was made without --timeline.
        """
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.dir / layout.TIMELINE
        if not d.is_dir():
            raise NoTimeline(f"{self.dir} has no timeline: run with --timeline WIN[,HOP] (e.g. --timeline 2,1)")
        parts = [d / f"{p.stem}.parquet" for p in self._parts if (d / f"{p.stem}.parquet").exists()]
        if not parts:
            return pd.DataFrame({"utt_id": [], "rec_id": [], "spk": [], "window": [], "start": [], "end": []})
        return pa.concat_tables([pq.read_table(p) for p in parts]).to_pandas()

    def head_predictions(self, name: str):
        """``apply-head`` results of head ``name`` (utt_id + head_<name>_* columns), a DataFrame
        (only parts of committed labels parts). Raises KeyError listing the heads applied."""
        import pandas as pd
        import pyarrow.parquet as pq

        d = self.dir / layout.HEAD_PREDICTIONS / name
        if not d.is_dir():
            have = sorted(p.name for p in (self.dir / layout.HEAD_PREDICTIONS).glob("*") if p.is_dir()) \
                if (self.dir / layout.HEAD_PREDICTIONS).is_dir() else []
            raise KeyError(f"no predictions of a head {name!r} in {self.dir} (applied: {', '.join(have) or 'none'}); "
                           "run `batchser apply-head OUT --head DIR`")
        parts = [d / f"{p.stem}.parquet" for p in self._parts if (d / f"{p.stem}.parquet").exists()]
        return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True) if parts else pd.DataFrame()

    @property
    def head_kind(self) -> str:
        """What the model's head gave: ``single_label`` (label + softmax ``score_*``),
        ``multi_label`` (sigmoid ``score_*``), ``regression`` (``value_*``) or ``none``
        (embeddings only). From the manifest; for runs older than it, from the columns."""
        k = (self.manifest.get("model") or {}).get("head_kind")
        if k:
            return k
        import pyarrow.parquet as pq

        names = pq.read_schema(self._parts[0]).names if self._parts else []
        if any(c.startswith("value_") for c in names):
            return "regression"
        return "single_label" if any(c.startswith("score_") for c in names) else "none"

    @property
    def manifest(self) -> dict:
        p = self.dir / layout.MANIFEST
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    def embeddings(self, utt_ids: Optional[Sequence[str]] = None) -> np.ndarray:
        """Utterance embeddings, row i = labels row i (or = ``utt_ids[i]`` when given).

        With a single part the result is a read-only memory map; several parts are concatenated.
        """
        import pyarrow.parquet as pq

        self._check(arrays=True)
        mats = [np.load(self.dir / layout.EMBEDDINGS / f"{p.stem}.npy", mmap_mode="r") for p in self._parts]
        if not mats:
            return np.zeros((0, 0), dtype=np.float32)
        full = mats[0] if len(mats) == 1 else np.concatenate(mats, 0)
        if utt_ids is None:
            return full
        ids = [u for p in self._parts for u in pq.read_table(p, columns=["utt_id"]).column("utt_id").to_pylist()]
        pos = {u: i for i, u in enumerate(ids)}
        missing = [u for u in utt_ids if u not in pos]
        if missing:
            raise KeyError(f"no embedding for {len(missing)} utterance(s), e.g. {missing[:3]}")
        return full[[pos[u] for u in utt_ids]]

    def frames(self, utt_id: str) -> np.ndarray:
        """Frame embeddings (50 Hz) of one utterance; needs a run with --granularity frame."""
        df = self.labels
        if "frame_file" not in df.columns:
            raise ValueError("this run has no frame embeddings (use --granularity frame)")
        r = df.loc[df.utt_id == utt_id]
        if r.empty:
            raise KeyError(utt_id)
        r = r.iloc[0]
        m = np.load(self.dir / r.frame_file, mmap_mode="r")
        return m[int(r.frame_offset): int(r.frame_offset) + int(r.frame_count)]


def what_it_is(d: Path) -> str:
    """What a directory that is not an output directory is, for the message."""
    if (d / layout.SHARDS).is_dir():
        return f"; it holds shards of an array job: run `batchser merge {d}` first"
    if (d / "segment.json").exists() or ((d / "segments").exists() and (d / "wav.scp").exists()):
        return (f"; it is a Kaldi data dir (speech segments written by `batchser segment`): label it with "
                f"`batchser run {d} --out OUT`, then open OUT")
    if (d / "wav.scp").exists():
        return f"; it is a Kaldi data dir: label it with `batchser run {d} --out OUT`, then open OUT"
    return ""


def open_results(out_dir: str | os.PathLike) -> Results:
    """Open a batchser output directory: a run's (labels, embeddings, errors, ...) or
    ``batchser features``' (``.features``); anything else is named in the error."""
    return Results(out_dir)
