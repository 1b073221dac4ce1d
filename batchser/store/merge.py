"""``batchser merge``: join the shards of an array job into one output directory.

Each shard is a complete output directory ``OUT/shards/shard-IIII-of-NNNN/`` (own manifest,
settings, parts). ``merge`` checks that every shard finished and links their parts into ``OUT``
as one dataset (parts renamed ``part-sIIII-...``), so ``open_results(OUT)`` and DuckDB globs work.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Dict, Tuple

from . import atomic, layout
from .layout import PART_RE

SHARD_DIR_RE = re.compile(r"^shard-(\d{4,})-of-(\d{4,})$")


class MergeError(RuntimeError):
    pass


def shard_status(d: Path) -> Tuple[bool, str]:
    """(finished, what to tell the user) for one shard's output directory."""
    m = d / layout.MANIFEST
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


def _finished_shards(out: Path) -> Dict[int, Path]:
    """index -> directory of every shard, after checking that all N exist, finished and agree."""
    sd = out / layout.SHARDS
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
    settings = {json.dumps(json.loads((p / layout.SETTINGS).read_text()), sort_keys=True)
                for p in have.values() if (p / layout.SETTINGS).exists()}
    if len(settings) > 1:
        problems.append("shards were run with different settings (model, dtype, ...)")
    if problems:
        raise MergeError("cannot merge:\n  " + "\n  ".join(problems))
    return have


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _merged_stem(i: int, part: Path) -> str:
    m = PART_RE.match(part.name)
    return f"part-s{i:04d}{m.group('ns') or ''}-{m.group('n')}"


def _link_shard(i: int, src: Path, out: Path) -> None:
    """Link one shard's parts into OUT under merged names; the tables' file columns follow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in layout.parts(src, layout.LABELS):
        new = _merged_stem(i, f)
        t = pq.read_table(f)
        for col, sub in (("emb_file", layout.EMBEDDINGS), ("frame_file", layout.FRAMES)):
            if col in t.column_names:
                _link(src / sub / f"{f.stem}.npy", out / sub / f"{new}.npy")
                t = t.set_column(t.column_names.index(col), col, pa.array([f"{sub}/{new}.npy"] * t.num_rows, pa.string()))
        if "npy_file" in t.column_names:
            for rel in t.column("npy_file").to_pylist():
                _link(src / rel, out / rel)
        (out / layout.LABELS).mkdir(parents=True, exist_ok=True)
        atomic.save_parquet(out / layout.LABELS / f"{new}.parquet", t)
    for f in layout.parts(src, layout.ERRORS):
        _link(f, out / layout.ERRORS / f"{_merged_stem(i, f)}.parquet")


def merge(out: str | os.PathLike) -> Dict:
    """Check every shard finished, then link all parts into OUT as one dataset. Re-running is harmless."""
    out = Path(out)
    have = _finished_shards(out)
    for sub in (layout.LABELS, layout.EMBEDDINGS, layout.FRAMES, layout.ERRORS, layout.NPY):
        d = out / sub
        if d.is_dir():
            foreign = [f.name for f in d.glob("part-*") if not re.match(r"part-s\d{4}", f.name)]
            if foreign:
                raise MergeError(f"{d} holds parts that no merge made ({foreign[0]}, ...): "
                                 "merge into a directory used only by shards")
            shutil.rmtree(d)

    tot = {"input": 0, "results_total": 0, "errors_total": 0}
    audio = wall = 0.0
    for i, p in sorted(have.items()):
        man = json.loads((p / layout.MANIFEST).read_text())
        for k in tot:
            tot[k] += man["counts"].get(k, 0)
        audio += man.get("audio_hours") or 0.0
        wall = max(wall, man.get("wall_seconds") or 0.0)
        _link_shard(i, p, out)
    (out / layout.LABELS).mkdir(exist_ok=True)
    (out / layout.ERRORS).mkdir(exist_ok=True)
    first = have[0]
    if (first / layout.SETTINGS).exists():
        shutil.copy2(first / layout.SETTINGS, out / layout.SETTINGS)
    man0 = json.loads((first / layout.MANIFEST).read_text())
    summary = {"merged_shards": len(have), "counts": tot, "audio_hours": audio,
               "longest_shard_wall_seconds": wall, "model": man0.get("model"),
               "versions": man0.get("versions"), "shards": {i: str(p) for i, p in sorted(have.items())}}
    atomic.write_text(out / layout.MANIFEST, json.dumps(summary, indent=2) + "\n")
    from .explanations import write_explanations

    write_explanations(out)  # speaker baselines need every shard's utterances
    return summary
