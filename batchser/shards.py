"""Which share of the work a task or a device runs (before anything is read or decoded).

A corpus is split into N shares that are deterministic (every task computes the same split from
the same corpus), disjoint, cover every input utterance, and carry about equal audio (durations
known without decoding). For array jobs the split is computed on the whole corpus, never on what
is left, so a resubmitted task gets the same share and resumes it: contiguous runs of recordings
(:func:`contiguous`, computed while the reader streams the list). A multi-device run splits each
window of what is left among its devices greedily (:func:`assign`). Joining the shards' output
directories afterwards is the store's job (:mod:`batchser.store.merge`).
"""
from __future__ import annotations

import heapq
import os
import re
import zlib
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"bad shard {self.index}/{self.count}: need 0 <= index < count")

    @property
    def name(self) -> str:
        return f"shard-{self.index:04d}-of-{self.count:04d}"


def _int(env: Mapping[str, str], key: str) -> Optional[int]:
    v = env.get(key)
    try:
        return int(v) if v not in (None, "", "undefined") else None
    except ValueError:
        return None


def detect_from_env(env: Mapping[str, str] = os.environ, num_shards: Optional[int] = None) -> Optional[Shard]:
    """Array index and count from SLURM, SGE/UGE, LSF, PBS/Torque or AWS Batch variables.

    Schedulers that do not export the array size (PBS, Torque, AWS Batch) need ``num_shards``.
    """
    tid = _int(env, "SLURM_ARRAY_TASK_ID")
    if tid is not None:
        lo, hi = _int(env, "SLURM_ARRAY_TASK_MIN"), _int(env, "SLURM_ARRAY_TASK_MAX")
        step = _int(env, "SLURM_ARRAY_TASK_STEP") or 1
        count = _int(env, "SLURM_ARRAY_TASK_COUNT")
        if lo is None or hi is None:
            raise ValueError("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_MIN/MAX: pass --shard I/N")
        span = (hi - lo) // step + 1
        if count is not None and count != span:
            raise ValueError(f"SLURM array {lo}-{hi}:{step} has {count} tasks, not a plain range: pass --shard I/N")
        return Shard((tid - lo) // step, num_shards or span)
    tid = _int(env, "SGE_TASK_ID")
    if tid is not None:
        lo, hi = _int(env, "SGE_TASK_FIRST") or 1, _int(env, "SGE_TASK_LAST")
        step = _int(env, "SGE_TASK_STEPSIZE") or 1
        if hi is None:
            raise ValueError("SGE_TASK_ID is set but not SGE_TASK_LAST: pass --shard I/N")
        return Shard((tid - lo) // step, num_shards or (hi - lo) // step + 1)
    tid = _int(env, "LSB_JOBINDEX")
    if tid:  # LSF sets 0 for non-array jobs; arrays are job[1-N]
        hi, step = _int(env, "LSB_JOBINDEX_END"), _int(env, "LSB_JOBINDEX_STEP") or 1
        if hi is None and num_shards is None:
            raise ValueError("LSB_JOBINDEX is set but not LSB_JOBINDEX_END: pass --num-shards")
        return Shard((tid - 1) // step, num_shards or (hi - 1) // step + 1)
    for key, base in (("PBS_ARRAY_INDEX", None), ("PBS_ARRAYID", None), ("AWS_BATCH_JOB_ARRAY_INDEX", 0)):
        tid = _int(env, key)
        if tid is not None:
            if num_shards is None:
                raise ValueError(f"{key} is set but the scheduler does not export the array size: "
                                 "pass --num-shards N (indices must run 0..N-1)")
            return Shard(tid, num_shards)
    return None


def parse_shard(spec: Optional[str], num_shards: Optional[int] = None, shard_index: Optional[int] = None,
                env: Mapping[str, str] = os.environ) -> Optional[Shard]:
    """``--shard I/N`` | ``--shard auto`` | ``--num-shards N --shard-index I`` -> Shard or None."""
    if spec in (None, ""):
        if num_shards is None and shard_index is None:
            return None
        if num_shards is None or shard_index is None:
            raise ValueError("--num-shards and --shard-index go together (or use --shard I/N)")
        return Shard(shard_index, num_shards)
    if spec == "auto":
        s = detect_from_env(env, num_shards)
        if s is None:
            raise ValueError("--shard auto: no array-job variables found (SLURM_ARRAY_TASK_ID, SGE_TASK_ID, "
                             "LSB_JOBINDEX, PBS_ARRAY_INDEX, PBS_ARRAYID, AWS_BATCH_JOB_ARRAY_INDEX)")
        return s
    m = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not m:
        raise ValueError(f"--shard {spec!r}: expected I/N (0-based index) or auto")
    return Shard(int(m.group(1)), int(m.group(2)))


def assign(ids: Sequence[str], durations: Sequence[Optional[float]], count: int, unknown: float = 10.0) -> Dict[str, int]:
    """utt_id -> share: longest first to the lightest share (ties by id), so shares carry equal audio.

    A duration of ``None`` (not known without decoding) counts as ``unknown`` seconds.
    """
    durs = [d if d is not None else unknown for d in durations]
    order = sorted(range(len(ids)), key=lambda i: (-durs[i], ids[i]))
    out: Dict[str, int] = {}
    heap = [(0.0, k) for k in range(count)]
    for i in order:
        load, k = heapq.heappop(heap)
        out[ids[i]] = k
        heapq.heappush(heap, (load + durs[i], k))
    return out


def split(items: Sequence, ids: Sequence[str], durations: Sequence[Optional[float]], count: int) -> List[List]:
    """``items`` in ``count`` lists by :func:`assign` (each list keeps the input order)."""
    share = assign(ids, durations, count)
    out: List[List] = [[] for _ in range(count)]
    for item, i in zip(items, ids):
        out[share[i]].append(item)
    return out


def contiguous(durations: np.ndarray, count: int) -> np.ndarray:
    """Share of each unit (recording or line, in list order) for ``count`` shares: contiguous runs
    of about equal audio, as Kaldi's ``split_data.sh`` cuts a sorted data dir.

    A unit goes to the share its midpoint falls in on the cumulative-audio axis, so each share
    differs from ``total / count`` by at most one unit's audio. Needs one pass and no sort:
    every task of an array job computes it from the same list in O(1) memory per unit.
    """
    d = np.maximum(np.asarray(durations, dtype=np.float64), 0.0)
    if count <= 1 or not len(d):
        return np.zeros(len(d), dtype=np.int64)
    cum = np.cumsum(d)
    total = cum[-1]
    if total <= 0:
        return (np.arange(len(d)) * count // len(d)).astype(np.int64)
    mid = cum - d / 2
    return np.minimum((mid / total * count).astype(np.int64), count - 1)


def error_share(utt_id: str, count: int) -> int:
    """The share of an error row (a line bad on its own): stable across processes and runs."""
    return zlib.crc32(utt_id.encode("utf-8", "surrogatepass")) % count if count > 1 else 0
