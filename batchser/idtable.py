"""Compact sets and tables of utterance ids, for corpora of tens of millions of utterances.

A Python set or dict of 10 million ids holds about 1 GB; these hold 16 bytes per id (two 64-bit
hashes, ``hash`` of the id and of the id with a salt) plus the value, in sorted numpy arrays.
Lookups compare both hashes, so a wrong answer needs a 128-bit collision: for 10^8 ids about
one chance in 10^22. Hashes are Python's (keyed per process): tables never leave a process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

BLOCK = 20_000  # ids hashed and looked up at once (and lines parsed at once by the reader's index)


def hashes(ids: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """(first, second) 64-bit hashes of ``ids``."""
    n = len(ids)
    return (np.fromiter(map(hash, ids), dtype=np.int64, count=n),
            np.fromiter((hash(s + "\x1f") for s in ids), dtype=np.int64, count=n))


class IdTable:
    """Ids -> a value (or just membership): built once, then looked up a chunk at a time.

    Args:
        h1, h2: the ids' hashes (:func:`hashes`), in any order.
        values: one value per id (a numpy array), or None for a set.

    Of one id given several times the first wins; :attr:`n_duplicates` counts the others.
    """

    def __init__(self, h1: np.ndarray, h2: np.ndarray, values: Optional[np.ndarray] = None):
        order = np.argsort(h1, kind="stable")  # equal first hashes keep their input order
        h1 = h1[order]
        h2 = h2[order]
        values = None if values is None else values[order]
        del order
        same = (h1[1:] == h1[:-1]) & (h2[1:] == h2[:-1])  # one id on several lines (twins: rarer than 1e-12)
        self.n_duplicates = int(same.sum())
        if self.n_duplicates:  # keep the first line of each id
            first = np.concatenate(([True], ~same))
            h1, h2 = h1[first], h2[first]
            values = None if values is None else values[first]
        self.h1, self.h2, self.values = h1, h2, values

    @classmethod
    def empty(cls) -> "IdTable":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z)

    @classmethod
    def of(cls, ids: Iterable[str]) -> "IdTable":
        """A set of ``ids``."""
        b = IdTableBuilder()
        for chunk in _chunks(ids):
            b.add(chunk)
        return b.build()

    def __len__(self) -> int:
        return len(self.h1)

    def _find(self, ids: Sequence[str]) -> np.ndarray:
        """Index of each id in the table, -1 where absent."""
        q1, q2 = hashes(ids)
        pos = np.searchsorted(self.h1, q1)
        out = np.full(len(ids), -1, dtype=np.int64)
        if not len(self.h1):
            return out
        pos_c = np.minimum(pos, len(self.h1) - 1)
        hit = self.h1[pos_c] == q1
        exact = hit & (self.h2[pos_c] == q2)
        out[exact] = pos_c[exact]
        for i in np.flatnonzero(hit & ~exact):  # equal first hashes: look at the neighbours (rare)
            j = pos_c[i] + 1
            while j < len(self.h1) and self.h1[j] == q1[i]:
                if self.h2[j] == q2[i]:
                    out[i] = j
                    break
                j += 1
        return out

    def contains(self, ids: Sequence[str]) -> np.ndarray:
        """A bool per id."""
        return self._find(ids) >= 0

    def __contains__(self, utt_id: str) -> bool:
        return bool(self.contains([utt_id])[0])

    def get(self, ids: Sequence[str], missing=None) -> List:
        """The value of each id (``missing`` where absent)."""
        idx = self._find(ids)
        vals = self.values
        return [vals[i] if i >= 0 else missing for i in idx.tolist()]


class IdTableBuilder:
    """Collects ids (and values) chunk by chunk; :meth:`build` sorts them once."""

    def __init__(self):
        self._h1: List[np.ndarray] = []
        self._h2: List[np.ndarray] = []
        self._v: List[np.ndarray] = []

    def add(self, ids: Sequence[str], values: Optional[np.ndarray] = None) -> None:
        if not len(ids):
            return
        a, b = hashes(ids)
        self._h1.append(a)
        self._h2.append(b)
        if values is not None:
            self._v.append(np.asarray(values))

    def build(self) -> IdTable:
        if not self._h1:
            return IdTable.empty()
        h1, h2 = np.concatenate(self._h1), np.concatenate(self._h2)
        v = np.concatenate(self._v) if self._v else None
        self._h1, self._h2, self._v = [], [], []
        return IdTable(h1, h2, v)


def _chunks(items: Iterable, size: int = BLOCK) -> Iterator[list]:
    buf = []
    for x in items:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


class SideTable:
    """A Kaldi side table (``utt2spk``, ``utt2emo``, ``utt2dur``, ``reco2dur``) held compactly.

    String values are stored as codes into a list of distinct values (speakers and labels are
    few); float values as float64. Bad lines and duplicate ids are reported through ``warn``
    (file:line), the first line of an id is kept, as Kaldi's tools do.
    """

    def __init__(self, path: Path, *, kind: str, warn: Callable[[str, str], None],
                 lines: Callable[[Path], Iterator[Tuple[int, str]]], only: Optional[np.ndarray] = None):
        """``only``: first hashes (:func:`hashes`) of the ids to keep (None: all): a shard task
        keeps its own lines of a corpus-wide table."""
        self.path, self.kind = path, kind
        self.distinct: List[str] = []
        self.table = IdTable.empty()
        self.present = False  # the file has at least one good line (for any task)
        if not path.exists():
            return
        keep = None if only is None else set(only.tolist())
        codes: dict = {}
        b = IdTableBuilder()
        keys: List[str] = []
        vals: list = []
        for no, line in lines(path):
            parts = line.split(None, 1)
            if len(parts) < 2:  # an id alone (split drops trailing white space)
                warn(parts[0], f"{path}:{no}: malformed line, expected '<id> <value>': {line!r}")
                continue
            self.present = True
            key = parts[0]
            if keep is not None and hash(key) not in keep:
                continue
            vals.append(parts[1].strip())
            keys.append(key)
            if len(keys) >= BLOCK:
                self._add(b, keys, vals, codes)
                keys, vals = [], []
        self._add(b, keys, vals, codes)
        self.distinct = list(codes)
        self.table = b.build()
        if self.table.n_duplicates:
            self._report_duplicates(lines, warn)

    def _add(self, b: "IdTableBuilder", keys: List[str], vals: List[str], codes: dict) -> None:
        if self.kind != "float":
            vals = [codes.setdefault(v, len(codes)) for v in vals]
        b.add(keys, self._array(vals))

    def _array(self, vals: list) -> np.ndarray:
        if self.kind == "float":
            out = np.empty(len(vals))
            for i, v in enumerate(vals):
                try:
                    f = float(v)
                except ValueError:
                    f = np.nan
                out[i] = f
            return out
        return np.asarray(vals, dtype=np.int32)

    def _report_duplicates(self, lines, warn) -> None:
        """Name the ignored duplicate lines (a second read of the table, only when there are any)."""
        first: dict = {}
        for no, line in lines(self.path):
            key = line.split(None, 1)[0]
            if len(line.split(None, 1)) < 2:
                continue
            if key in first:
                warn(key, f"{self.path}:{no}: duplicate id {key!r} (first at line {first[key]}); line ignored")
            else:
                first[key] = no

    def __bool__(self) -> bool:
        return len(self.table) > 0

    def __len__(self) -> int:
        return len(self.table)

    def get(self, ids: Sequence[str]) -> List:
        """Values for ``ids``: strings, or floats (None where absent or not a number)."""
        if not len(self.table):
            return [None] * len(ids)
        raw = self.table.get(ids)
        if self.kind == "float":
            return [None if v is None or v != v else float(v) for v in raw]
        d = self.distinct
        return [None if v is None else d[v] for v in raw]
