"""Output directory: Parquet label/error tables, .npy embeddings, manifest; atomic parts, resume.

Layout (the contract, also in the README)::

    OUT/labels/part-NNNNN.parquet      one row per successful utterance
    OUT/embeddings/part-NNNNN.npy      rows aligned with the labels part of the same name
    OUT/frames/part-NNNNN.npy          (--granularity frame) frame embeddings, concatenated
    OUT/errors/part-NNNNN.parquet      utt_id, stage, message
    OUT/manifest.json

A part becomes visible when its labels Parquet file is renamed into place; its .npy files are
renamed before that, so a visible table part always has its embeddings. A crash at any moment
leaves only whole parts (temporary files start with '.' and are removed on the next start).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# part-00012.parquet, or part-d1-00012.parquet in a namespace (one per device process / shard)
_PART_RE = re.compile(r"^part-(?:(?P<ns>[A-Za-z0-9]+)-)?(?P<n>\d{5,})\.(?:parquet|npy)$")


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    _commit(tmp, path)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, arr)
    _commit(tmp, path)


def _save_parquet(path: Path, table: pa.Table) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    pq.write_table(table, tmp)
    _commit(tmp, path)


def score_column(label: str) -> str:
    return f"score_{label}"


ERROR_SCHEMA = pa.schema([("utt_id", pa.string()), ("stage", pa.string()), ("message", pa.string())])


def labels_schema(labels: Sequence[str], frames: bool, with_ref: bool, per_utt: bool = False,
                  prosody: bool = False) -> pa.Schema:
    fields = [
        ("utt_id", pa.string()), ("rec_id", pa.string()), ("spk", pa.string()),
        ("start", pa.float64()), ("end", pa.float64()), ("duration", pa.float64()),
        ("label", pa.string()), ("score", pa.float32()),
    ]
    fields += [(score_column(l), pa.float32()) for l in labels]
    fields += [("model", pa.string()), ("emb_file", pa.string()), ("emb_row", pa.int64())]
    if frames:
        fields += [("frame_file", pa.string()), ("frame_offset", pa.int64()), ("frame_count", pa.int64())]
    if per_utt:
        fields += [("npy_file", pa.string())]
    if prosody:
        from .prosody import COLUMNS

        fields += [(c, pa.float64()) for c in COLUMNS]
    if with_ref:
        fields += [("ref_label", pa.string())]
    return pa.schema(fields)


def per_utt_name(utt_id: str) -> str:
    """File stem for ``--npy-layout per-utt``: the id itself when safe, else a sanitised id plus a
    short hash (so two ids that sanitise alike never share a file). Never escapes its directory."""
    import hashlib

    from .corpus import safe_filename

    safe = safe_filename(utt_id)
    if safe == utt_id:
        return safe
    return f"{safe[:180]}-{hashlib.sha1(utt_id.encode('utf-8')).hexdigest()[:8]}"


class OutputWriter:
    """Buffers results and commits them as whole parts; knows what earlier runs finished."""

    def __init__(self, out_dir: str | os.PathLike, labels: Sequence[str], model_id: str,
                 emb_dtype: str = "float32", frames: bool = False, with_ref: bool = False,
                 part_size: int = 2000, settings: Optional[Dict] = None, npy_layout: str = "parts",
                 namespace: Optional[str] = None, prosody: bool = False):
        self.out = Path(out_dir)
        if namespace is not None and not re.fullmatch(r"[A-Za-z0-9]+", namespace):
            raise ValueError(f"bad part namespace {namespace!r}")
        self.namespace = namespace
        self.labels = list(labels)
        self.model_id = model_id
        self.emb_dtype = np.dtype(emb_dtype)
        self.frames = frames
        self.part_size = part_size
        self.per_utt = npy_layout == "per-utt"
        self.schema = labels_schema(self.labels, frames, with_ref, self.per_utt, prosody)
        self.with_ref = with_ref
        for sub in ("labels", "embeddings", "errors") + (("frames",) if frames else ()) + (("npy",) if self.per_utt else ()):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self._check_settings(settings or {})
        self._clean()
        self.done_ids: Set[str] = set()
        self.error_ids: Set[str] = set()
        self._next = 0
        self._scan()
        self._rows: List[dict] = []
        self._emb: List[np.ndarray] = []
        self._frames: List[np.ndarray] = []
        self._errors: List[dict] = []
        self.n_written = 0
        self.n_errors_written = 0

    # -- resume -------------------------------------------------------------------------
    def _check_settings(self, settings: Dict) -> None:
        """Refuse to resume into a directory made with settings that change results.

        ``settings.json`` is written when the directory is first used and compared on every resume.
        """
        path = self.out / "settings.json"
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                lines = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise ValueError(
                    f"cannot resume {self.out}: it was made with other settings ({lines}). "
                    "Use a new --out directory, or --overwrite to start again.")
        else:
            atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    def _mine(self, name: str) -> bool:
        """Whether this writer may clean up ``name`` (all files without a namespace)."""
        if self.namespace is None:
            return True
        m = _PART_RE.match(name.lstrip(".").removesuffix(".tmp"))
        return bool(m) and m.group("ns") == self.namespace

    def _clean(self) -> None:
        """Remove temporaries and .npy parts whose table part never became visible.

        A writer with a namespace touches only its own files: siblings may be writing beside it.
        """
        for sub in ("labels", "embeddings", "errors", "frames"):
            d = self.out / sub
            if not d.is_dir():
                continue
            for f in d.iterdir():
                if f.name.startswith(".") and f.name.endswith(".tmp") and self._mine(f.name):
                    f.unlink()
        if self.namespace is None and (self.out / "npy").is_dir():
            for f in (self.out / "npy").glob(".*.tmp"):
                f.unlink()
        visible = {f.stem for f in (self.out / "labels").glob("part-*.parquet")}
        for sub in ("embeddings", "frames"):
            d = self.out / sub
            if d.is_dir():
                for f in d.glob("part-*.npy"):
                    if f.stem not in visible and self._mine(f.name):
                        f.unlink()

    def _scan(self) -> None:
        nums = [-1]
        for sub, ids in (("labels", self.done_ids), ("errors", self.error_ids)):
            for f in sorted((self.out / sub).glob("part-*.parquet")):
                m = _PART_RE.match(f.name)
                if m and m.group("ns") == self.namespace:
                    nums.append(int(m.group("n")))
                ids.update(pq.read_table(f, columns=["utt_id"]).column("utt_id").to_pylist())
        existing = pq.read_schema(next(iter(sorted((self.out / "labels").glob("part-*.parquet"))))) \
            if self.done_ids else None
        if existing is not None and existing.names != self.schema.names:
            raise ValueError(
                f"{self.out} holds results with other columns (another model, granularity or label file?); "
                "use a new --out directory, or --overwrite to start again")
        self._next = max(nums) + 1

    @property
    def finished_ids(self) -> Set[str]:
        """Utterances a previous run already committed (results or errors)."""
        return self.done_ids | self.error_ids

    # -- writing ------------------------------------------------------------------------
    def add(self, rows: List[dict], embeddings: np.ndarray, frames: Optional[List[np.ndarray]] = None) -> None:
        assert len(rows) == len(embeddings)
        self._rows.extend(rows)
        self._emb.append(np.asarray(embeddings))
        if self.frames:
            assert frames is not None and len(frames) == len(rows)
            self._frames.extend(frames)
        if len(self._rows) >= self.part_size:
            self.flush()

    def add_error(self, utt_id: str, stage: str, message: str) -> None:
        self._errors.append({"utt_id": utt_id, "stage": stage, "message": message})
        if len(self._errors) >= self.part_size:
            self.flush()

    def flush(self) -> None:
        """Commit buffered rows as one part (embeddings first, the table last)."""
        if not self._rows and not self._errors:
            return
        name = f"part-{self.namespace}-{self._next:05d}" if self.namespace else f"part-{self._next:05d}"
        self._next += 1
        if self._rows:
            emb = np.concatenate(self._emb, 0).astype(self.emb_dtype)
            rows = self._rows
            for i, r in enumerate(rows):
                r["model"] = self.model_id
                r["emb_file"] = f"embeddings/{name}.npy"
                r["emb_row"] = i
            if self.frames:
                counts = [len(f) for f in self._frames]
                offs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts else []
                for r, o, c in zip(rows, offs, counts):
                    r["frame_file"] = f"frames/{name}.npy"
                    r["frame_offset"] = int(o)
                    r["frame_count"] = int(c)
                _save_npy(self.out / "frames" / f"{name}.npy",
                          np.concatenate(self._frames, 0).astype(self.emb_dtype))
            if self.per_utt:  # like funasr's output_dir: <utt>.npy, the embedding (or frames)
                for k, r in enumerate(rows):
                    fname = f"npy/{per_utt_name(r['utt_id'])}.npy"
                    _save_npy(self.out / fname, self._frames[k].astype(self.emb_dtype) if self.frames else emb[k])
                    r["npy_file"] = fname
            _save_npy(self.out / "embeddings" / f"{name}.npy", emb)
            table = pa.Table.from_pylist(rows, schema=self.schema)
            _save_parquet(self.out / "labels" / f"{name}.parquet", table)
            self.done_ids.update(r["utt_id"] for r in rows)
            self.n_written += len(rows)
        if self._errors:
            _save_parquet(self.out / "errors" / f"{name}.parquet",
                          pa.Table.from_pylist(self._errors, schema=ERROR_SCHEMA))
            self.error_ids.update(e["utt_id"] for e in self._errors)
            self.n_errors_written += len(self._errors)
        self._rows, self._emb, self._frames, self._errors = [], [], [], []

    def write_manifest(self, manifest: Dict) -> None:
        atomic_write_text(self.out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")


def drop_errors(out_dir: str | os.PathLike) -> int:
    """Delete error parts so that ``--retry-errors`` runs those utterances again."""
    n = 0
    for f in Path(out_dir, "errors").glob("part-*.parquet"):
        f.unlink()
        n += 1
    return n
