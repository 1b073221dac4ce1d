"""Claiming an output directory: a foreign one is refused, ``--overwrite`` clears only ours.

Nothing is deleted that batchser did not write: a directory counts as batchser's when it holds
one of its markers (settings.json, manifest.json, the lock file, shards/), and ``--overwrite``
removes only the entries of the layout (labels/, embeddings/, ..., manifest.json), keeping
anything else a user put there.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

from . import layout
from .lock import LOCK_NAME

MARKERS = (layout.SETTINGS, layout.MANIFEST, LOCK_NAME, layout.SHARDS)
# every entry batchser writes at the top of an output directory (the lock file is kept: it is held)
OURS = (layout.LABELS, layout.EMBEDDINGS, layout.FRAMES, layout.NPY, layout.ERRORS, layout.FEATURES,
        layout.CACHE, layout.SHARDS, layout.EVAL, layout.SETTINGS, layout.MANIFEST, layout.EXPLANATIONS)


class ForeignDirectory(ValueError):
    """The output directory holds files batchser did not write."""


def check_claimable(out: Path) -> None:
    """Refuse a non-empty directory without batchser's markers (read-only: touches nothing)."""
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


def _ours(name: str) -> bool:
    return name in OURS or (name.startswith("summary_by_") and name.endswith((".parquet", ".png"))) \
        or name.startswith(".merge-") or (name.startswith(".") and name.endswith(".tmp"))


def clear_ours(out: Path) -> List[str]:
    """``--overwrite``: remove what batchser wrote in ``out``; return the names of what was kept."""
    out = Path(out)
    kept = []
    for p in sorted(out.iterdir()) if out.is_dir() else []:
        if p.name == LOCK_NAME:
            continue
        if _ours(p.name):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        else:
            kept.append(p.name)
    return kept
