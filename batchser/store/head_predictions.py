"""``apply-head``'s tables: ``OUT/head_predictions/NAME/part-*.parquet``, one part per labels part
(same name, each written atomically), and ``source.json`` naming the head that wrote them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

from . import atomic, layout


def write_head_predictions(out: Path, *, name: str, classes: Sequence[str], source: Dict,
                           predict: Callable[[np.ndarray], List[Dict]]) -> Dict:
    """Write the missing parts of ``head_predictions/<name>/``: ``predict`` (embeddings -> one dict
    of ``head_<name>_*`` columns per row) on each labels part's embeddings.

    Idempotent: parts already written by the same head (``source["weights_sha256"]``) are kept,
    so a second call only adds the parts of labels parts that appeared since (a resumed run);
    parts whose labels part is gone (a new merge) are removed. Another head of the same name is
    refused. Returns the counts.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    dest = out / layout.HEAD_PREDICTIONS / name
    src = dest / "source.json"
    if src.exists():
        old = json.loads(src.read_text(encoding="utf-8"))
        if old.get("weights_sha256") != source.get("weights_sha256"):
            raise ValueError(f"{dest} holds the predictions of another head named {name!r} ({old.get('head')}); "
                             "retrain with another --name, or delete that directory")
    dest.mkdir(parents=True, exist_ok=True)
    atomic.write_text(src, json.dumps(source, indent=2) + "\n")
    schema = layout.head_predictions_schema(name, classes)
    written = kept = rows = 0
    for p in layout.parts(out, layout.LABELS):
        target = dest / f"{p.stem}.parquet"
        if target.exists():
            kept += 1
            continue
        ids = pq.read_table(p, columns=["utt_id"]).column("utt_id").to_pylist()
        cols = predict(np.load(out / layout.EMBEDDINGS / f"{p.stem}.npy")) if ids else []
        atomic.save_parquet(target, pa.Table.from_pylist([{"utt_id": u, **c} for u, c in zip(ids, cols)], schema=schema))
        written += 1
        rows += len(ids)
    for f in dest.glob("part-*.parquet"):  # parts of labels parts that no longer exist (a new merge)
        if not (out / layout.LABELS / f.name).exists():
            f.unlink()
    return {"head": name, "dir": str(dest), "parts_written": written, "parts_kept": kept, "rows_written": rows}


def embedding_dim(out: Path) -> int:
    """The dimension of OUT's stored embeddings (from the first part's header), -1 without one."""
    parts = layout.parts(Path(out), layout.LABELS)
    if not parts:
        return -1
    return int(np.load(Path(out) / layout.EMBEDDINGS / f"{parts[0].stem}.npy", mmap_mode="r").shape[1])
