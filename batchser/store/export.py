"""``batchser export OUT --kaldi DIR``: an output directory in the forms Kaldi and ESPnet tools read.

    DIR/utt2emo_hyp     <utt> <label>                 (same form as utt2emo: compute-wer-like tools, eval)
    DIR/utt2score       <utt> <p_class1> <p_class2> ... (class order in DIR/classes.txt)
    DIR/classes.txt     one class per line
    DIR/embeddings.ark  utterance embeddings as float32 Kaldi vectors (copy-vector, kaldiio.load_scp)
    DIR/embeddings.scp  <utt> DIR/embeddings.ark:<offset>

Rows are sorted by utt_id (Kaldi's sort order, C locale). Existing files are replaced atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import numpy as np

from . import atomic, layout
from .results import open_results


def export_kaldi(out_dir: str | os.PathLike, dest: str | os.PathLike) -> Dict[str, int]:
    """Write the Kaldi forms of ``out_dir``'s labels, scores and embeddings into ``dest``."""
    import kaldiio

    res = open_results(out_dir)
    df = res.labels
    dest = Path(dest).resolve()  # the scp names the ark by an absolute path: readable from anywhere
    dest.mkdir(parents=True, exist_ok=True)
    if df.empty:
        raise ValueError(f"{out_dir} has no results to export")
    bad = [u for u in df.utt_id if any(c.isspace() for c in u)]
    if bad:
        raise ValueError(f"{len(bad)} utterance ids contain white space, which Kaldi tables cannot hold, e.g. {bad[0]!r}")
    emb = res.embeddings()
    order = np.argsort(df.utt_id.to_numpy(dtype=object).astype(str), kind="stable")
    ids = df.utt_id.to_numpy()[order]
    classes = [c[len("score_"):] for c in df.columns if c.startswith("score_")]
    written = {}
    if df.label.notna().any():
        atomic.write_text(dest / "utt2emo_hyp", "".join(f"{u} {l}\n" for u, l in zip(ids, df.label.to_numpy()[order])))
        written["utt2emo_hyp"] = len(ids)
    if classes:  # also a multi-label run without a threshold (scores, no label)
        scores = df[[layout.score_column(c) for c in classes]].to_numpy()[order]
        atomic.write_text(dest / "classes.txt", "".join(f"{c}\n" for c in classes))
        atomic.write_text(dest / "utt2score", "".join(
            f"{u} " + " ".join(f"{v:.6g}" for v in row) + "\n" for u, row in zip(ids, scores)))
        written["utt2score"] = len(ids)
    dims = [c[len("value_"):] for c in df.columns if c.startswith("value_")]
    if dims:  # a regression head: utt2dim as eval reads it, names in dims.txt (Kaldi tables have no header)
        vals = df[[layout.value_column(c) for c in dims]].to_numpy()[order]
        atomic.write_text(dest / "dims.txt", "".join(f"{c}\n" for c in dims))
        atomic.write_text(dest / "utt2dim", "".join(
            f"{u} " + " ".join(f"{v:.6g}" for v in row) + "\n" for u, row in zip(ids, vals)))
        written["utt2dim"] = len(ids)
    if "text" in df.columns:  # run --asr: the hypotheses as a Kaldi text, for compute-wer and ESPnet scoring
        texts = [" ".join(str(t).split()) if t is not None and t == t else "" for t in df.text.to_numpy()[order]]
        atomic.write_text(dest / "text", "".join(f"{u} {t}\n" if t else f"{u}\n" for u, t in zip(ids, texts)))
        written["text"] = len(ids)
    ark, scp = dest / "embeddings.ark", dest / "embeddings.scp"
    tmp_ark, tmp_scp = atomic.tmp_name(ark), atomic.tmp_name(scp)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as w:
        for u, i in zip(ids, order):
            w(str(u), np.asarray(emb[i], dtype=np.float32))
    # the scp names the ark by the path it was written under: point it at the final name
    text = tmp_scp.read_text(encoding="utf-8").replace(str(tmp_ark), str(ark))
    atomic.commit(tmp_ark, ark)
    atomic.write_text(scp, text)
    tmp_scp.unlink(missing_ok=True)
    written["embeddings.scp"] = len(ids)
    return written
