"""Cluster array jobs: which share of the corpus this task runs, and merging the shares.

A corpus is split into N shards that are deterministic (every task computes the same split from
the same corpus), disjoint, cover every input utterance, and carry about equal audio (greedy on
durations known without decoding). The split is computed on the whole corpus, never on what is
left, so a resubmitted task gets the same share and resumes it.

Each shard writes a complete output directory ``OUT/shards/shard-IIII-of-NNNN/`` (own manifest,
settings, parts). ``merge`` checks that every shard finished and links their parts into ``OUT``
as one dataset (parts renamed ``part-sIIII-...``), so ``open_results(OUT)`` and DuckDB globs work.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

SHARD_DIR_RE = re.compile(r"^shard-(\d{4,})-of-(\d{4,})$")


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
    """utt_id -> shard: longest first to the lightest shard (ties by id), so shards carry equal audio."""
    order = sorted(range(len(ids)), key=lambda i: (-(durations[i] if durations[i] is not None else unknown), ids[i]))
    loads = [0.0] * count
    out: Dict[str, int] = {}
    import heapq

    heap = [(0.0, k) for k in range(count)]
    for i in order:
        load, k = heapq.heappop(heap)
        out[ids[i]] = k
        d = durations[i] if durations[i] is not None else unknown
        loads[k] = load + d
        heapq.heappush(heap, (loads[k], k))
    return out


# -- merge ----------------------------------------------------------------------------------
class MergeError(RuntimeError):
    pass


def shard_status(d: Path) -> Tuple[bool, str]:
    m = d / "manifest.json"
    if not m.exists():
        return False, "no manifest.json (never ran, or still running)"
    man = json.loads(m.read_text(encoding="utf-8"))
    c = man.get("counts", {})
    done = c.get("results_total", 0) + c.get("errors_total", 0)
    if done < c.get("input", 0):
        return False, f"incomplete: {done} of {c.get('input')} utterances done (re-run the task to resume)"
    if man.get("device_failures"):
        return False, "a device process failed"
    return True, f"{c.get('results_total')} results, {c.get('errors_total')} errors"


def merge(out: str | os.PathLike) -> Dict:
    """Check every shard finished, then link all parts into OUT as one dataset. Re-running is harmless."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .outputs import _PART_RE, _save_parquet, atomic_write_text

    out = Path(out)
    sd = out / "shards"
    dirs = sorted(p for p in sd.iterdir() if SHARD_DIR_RE.match(p.name)) if sd.is_dir() else []
    if not dirs:
        raise MergeError(f"{out} has no shards/shard-IIII-of-NNNN directories: nothing to merge")
    counts = {int(SHARD_DIR_RE.match(p.name).group(2)) for p in dirs}
    if len(counts) != 1:
        raise MergeError(f"{sd} mixes shard counts {sorted(counts)}: runs with different N in one OUT")
    n = counts.pop()
    have = {int(SHARD_DIR_RE.match(p.name).group(1)): p for p in dirs}
    problems = [f"shard {i}/{n}: missing (never started)" for i in range(n) if i not in have]
    for i, p in sorted(have.items()):
        ok, msg = shard_status(p)
        if not ok:
            problems.append(f"shard {i}/{n} ({p}): {msg}")
    settings = {json.dumps(json.loads((p / "settings.json").read_text()), sort_keys=True)
                for p in have.values() if (p / "settings.json").exists()}
    if len(settings) > 1:
        problems.append("shards were run with different settings (model, dtype, ...)")
    if problems:
        raise MergeError("cannot merge:\n  " + "\n  ".join(problems))

    for sub in ("labels", "embeddings", "frames", "errors", "npy"):
        d = out / sub
        if d.is_dir():
            foreign = [f.name for f in d.glob("part-*") if not re.match(r"part-s\d{4}", f.name)]
            if foreign:
                raise MergeError(f"{d} holds parts that no merge made ({foreign[0]}, ...): "
                                 "merge into a directory used only by shards")
            shutil.rmtree(d)

    def link(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    tot = {"input": 0, "results_total": 0, "errors_total": 0}
    audio = wall = 0.0
    for i, p in sorted(have.items()):
        man = json.loads((p / "manifest.json").read_text())
        for k in tot:
            tot[k] += man["counts"].get(k, 0)
        audio += man.get("audio_hours") or 0.0
        wall = max(wall, man.get("wall_seconds") or 0.0)
        for f in sorted((p / "labels").glob("part-*.parquet")):
            m = _PART_RE.match(f.name)
            new = f"part-s{i:04d}{m.group('ns') or ''}-{m.group('n')}"
            t = pq.read_table(f)
            cols = {}
            for col, sub in (("emb_file", "embeddings"), ("frame_file", "frames")):
                if col in t.column_names:
                    link(p / sub / f"{f.stem}.npy", out / sub / f"{new}.npy")
                    cols[col] = pa.array([f"{sub}/{new}.npy"] * t.num_rows, pa.string())
            if "npy_file" in t.column_names:
                for rel in t.column("npy_file").to_pylist():
                    link(p / rel, out / rel)
            for col, arr in cols.items():
                t = t.set_column(t.column_names.index(col), col, arr)
            (out / "labels").mkdir(parents=True, exist_ok=True)
            _save_parquet(out / "labels" / f"{new}.parquet", t)
        for f in sorted((p / "errors").glob("part-*.parquet")):
            m = _PART_RE.match(f.name)
            link(f, out / "errors" / f"part-s{i:04d}{m.group('ns') or ''}-{m.group('n')}.parquet")
    (out / "labels").mkdir(exist_ok=True)
    (out / "errors").mkdir(exist_ok=True)
    first = have[0]
    if (first / "settings.json").exists():
        shutil.copy2(first / "settings.json", out / "settings.json")
    man0 = json.loads((first / "manifest.json").read_text())
    summary = {"merged_shards": n, "counts": tot, "audio_hours": audio,
               "longest_shard_wall_seconds": wall, "model": man0.get("model"),
               "versions": man0.get("versions"), "shards": {i: str(p) for i, p in sorted(have.items())}}
    atomic_write_text(out / "manifest.json", json.dumps(summary, indent=2) + "\n")
    from .prosody import write_explanations

    write_explanations(out)  # speaker baselines need every shard's utterances
    return summary
