"""``batchser merge``: join the shards of an array job into one output directory.

Each shard is a complete output directory ``OUT/shards/shard-IIII-of-NNNN/`` (own manifest,
settings, parts). ``merge`` checks that every shard finished and links their parts into ``OUT``
as one dataset (parts renamed ``part-sIIII-...``), so ``open_results(OUT)`` and DuckDB globs work.

A merge holds OUT's lock and each shard's while it works, builds the merged tables in a staging
directory beside them, removes the old manifest, swaps the tables in by renames and writes the
new manifest last: killed at any point, OUT holds either the previous merge whole or no
manifest, and running merge again finishes the job. Counts and hours are recomputed from the
merged data, not taken from the shards' manifests (which describe each shard's last run only).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from . import atomic, layout
from . import verify
from .claim import check_claimable
from .explanations import write_explanations
from .layout import PART_RE

SHARD_DIR_RE = re.compile(r"^shard-(\d{4,})-of-(\d{4,})$")


class MergeError(RuntimeError):
    """Shards missing, unfinished or damaged (exit 1: re-submit those array indices, they resume)."""


class MergeRefused(ValueError):
    """Shards run with different settings (exit 2, as for every "settings differ" refusal): no
    re-submission makes them one dataset."""


def shard_status(d: Path) -> Tuple[bool, str]:
    """(finished, what to tell the user) for one shard's output directory, from its data."""
    from .writer import committed_ids

    m = d / layout.MANIFEST
    if not m.exists():
        return False, "no manifest.json (never ran, or still running)"
    man = json.loads(m.read_text(encoding="utf-8"))
    n_in = man.get("counts", {}).get("input", 0)
    ok, err = committed_ids(d)
    done = len(ok | err)
    if done < n_in:
        return False, f"incomplete: {done} of {n_in} utterances done (re-run the task to resume)"
    if man.get("device_failures"):
        return False, "a device process failed"
    return True, f"{len(ok)} results, {len(err)} errors"


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
        damaged = verify.problems(p)
        if damaged:
            problems.append(f"shard {i}/{n} ({p}): damaged parts ({'; '.join(damaged[:3])}"
                            f"{'; ...' if len(damaged) > 3 else ''}): `batchser verify {p}` says what to do")
    settings = {i: json.loads((p / layout.SETTINGS).read_text()) for i, p in sorted(have.items())
                if (p / layout.SETTINGS).exists()}
    if len({json.dumps(v, sort_keys=True) for v in settings.values()}) > 1:
        first_i, first = next(iter(settings.items()))
        for i, v in settings.items():
            keys = sorted(k for k in set(first) | set(v) if first.get(k) != v.get(k))
            if keys:
                raise MergeRefused(f"cannot merge {out}: shards {first_i} and {i} were run with different settings: "
                                   + "; ".join(f"{k}: {first.get(k)!r} vs {v.get(k)!r}" for k in keys)
                                   + ". Run every shard with the same options (a shard re-run with --overwrite "
                                     "and the others' options), then merge")
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
    """Link one shard's parts into ``out`` under merged names; the tables' file columns follow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in layout.parts(src, layout.LABELS):
        new = _merged_stem(i, f)
        t = pq.read_table(f)
        for col, sub in (("emb_file", layout.EMBEDDINGS), ("frame_file", layout.FRAMES)):
            if col in t.column_names:
                _link(src / sub / f"{f.stem}.npy", out / sub / f"{new}.npy")
                t = t.set_column(t.column_names.index(col), col, pa.array([f"{sub}/{new}.npy"] * t.num_rows, pa.string()))
        tl = src / layout.TIMELINE / f"{f.stem}.parquet"
        if tl.exists():  # the timeline part of this labels part: same name
            _link(tl, out / layout.TIMELINE / f"{new}.parquet")
        if "npy_file" in t.column_names:
            for rel in t.column("npy_file").to_pylist():
                _link(src / rel, out / rel)
        (out / layout.LABELS).mkdir(parents=True, exist_ok=True)
        atomic.save_parquet(out / layout.LABELS / f"{new}.parquet", t)
    for f in layout.parts(src, layout.ERRORS):
        _link(f, out / layout.ERRORS / f"{_merged_stem(i, f)}.parquet")


TABLES = (layout.LABELS, layout.EMBEDDINGS, layout.FRAMES, layout.ERRORS, layout.NPY, layout.TIMELINE)
STAGING, OLD = ".merge-new", ".merge-old"


def _check_only_merged(out: Path) -> None:
    for sub in TABLES:
        d = out / sub
        if d.is_dir():
            foreign = [f.name for f in d.glob("part-*") if not re.match(r"part-s\d{4}", f.name)]
            if foreign:
                raise MergeError(f"{d} holds parts that no merge made ({foreign[0]}, ...): "
                                 "merge into a directory used only by shards")


def _swap_in(out: Path, staging: Path) -> None:
    """Replace OUT's tables by the staged ones, one rename each (the old ones go, after)."""
    old = out / OLD
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    for sub in TABLES:
        if (out / sub).exists():
            os.replace(out / sub, old / sub)
        if (staging / sub).exists():
            os.replace(staging / sub, out / sub)
    atomic.fsync_dir(out)
    shutil.rmtree(old)
    shutil.rmtree(staging)


def _totals(out: Path, inputs: int) -> Dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .writer import committed_ids

    ok, err = committed_ids(out)
    parts = layout.parts(out, layout.LABELS)
    secs = sum(pc.sum(pq.read_table(p, columns=["duration"]).column("duration")).as_py() or 0.0 for p in parts)
    return {"counts": {"input": inputs, "results_total": len(ok), "errors_total": len(err)},
            "audio_hours": secs / 3600.0}


def merge(out: str | os.PathLike, *, explain: Optional[Callable] = None) -> Dict:
    """Check every shard finished, then link all parts into OUT as one dataset. Re-running is harmless.

    ``explain``: prosody's ``explanations`` (the CLI's merge passes it): OUT/explanations.parquet
    is recomputed over all shards, whose speaker baselines need every shard's utterances."""
    import contextlib

    from .lock import OutputLock

    out = Path(out)
    check_claimable(out)  # no link leading out of OUT (or out of a shard) is written or deleted through
    with contextlib.ExitStack() as held:
        held.enter_context(OutputLock(out, command=["batchser", "merge", str(out)]))
        sd = out / layout.SHARDS
        for p in sorted(sd.iterdir()) if sd.is_dir() else []:
            if SHARD_DIR_RE.match(p.name):
                held.enter_context(OutputLock(p, command=["batchser", "merge", str(out)]))
        have = _finished_shards(out)
        _check_only_merged(out)
        staging = out / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # a merge killed before its swap
        shutil.rmtree(out / OLD, ignore_errors=True)
        inputs = 0
        wall = 0.0
        for i, p in sorted(have.items()):
            man = json.loads((p / layout.MANIFEST).read_text())
            inputs += man["counts"].get("input", 0)
            wall = max(wall, man.get("wall_seconds") or 0.0)
            _link_shard(i, p, staging)
        (staging / layout.LABELS).mkdir(parents=True, exist_ok=True)
        (staging / layout.ERRORS).mkdir(exist_ok=True)
        first = have[0]
        man0 = json.loads((first / layout.MANIFEST).read_text())
        (out / layout.MANIFEST).unlink(missing_ok=True)  # no manifest while the tables change
        _swap_in(out, staging)
        if (first / layout.SETTINGS).exists():
            shutil.copy2(first / layout.SETTINGS, out / layout.SETTINGS)
        if explain is not None:
            write_explanations(out, explain=explain)
        summary = {"status": "complete", "merged_shards": len(have), **_totals(out, inputs),
                   "longest_shard_wall_seconds": wall, "model": man0.get("model"), "asr": man0.get("asr"),
                   "input": man0.get("input"),
                   "versions": man0.get("versions"), "shards": {i: str(p) for i, p in sorted(have.items())}}
        atomic.write_text(out / layout.MANIFEST, json.dumps(summary, indent=2) + "\n")
    return summary
