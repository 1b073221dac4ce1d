"""Claiming an output directory: a foreign one is refused, ``--overwrite`` clears only ours.

Nothing is deleted that batchser did not write: a directory counts as batchser's when it holds
one of its markers (settings.json, manifest.json, the lock file, shards/), and ``--overwrite``
removes only the files of the layout (part files inside labels/, embeddings/, ..., eval's
metrics, manifest.json, ...), keeping anything else a user put there, inside those folders too.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import List, Sequence

from . import layout
from .lock import LOCK_NAME, OutputLock

MARKERS = (layout.SETTINGS, layout.MANIFEST, LOCK_NAME, layout.SHARDS)


class ForeignDirectory(ValueError):
    """The output directory holds files batchser did not write."""


def check_claimable(out: Path) -> None:
    """Refuse a non-empty directory without batchser's markers, and one where a path batchser
    reads, writes or deletes is a symbolic link leading out of it (read-only: touches nothing)."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise ForeignDirectory(f"--out {out} is a file, not a directory")
    entries = sorted(p.name for p in out.iterdir())
    if entries and not any((out / m).exists() for m in MARKERS):
        shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
        raise ForeignDirectory(
            f"--out {out} is not a batchser output directory and is not empty ({shown}); batchser writes "
            "only into a new or empty directory or one it made, and --overwrite never deletes files it did "
            "not write: choose another --out")
    links = outside_links(out)
    if links:
        shown = ", ".join(f"{p} -> {os.readlink(p)}" for p in links[:5]) + (", ..." if len(links) > 5 else "")
        raise ForeignDirectory(
            f"--out {out}: {len(links)} of the paths batchser writes, reads back or deletes there are symbolic "
            f"links leading out of it ({shown}); batchser never writes or deletes through a link. Replace each "
            "link by a real folder or file (copy what it points to), or choose another --out")


def outside_links(out: Path) -> List[Path]:
    """The symbolic links among the paths of batchser's layout in ``out`` (its files and folders,
    their entries, shards' directories likewise) that lead out of ``out``."""
    out = Path(out)
    top = out.resolve()

    def leaves(p: Path) -> bool:
        if not p.is_symlink():
            return False
        target = p.resolve()
        return not (target == top or top in target.parents)

    found: List[Path] = []
    for p in sorted(out.iterdir()) if out.is_dir() else []:
        name = p.name
        ours = name in _INSIDE or name in _NESTED or name in (layout.SHARDS, LOCK_NAME) or bool(_FILES.match(name))
        if not ours:
            continue  # the user's: batchser never touches it
        if leaves(p):
            found.append(p)
        elif p.is_dir() and not p.is_symlink():
            for c in sorted(p.iterdir()):
                if leaves(c):
                    found.append(c)
                elif c.is_dir() and not c.is_symlink() and name in _NESTED:
                    found += [f for f in sorted(c.iterdir()) if leaves(f)]
                elif c.is_dir() and not c.is_symlink() and name == layout.SHARDS:
                    found += outside_links(c)
    return found


# what batchser writes inside each of its folders (anything else there is the user's)
_PART = re.compile(r"^\.?part-[A-Za-z0-9-]+\.(parquet|npy)(\.tmp)?$")
_INSIDE = {
    layout.LABELS: _PART, layout.EMBEDDINGS: _PART, layout.FRAMES: _PART, layout.ERRORS: _PART,
    layout.FEATURES: _PART, layout.TIMELINE: _PART, layout.NPY: re.compile(r"^\.?.+\.npy(\.tmp)?$"),
    layout.CACHE: re.compile(r"^rec\d+\.wav(\.tmp)?$"),
    layout.LLM_EXPLANATIONS: re.compile(r"^\.?(part-[A-Za-z0-9-]+\.parquet|_settings\.json)(\.tmp)?$"),
    layout.EVAL: re.compile(r"^\.?(metrics\.json|confusion\.png|wer\.json|dims\.json)(\.tmp)?$"),
    layout.VAD: re.compile(r"^\.?(wav\.scp|segments|utt2spk|spk2utt|utt2dur|reco2dur|text|segment_errors|segment\.json)"
                           r"(\.tmp)?$"),
}
# folders of folders: heads/NAME/ (train-head), head_predictions/NAME/ (apply-head)
_NESTED = {
    layout.HEADS: re.compile(r"^\.?(head\.safetensors|head\.json|confusion\.png)(\.tmp)?$"),
    layout.HEAD_PREDICTIONS: re.compile(r"^\.?(part-[A-Za-z0-9-]+\.parquet|source\.json)(\.tmp)?$"),
}
_FILES = re.compile(r"^\.?(settings\.json|manifest\.json|explanations\.parquet|report\.html|"
                    r"summary_by_\w+\.(parquet|png))(\.tmp)?$")


def clear_ours(out: Path, keep: Sequence[str] = ()) -> List[str]:
    """``--overwrite``: remove what batchser wrote in ``out`` (its files, inside its folders too,
    and shards' directories likewise), except the entries named in ``keep``; return the paths,
    relative to ``out``, of what was kept that batchser did not write."""
    out = Path(out)
    kept: List[str] = []
    for p in sorted(out.iterdir()) if out.is_dir() else []:
        name = p.name
        if name == LOCK_NAME or name in keep:
            continue
        if p.is_dir() and not p.is_symlink() and name in _INSIDE:
            kept += _clear_files(p, _INSIDE[name], name)
        elif p.is_dir() and not p.is_symlink() and name in _NESTED:
            for d in sorted(p.iterdir()):
                if not d.is_dir() or d.is_symlink():
                    kept.append(f"{name}/{d.name}")
                    continue
                kept += _clear_files(d, _NESTED[name], f"{name}/{d.name}")
            _rmdir_if_empty(p)
        elif p.is_dir() and not p.is_symlink() and name == layout.SHARDS:
            for d in sorted(p.iterdir()):
                if d.is_dir() and d.name.startswith("shard-"):
                    with OutputLock(d, command=["batchser", "run", "--overwrite"]):  # not under a running task
                        kept += [f"{name}/{d.name}/{k}" for k in clear_ours(d)]
                    (d / LOCK_NAME).unlink(missing_ok=True)
                    _rmdir_if_empty(d)
                else:
                    kept.append(f"{name}/{d.name}")
            _rmdir_if_empty(p)
        elif p.is_dir() and not p.is_symlink() and name.startswith(".merge-"):
            shutil.rmtree(p)
        elif p.is_file() and _FILES.match(name):
            p.unlink()
        else:
            kept.append(name)
    return kept


def _clear_files(d: Path, ours, shown: str) -> List[str]:
    """Remove the files of ``d`` that match ``ours`` (then ``d`` if empty); return the others, as
    ``shown/name``."""
    kept = []
    for f in sorted(d.iterdir()):
        if f.is_file() and ours.match(f.name):
            f.unlink()
        else:
            kept.append(f"{shown}/{f.name}")
    _rmdir_if_empty(d)
    return kept


def _rmdir_if_empty(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass
