#!/usr/bin/env python3
"""Compare two batchser output directories value for value (a refactor must not change results).

    python bench/compare_outputs.py OUT_A OUT_B [--ignore-paths]

Every Parquet table (labels/, errors/, features/, timeline/, head_predictions/NAME/,
explanations.parquet) is compared row by row after sorting by utt_id, every column exactly
(floats bit for bit); the embeddings (and frame embeddings, and --npy-layout per-utt files) of
each utterance likewise; settings.json and the text files of a --vad run's vad/ data dir byte
for byte. ``--ignore-paths`` skips the columns that name
part files (emb_file, emb_row, frame_file, frame_offset): they differ when parts are cut
differently (another --part-size, several devices) while the values must not.
Exit 0 when equal, 1 with the differences listed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

PATH_COLS = {"emb_file", "emb_row", "frame_file", "frame_offset"}


def table(d: Path, sub: str) -> pd.DataFrame:
    p = d / sub
    files = [p] if p.is_file() else sorted(p.glob("part-*.parquet")) if p.is_dir() else []
    if not files:
        return pd.DataFrame()
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    keys = [k for k in ("utt_id", "window") if k in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def tables(a: Path, b: Path):
    """The tables to compare: the fixed ones, and each head_predictions/NAME/ of either side."""
    heads = sorted({p.relative_to(d).as_posix() for d in (a, b) for p in (d / "head_predictions").glob("*")
                    if p.is_dir()})
    return ["labels", "errors", "features", "timeline", "explanations.parquet"] + heads


def same_files(a: Path, b: Path, names) -> list:
    """Byte-for-byte comparison of small text files present on either side."""
    out = []
    for n in names:
        fa, fb = a / n, b / n
        if fa.exists() != fb.exists():
            out.append(f"{n}: only in {'A' if fa.exists() else 'B'}")
        elif fa.exists() and fa.read_bytes() != fb.read_bytes():
            out.append(f"{n}: contents differ")
    return out


def rows_of(d: Path, df: pd.DataFrame, col: str, off: str = None, cnt: str = None):
    out = {}
    for r in df.itertuples():
        m = np.load(d / getattr(r, col), mmap_mode="r")
        if col == "npy_file":
            out[r.utt_id] = np.asarray(m)
            continue
        out[r.utt_id] = np.asarray(m[getattr(r, off): getattr(r, off) + getattr(r, cnt)] if off else m[r.emb_row])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--ignore-paths", action="store_true")
    a = ap.parse_args()
    problems = []
    vad = [f"vad/{n}" for n in ("wav.scp", "segments", "utt2spk", "spk2utt", "utt2dur", "reco2dur", "text",
                                "segment_errors")]
    problems += same_files(a.a, a.b, ["settings.json"] + vad)
    for sub in tables(a.a, a.b):
        ta, tb = table(a.a, sub), table(a.b, sub)
        if a.ignore_paths:
            ta, tb = (t.drop(columns=[c for c in t.columns if c in PATH_COLS]) for t in (ta, tb))
        if list(ta.columns) != list(tb.columns):
            problems.append(f"{sub}: columns differ: {list(ta.columns)} vs {list(tb.columns)}")
            continue
        if len(ta) != len(tb):
            problems.append(f"{sub}: {len(ta)} vs {len(tb)} rows")
            continue
        if ta.empty and tb.empty:
            continue
        if sub == "errors":  # messages may name temporary cache files; compare ids and stages
            ta, tb = ta[["utt_id", "stage"]], tb[["utt_id", "stage"]]
        try:
            pd.testing.assert_frame_equal(ta, tb, check_exact=True)
        except AssertionError as e:
            problems.append(f"{sub}: {str(e)[:400]}")
        if sub == "labels" and len(ta):
            la, lb = table(a.a, sub), table(a.b, sub)
            pairs = [("emb_file", None, None)] + ([("frame_file", "frame_offset", "frame_count")]
                                                  if "frame_file" in la.columns else [])
            if "npy_file" in la.columns:
                pairs.append(("npy_file", None, None))
            for col, off, cnt in pairs:
                ea, eb = rows_of(a.a, la, col, off, cnt), rows_of(a.b, lb, col, off, cnt)
                bad = [u for u in ea if not np.array_equal(ea[u], eb[u])]
                if bad:
                    problems.append(f"{col}: arrays differ for {len(bad)} utterances, e.g. {bad[:3]}")
        print(f"{sub}: {len(ta)} rows compared")
    for p in problems:
        print("DIFF", p)
    print("equal" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
