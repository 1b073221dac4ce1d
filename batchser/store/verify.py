"""Is a committed part whole? Cheap checks from sizes and headers, never a full read.

A part is trusted when its Parquet footer reads (and says how many rows), and each ``.npy`` that
belongs to a labels part exists, has a readable header, holds as many rows as the labels part
(frames: as many as its ``frame_count`` column adds up to) and is as long as its header says.
A resume, ``merge`` and ``open_results`` check the parts they trust; ``batchser verify OUT``
checks a whole directory (after copying results between filesystems, say).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from . import layout

TABLES = (layout.LABELS, layout.ERRORS, layout.FEATURES)


class DamagedPart(ValueError):
    """A committed part is truncated or unreadable (exit 2): what to do is in the message."""


def parquet_rows(path: Path) -> Tuple[Optional[int], Optional[str]]:
    """(rows, None) from the footer, or (None, what is wrong)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows, None
    except FileNotFoundError:
        return None, "missing"
    except Exception as e:  # pyarrow says "Parquet magic bytes not found in footer" and the like
        return None, f"not a whole Parquet file ({path.stat().st_size} bytes; {type(e).__name__})"


def npy_shape(path: Path) -> Tuple[Optional[tuple], Optional[str]]:
    """(shape, None) when the header reads and the file is as long as it says, else (None, why)."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
            header_end = f.tell()
    except FileNotFoundError:
        return None, "missing"
    except Exception as e:
        return None, f"no readable .npy header ({type(e).__name__}: {e})"
    want = header_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != want:
        return None, f"{size} bytes, but its header says {shape} {dtype} = {want} bytes (truncated or cut short)"
    return shape, None


def labels_part_problems(out: Path, part: Path) -> List[str]:
    """What is wrong with labels part ``part`` and the arrays of the same name (empty: whole)."""
    import pyarrow.parquet as pq

    out = Path(out)
    stem = part.stem
    rows, why = parquet_rows(part)
    if why:
        return [f"{layout.LABELS}/{part.name}: {why}"]
    found = []
    shape, why = npy_shape(out / layout.EMBEDDINGS / f"{stem}.npy")
    if why:
        found.append(f"{layout.EMBEDDINGS}/{stem}.npy: {why}")
    elif shape[0] != rows:
        found.append(f"{layout.EMBEDDINGS}/{stem}.npy: {shape[0]} rows for the {rows} of {layout.LABELS}/{part.name}")
    names = pq.read_schema(part).names
    if "frame_count" in names:
        want = int(sum(pq.read_table(part, columns=["frame_count"]).column("frame_count").to_pylist()))
        shape, why = npy_shape(out / layout.FRAMES / f"{stem}.npy")
        if why:
            found.append(f"{layout.FRAMES}/{stem}.npy: {why}")
        elif shape[0] != want:
            found.append(f"{layout.FRAMES}/{stem}.npy: {shape[0]} frames where {layout.LABELS}/{part.name} counts {want}")
    if (out / layout.TIMELINE).is_dir():
        _, why = parquet_rows(out / layout.TIMELINE / f"{stem}.parquet")
        if why:
            found.append(f"{layout.TIMELINE}/{stem}.parquet: {why}")
    return found


def problems(out: Path, tables=TABLES, derived: bool = True) -> List[str]:
    """Every damaged part of ``tables`` in ``out``; with ``derived``, of the tables made from the
    labels too (head_predictions/, explanations/, explanations.parquet): what `verify` checks."""
    out = Path(out)
    found: List[str] = []
    for table in tables:
        for p in sorted((out / table).glob("part-*.parquet")):
            if table == layout.LABELS:
                found += labels_part_problems(out, p)
            else:
                _, why = parquet_rows(p)
                if why:
                    found.append(f"{table}/{p.name}: {why}")
    if derived and layout.LABELS in tables:  # the tables made from the labels: apply-head's, explain's, prosody's
        derived = sorted((out / layout.HEAD_PREDICTIONS).glob("*/part-*.parquet"))
        derived += sorted((out / layout.LLM_EXPLANATIONS).glob("part-*.parquet"))
        derived += [out / layout.EXPLANATIONS] if (out / layout.EXPLANATIONS).exists() else []
        for p in derived:
            _, why = parquet_rows(p)
            if why:
                found.append(f"{p.relative_to(out)}: {why}")
    return found


def advice(out: Path, found: List[str]) -> str:
    shown = "\n  ".join(found[:10]) + (f"\n  ... and {len(found) - 10} more" if len(found) > 10 else "")
    todo = []
    if any(f.startswith((layout.LABELS, layout.EMBEDDINGS, layout.FRAMES, layout.TIMELINE, layout.ERRORS,
                         layout.FEATURES)) for f in found):
        todo.append("to redo their rows, delete each damaged part together with the files of the same name in "
                    "labels/, embeddings/, frames/ and timeline/ and run the same command again (it resumes), or "
                    "start again with --overwrite")
    if any(f.startswith(layout.LLM_EXPLANATIONS + "/") for f in found):
        todo.append("a damaged explanations/ part: delete it and run `batchser explain` again (it redoes those rows)")
    if any(f.startswith(layout.EXPLANATIONS + ":") for f in found):
        todo.append(f"a damaged {layout.EXPLANATIONS}: delete it and run the same `batchser run` again (it is "
                    "recomputed from the labels)")
    if any(f.startswith(layout.HEAD_PREDICTIONS) for f in found):
        todo.append("a damaged head_predictions/ part: delete it and run `batchser apply-head` again")
    return (f"{out} holds damaged parts, which are not taken as done:\n  {shown}\n"
            f"`batchser verify {out}` lists them all; " + "; ".join(todo))


def check(out: Path, tables=TABLES, derived: bool = False) -> None:
    """Raise :class:`DamagedPart` naming every damaged part of ``tables``, with what to do (a run
    trusts its own tables; the ones made from them are redone or checked by their commands)."""
    found = problems(out, tables, derived)
    if found:
        raise DamagedPart(advice(Path(out), found))
