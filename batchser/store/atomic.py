"""Atomic file writes: a file appears whole under its final name or not at all.

Every file of an output directory is written to a temporary ``.<name>.tmp`` beside its final
name, flushed to disk and renamed; the directory entry is synced too, so a crash (or a power
cut) never leaves a half-written part under a name readers glob for.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def tmp_name(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.parent / f".{path.name}.tmp"


def fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final``, fsync the directory."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_text(path: Path, text: str) -> None:
    tmp = tmp_name(path)
    tmp.write_text(text, encoding="utf-8")
    commit(tmp, path)


def save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        np.save(f, arr)
    commit(tmp, path)


def save_parquet(path: Path, table) -> None:
    import pyarrow.parquet as pq

    tmp = tmp_name(path)
    pq.write_table(table, tmp)
    commit(tmp, path)
