"""The writer: buffers rows, commits them as whole parts, and knows what earlier runs finished.

A part becomes visible when its table Parquet file is renamed into place; its .npy files are
renamed before that, so a visible table part always has its embeddings. A crash at any moment
leaves only whole parts (temporary files start with '.' and are removed on the next start).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..idtable import IdTable, IdTableBuilder
from . import atomic, layout, verify
from ..columns import prediction_fields
from .layout import ERROR_SCHEMA, PART_RE


def _ids(out: Path, table: str) -> Set[str]:
    ids: Set[str] = set()
    for f in layout.parts(out, table):
        ids.update(pq.read_table(f, columns=["utt_id"]).column("utt_id").to_pylist())
    return ids


def committed_ids(out_dir: str | os.PathLike, table: str = layout.LABELS) -> Tuple[Set[str], Set[str]]:
    """(ids in ``table``, ids in errors/) over every visible part of every namespace."""
    return _ids(Path(out_dir), table), _ids(Path(out_dir), layout.ERRORS)


def committed_table(out_dir: str | os.PathLike, *tables: str) -> IdTable:
    """The ids committed in ``tables``, held compactly (a resume of tens of millions of rows)."""
    b = IdTableBuilder()
    for table in tables:
        for f in layout.parts(Path(out_dir), table):
            b.add(pq.read_table(f, columns=["utt_id"]).column("utt_id").to_pylist())
    return b.build()


def count_rows(out_dir: str | os.PathLike, table: str) -> int:
    """Rows committed in ``table`` (from the parts' metadata: nothing is read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in layout.parts(Path(out_dir), table))


class PartWriter:
    """Rows of one table (``labels`` or ``features``) plus the errors table, in numbered parts.

    Args:
        out_dir: the output directory (created).
        table: the table's directory name.
        schema: the table's Arrow schema.
        array_dirs: directories of parts (.npy, or the timeline's .parquet) that belong to the
            table's part of the same name: written before it, removed when it never became visible.
        part_size: rows per committed part (what a crash can cost at most).
        settings: what changes results; written on first use, compared on every resume
            (``None``: no settings file).
        namespace: parts named ``part-<ns>-NNNNN``; such a writer touches only its own files,
            so several can write into one directory at once (one per device process).
    """

    def __init__(self, out_dir: str | os.PathLike, *, table: str, schema: pa.Schema,
                 array_dirs: Sequence[str] = (), part_size: int = 2000, settings: Optional[Dict] = None,
                 namespace: Optional[str] = None):
        self.out = Path(out_dir)
        if namespace is not None and not layout.NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(f"bad part namespace {namespace!r}")
        self.namespace = namespace
        self.table, self.schema, self.array_dirs = table, schema, tuple(array_dirs)
        self.part_size = part_size
        for sub in (table, layout.ERRORS) + self.array_dirs:
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        if settings is not None:
            self._check_settings(settings)
        self._clean()
        if namespace is None:  # a damaged part is never taken as done (device writers: the parent checked)
            verify.check(self.out, tables=(self.table, layout.ERRORS))
        self._next = self._scan()  # fills finished_ids
        self._rows: List[dict] = []
        self._errors: List[dict] = []
        self.n_written = 0
        self.n_errors_written = 0

    # -- resume -------------------------------------------------------------------------
    def _check_settings(self, settings: Dict) -> None:
        """Refuse to resume into a directory made with settings that change results."""
        path = self.out / layout.SETTINGS
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as e:
                raise ValueError(f"cannot resume {self.out}: {path} is not the JSON batchser wrote ({e}); it says "
                                 "what changes results, so nothing is trusted without it. Restore it, or start "
                                 "again with --overwrite (or use a new --out directory)") from e
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            # a key written only when set (--asr, --head, --threshold, ...) that was set then and is not now
            diff.update({k: (v, None) for k, v in old.items() if k not in settings and v is not None})
            if diff:
                lines = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise ValueError(
                    f"cannot resume {self.out}: it was made with other settings ({lines}). "
                    "Use a new --out directory, or --overwrite to start again.")
        else:
            atomic.write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    def _mine(self, name: str) -> bool:
        """Whether this writer may clean up ``name`` (all files without a namespace)."""
        if self.namespace is None:
            return True
        m = PART_RE.match(name.lstrip(".").removesuffix(".tmp"))
        return bool(m) and m.group("ns") == self.namespace

    def _clean(self) -> None:
        """Remove temporaries and .npy parts whose table part never became visible."""
        for sub in (self.table, layout.ERRORS) + self.array_dirs:
            for f in (self.out / sub).iterdir():
                if f.name.startswith(".") and f.name.endswith(".tmp") and self._mine(f.name):
                    f.unlink()
        visible = {f.stem for f in layout.parts(self.out, self.table)}
        for sub in self.array_dirs:
            for f in (self.out / sub).glob("part-*"):
                if f.suffix in (".npy", ".parquet") and f.stem not in visible and self._mine(f.name):
                    f.unlink()

    def _scan(self) -> int:
        """Collect the ids earlier runs committed; return this writer's next part number."""
        nums = [-1]
        for sub in (self.table, layout.ERRORS):
            for f in layout.parts(self.out, sub):
                m = PART_RE.match(f.name)
                if m and m.group("ns") == self.namespace:
                    nums.append(int(m.group("n")))
        self.finished_ids: IdTable = committed_table(self.out, self.table, layout.ERRORS)
        """Utterances earlier runs committed (results or errors): what a resume skips."""
        if layout.parts(self.out, self.table):
            existing = pq.read_schema(layout.parts(self.out, self.table)[0])
            if existing.names != self.schema.names:
                raise ValueError(
                    f"{self.out} holds results with other columns (another model, granularity or label file?); "
                    "use a new --out directory, or --overwrite to start again")
        return max(nums) + 1

    def drop_errors(self) -> int:
        """``--retry-errors``: delete the committed error parts so those utterances run again.

        Called only once the directory is known to be resumable (settings checked)."""
        parts = layout.parts(self.out, layout.ERRORS)
        for f in parts:
            f.unlink()
        self.finished_ids = committed_table(self.out, self.table)
        return len(parts)

    # -- writing ------------------------------------------------------------------------
    def add_rows(self, rows: List[dict]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= self.part_size:
            self.flush()

    def add_batch(self, *, rows: List[dict], errors: Sequence[Tuple[str, str, str]], **arrays) -> None:
        """A scored batch: its error rows ``(utt_id, stage, message)`` first, then its result rows
        (``arrays``: what :class:`OutputWriter` keeps beside them; a plain table keeps none)."""
        for e in errors:
            self.add_error(*e)
        if rows:
            self.add_rows(rows)

    def add_error(self, utt_id: str, stage: str, message: str) -> None:
        self._errors.append({"utt_id": utt_id, "stage": stage, "message": message})
        if len(self._errors) >= self.part_size:
            self.flush()

    def _write_arrays(self, name: str, rows: List[dict]) -> None:
        """Write the part's .npy files (before its table) and point the rows at them."""

    def _clear_arrays(self) -> None:
        """Forget the buffered arrays (their part was committed)."""

    def flush(self) -> None:
        """Commit buffered rows as one part (arrays first, the table last).

        If a write fails (disk full), the buffers stay as they were: a later flush retries
        under the next part name, and files of the failed part are never visible (an .npy
        without its table is removed on the next start).
        """
        if not self._rows and not self._errors:
            return
        name = layout.part_stem(self.namespace, self._next)
        self._next += 1
        if self._rows:
            rows = self._rows
            self._write_arrays(name, rows)
            atomic.save_parquet(self.out / self.table / f"{name}.parquet", pa.Table.from_pylist(rows, schema=self.schema))
            self.n_written += len(rows)
            self._rows = []
            self._clear_arrays()
        if self._errors:
            atomic.save_parquet(self.out / layout.ERRORS / f"{name}.parquet",
                                pa.Table.from_pylist(self._errors, schema=ERROR_SCHEMA))
            self.n_errors_written += len(self._errors)
            self._errors = []

    def ensure_errors_part(self) -> None:
        """An empty errors part with the full schema when there is none, so that a query over
        ``errors/*.parquet`` (DuckDB, Spark) works on a run without errors too."""
        if not layout.parts(self.out, layout.ERRORS):
            name = layout.part_stem(self.namespace, self._next)
            self._next += 1
            atomic.save_parquet(self.out / layout.ERRORS / f"{name}.parquet", ERROR_SCHEMA.empty_table())

    def write_manifest(self, manifest: Dict) -> None:
        atomic.write_text(self.out / layout.MANIFEST,
                          json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")


class OutputWriter(PartWriter):
    """The labels table with its embeddings (and frame embeddings, per-utterance .npy files, and
    the timeline's windows), its columns as the run's stages declare them.

    Args:
        labels: a plain single-label classifier's classes: its prediction columns, when
            ``predictions`` is not given.
        model_id: the ``model`` column.
        predictions, annotations: the stages' columns (``layout.labels_schema``).
        window_fields: the columns of a timeline window (``--timeline``), or None: no timeline.
    """

    def __init__(self, out_dir: str | os.PathLike, labels: Sequence[str] = (), model_id: str = "", *,
                 predictions: Optional[Sequence] = None, annotations: Sequence = (),
                 window_fields: Optional[Sequence] = None, emb_dtype: str = "float32", frames: bool = False,
                 with_ref: bool = False, part_size: int = 2000, settings: Optional[Dict] = None,
                 npy_layout: str = "parts", namespace: Optional[str] = None):
        if predictions is None:
            predictions = prediction_fields(labels)
        self.window_schema = layout.timeline_schema(window_fields) if window_fields is not None else None
        self.model_id = model_id
        self.emb_dtype = np.dtype(emb_dtype)
        self.frames = frames
        self.per_utt = npy_layout == "per-utt"
        self.with_ref = with_ref
        arrays = ((layout.EMBEDDINGS,) + ((layout.FRAMES,) if frames else ())
                  + ((layout.TIMELINE,) if self.window_schema is not None else ()))
        super().__init__(out_dir, table=layout.LABELS, array_dirs=arrays, part_size=part_size,
                         schema=layout.labels_schema(predictions=predictions, annotations=annotations, frames=frames,
                                                     with_ref=with_ref, per_utt=self.per_utt),
                         settings=settings or {}, namespace=namespace)
        if self.per_utt:
            (self.out / layout.NPY).mkdir(exist_ok=True)
            if namespace is None:
                for f in (self.out / layout.NPY).glob(".*.tmp"):
                    f.unlink()
        self._emb: List[np.ndarray] = []
        self._frames: List[np.ndarray] = []
        self._windows: List[dict] = []

    def add(self, rows: List[dict], embeddings: np.ndarray, frames: Optional[List[np.ndarray]] = None,
            windows: Optional[List[dict]] = None) -> None:
        """Buffer result rows with their embeddings (and frames; and ``windows``: the timeline
        rows of these utterances, committed in the same part)."""
        assert len(rows) == len(embeddings)
        if self.window_schema is not None:
            assert windows is not None
            self._windows.extend(windows)
        self._emb.append(np.asarray(embeddings))
        if self.frames:
            assert frames is not None and len(frames) == len(rows)
            self._frames.extend(frames)
        self.add_rows(rows)

    def add_batch(self, *, rows: List[dict], errors: Sequence[Tuple[str, str, str]], embeddings=None,
                  frames: Optional[List[np.ndarray]] = None, windows: Optional[List[dict]] = None) -> None:
        for e in errors:
            self.add_error(*e)
        if rows:
            self.add(rows, embeddings, frames if self.frames else None, windows)

    def _write_arrays(self, name: str, rows: List[dict]) -> None:
        if self.window_schema is not None:
            atomic.save_parquet(self.out / layout.TIMELINE / f"{name}.parquet",
                                pa.Table.from_pylist(self._windows, schema=self.window_schema))
        emb = np.concatenate(self._emb, 0).astype(self.emb_dtype)
        for i, r in enumerate(rows):
            r["model"] = self.model_id
            r["emb_file"] = f"{layout.EMBEDDINGS}/{name}.npy"
            r["emb_row"] = i
        if self.frames:
            counts = [len(f) for f in self._frames]
            offs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts else []
            for r, o, c in zip(rows, offs, counts):
                r["frame_file"] = f"{layout.FRAMES}/{name}.npy"
                r["frame_offset"] = int(o)
                r["frame_count"] = int(c)
            atomic.save_npy(self.out / layout.FRAMES / f"{name}.npy",
                            np.concatenate(self._frames, 0).astype(self.emb_dtype))
        if self.per_utt:  # like funasr's output_dir: <utt>.npy, the embedding (or frames)
            for k, r in enumerate(rows):
                fname = f"{layout.NPY}/{layout.per_utt_name(r['utt_id'])}.npy"
                atomic.save_npy(self.out / fname, self._frames[k].astype(self.emb_dtype) if self.frames else emb[k])
                r["npy_file"] = fname
        atomic.save_npy(self.out / layout.EMBEDDINGS / f"{name}.npy", emb)

    def _clear_arrays(self) -> None:
        self._emb, self._frames, self._windows = [], [], []


def features_writer(out_dir: str | os.PathLike, *, annotations: Sequence, with_ref: bool, part_size: int = 2000,
                    settings: Optional[Dict] = None) -> PartWriter:
    """``batchser features``: the features table (no model, no embeddings) and errors; a re-run
    with other ``settings`` (the feature sets) is refused (settings.json)."""
    return PartWriter(out_dir, table=layout.FEATURES, schema=layout.features_schema(annotations=annotations,
                                                                                    with_ref=with_ref),
                      part_size=part_size, settings=settings)
