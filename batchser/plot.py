"""``batchser plot``: one recording's emotion over time, as a picture.

Each labelled stretch of the recording (a VAD segment, a segment of a data dir, or the whole
recording) is drawn over its own time span: the class scores stacked to 1, and a band of the
top class below. A ``--timeline`` run draws its windows instead, in bins one hop wide (each
bin the mean of the windows overlapping it, weighted by the overlap); time without a segment (no speech) stays white, up to the recording's end
(from reco2dur when the run has one). The figure has one size whatever the recording's length; the time axis picks its step
(1 s ... 1 h) so that it carries about ten ticks, in m:ss or h:mm:ss.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np

STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800)


def clock(seconds: float, _pos=None) -> str:
    """m:ss below an hour, h:mm:ss from an hour on."""
    s = int(round(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def tick_step(span: float, ticks: int = 10) -> int:
    """The smallest step of STEPS giving at most ``ticks`` ticks over ``span`` seconds."""
    return next((s for s in STEPS if span / s <= ticks), STEPS[-1] * max(1, int(span / STEPS[-1] / ticks) + 1))


MAX_BARS = 400  # segments drawn one by one up to this many; more are averaged into this many bins


def _bins(start, end, scores, total: float, n: int):
    """Equal time bins over [0, total]: each bin's scores are the mean of the segments overlapping
    it, weighted by the overlap; bins without speech are left out."""
    edges = np.linspace(0.0, total, n + 1)
    acc = np.zeros((n, scores.shape[1]))
    cover = np.zeros(n)
    for a, b, sc in zip(start, end, scores):
        i0, i1 = np.searchsorted(edges, a, "right") - 1, np.searchsorted(edges, b, "left")
        for i in range(max(i0, 0), min(i1, n)):
            w = min(b, edges[i + 1]) - max(a, edges[i])
            if w > 0:
                acc[i] += w * sc
                cover[i] += w
    keep = cover > 0
    return edges[:-1][keep], edges[1:][keep], acc[keep] / cover[keep, None], total / n


def _recording_seconds(res, rec: str) -> Optional[float]:
    """The recording's length from a reco2dur beside the run (OUT/vad/, or the input data dir)."""
    dirs = [res.dir / "vad"]
    data = res.manifest.get("input", {}).get("data_dir")
    if data:
        dirs.append(Path(data))
    for d in dirs:
        p = d / "reco2dur"
        if p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                f = line.split()
                if len(f) == 2 and f[0] == rec:
                    try:
                        return float(f[1])
                    except ValueError:
                        return None
    return None


def _timeline_rows(res, rec: str):
    """The recording's timeline windows (a --timeline run), or None."""
    try:
        tl = res.timeline
    except ValueError:
        return None
    tl = tl[tl.rec_id == rec]
    return tl if len(tl) else None


TEST_MODEL_NOTE = "RANDOM-WEIGHT TEST model: these labels and scores mean nothing"


def mark_test_model(fig, test_model: bool, text: str = TEST_MODEL_NOTE) -> None:
    """A figure made from a random-weight test model says so at its top, in red."""
    if test_model:
        fig.suptitle(text, color="#c00000", fontsize=9, fontweight="bold", y=0.995, va="top")


def plot_recording(out_dir: str | os.PathLike, rec: str, png: str | os.PathLike,
                   classes: Optional[List[str]] = None) -> Path:
    """Draw recording ``rec`` of the output directory ``out_dir`` into ``png``.

    Raises:
        ValueError: ``rec`` has no rows (the message lists some recordings that do).
    """
    import matplotlib

    matplotlib.use("Agg")
    from .store import open_results, score_column, value_column

    res = open_results(out_dir)
    kind = res.head_kind
    if kind == "none":
        raise ValueError(f"{out_dir} holds embeddings only (a model without a head): nothing to plot over time")
    col = value_column if kind == "regression" else score_column
    prefix = col("")
    df = res.labels
    rows = df[df.rec_id == rec]
    if rows.empty:
        some = ", ".join(sorted(df.rec_id.unique())[:10])
        raise ValueError(f"no rows for recording {rec!r} in {out_dir} (recordings there: {some}"
                         f"{', ...' if df.rec_id.nunique() > 10 else ''})")
    labels = classes or res.manifest.get("model", {}).get("labels") or [
        c[len(prefix):] for c in df.columns if c.startswith(prefix)]
    start = rows.start.fillna(0.0).to_numpy(dtype=float)
    end = np.where(rows.end.isna(), start + rows.duration.to_numpy(dtype=float), rows.end.to_numpy(dtype=float))
    order = np.argsort(start)
    start, end = start[order], end[order]
    scores = np.stack([rows[col(l)].to_numpy(dtype=float)[order] for l in labels], axis=1)
    total = max(float(end.max()), _recording_seconds(res, rec) or 0.0)
    speech = float(np.sum(end - start))
    n_segments = len(start)
    binned = ""
    tl = _timeline_rows(res, rec)
    if tl is not None:  # --timeline: the windows' scores, at the hop's resolution
        hop = float((res.manifest.get("timeline") or {}).get("hop") or 1.0)
        n = int(min(MAX_BARS * 2, max(1, np.ceil(total / hop))))
        w_start, w_end = tl.start.to_numpy(dtype=float), tl.end.to_numpy(dtype=float)
        w_scores = np.stack([tl[col(l)].to_numpy(dtype=float) for l in labels], axis=1)
        start, end, scores, width_s = _bins(w_start, w_end, w_scores, total, n)
        binned = f"; timeline of {len(tl)} windows, {width_s:.3g}-s bins"
    elif n_segments > MAX_BARS:  # thinner than a pixel or two: the mean over equal bins instead
        start, end, scores, width_s = _bins(start, end, scores, total, MAX_BARS)
        binned = f"; mean scores over {width_s:.0f}-s bins"
    return _draw(Path(png), rec, kind, labels, start, end, scores, total=total, speech=speech, n_segments=n_segments,
                 binned=binned, test_model=bool((res.manifest.get("model") or {}).get("test_model")))


def _draw(png: Path, rec: str, kind: str, labels: List[str], start: np.ndarray, end: np.ndarray, scores: np.ndarray,
          *, total: float, speech: float, n_segments: int, binned: str, test_model: bool = False) -> Path:
    """The figure: class scores (or values) over time above the top-class band."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    top = np.array(labels)[scores.argmax(1)]
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colors = {l: cmap(i % cmap.N) for i, l in enumerate(labels)}

    fig, (ax, band) = plt.subplots(2, 1, figsize=(13, 4.8), sharex=True,
                                   gridspec_kw={"height_ratios": [5, 1], "hspace": 0.08})
    bottom = np.zeros(len(start))
    width = end - start
    if kind == "single_label":  # a softmax: the scores stack to 1
        for k, l in enumerate(labels):
            ax.bar(start, scores[:, k], width=width, bottom=bottom, align="edge", color=colors[l], lw=0, label=l,
                   zorder=2)
            bottom += scores[:, k]
        ax.set_ylim(0, 1)
    else:  # a sigmoid per class, or a regression's values: one level per class/dimension and span
        for k, l in enumerate(labels):
            ax.hlines(scores[:, k], start, end, color=colors[l], lw=2.2, label=l, zorder=2)
        if kind == "multi_label":
            ax.set_ylim(0, 1)
        ax.grid(axis="y", color="0.9", zorder=0)
    if kind == "regression":  # no top class: the band shows where there is speech
        band.broken_barh(list(zip(start, width)), (0, 1), color="0.55", lw=0)
        band.set_ylabel("speech", rotation=0, ha="right", va="center")
    else:
        for l in labels:
            m = top == l
            if m.any():
                band.broken_barh(list(zip(start[m], width[m])), (0, 1), color=colors[l], lw=0)
        band.set_ylabel("top", rotation=0, ha="right", va="center")
    ax.set_xlim(0, total)
    ax.set_ylabel({"regression": "value", "multi_label": "class probability (sigmoid)"}.get(kind, "class score"))
    band.set_yticks([])
    step = tick_step(total)
    band.xaxis.set_major_locator(MultipleLocator(step))
    band.xaxis.set_major_formatter(FuncFormatter(clock))
    band.set_xlabel("time in the recording (" + ("h:mm:ss" if total >= 3600 else "m:ss") + ")")
    ax.set_title(f"{rec}: emotion over time, {n_segments} segment{'s' if n_segments != 1 else ''} covering {speech / max(total, 1e-9):.0%} of "
                 f"{clock(total)} (white: no speech){binned}", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9, frameon=False,
              title="dimension" if kind == "regression" else "class")
    fig.subplots_adjust(left=0.06, right=0.87, top=0.86 if test_model else 0.9, bottom=0.14)
    mark_test_model(fig, test_model)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
