"""``batchser report OUT``: one self-contained HTML page of a run (or a merged array job).

Everything is inline: styles in the page, figures as PNG data URIs, no script at all, so the
file opens anywhere, offline, and prints. What it shows comes from OUT only: the manifest and
settings, the labels and errors tables, ``eval/*.json`` when ``batchser eval`` wrote them
(else the metrics are computed here against the run's references, writing nothing into OUT),
and the timelines of the longest recordings (the figure ``batchser plot`` draws).
"""
from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

TOP_GROUPS = 20  # speakers shown one by one; the rest are one "other" row
ERROR_ROWS = 5  # per stage
TIMELINES = 3  # recordings drawn when --rec is not given
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fde8e8;color:#9b1c1c;border:1px solid #f5b5b5;padding:.6em 1em;border-radius:4px;font-weight:600}
.note{color:#666}img{max-width:100%;height:auto;border:1px solid #eee}code,pre{font-size:12px}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;white-space:pre-wrap}
@media print{body{max-width:none;margin:0}h2{page-break-after:avoid}img,table{page-break-inside:avoid}}
"""


def esc(x) -> str:
    return html.escape(str(x))


def table(rows: Sequence[Sequence], head: Sequence[str], numeric: Sequence[bool] = ()) -> str:
    num = list(numeric) + [False] * (len(head) - len(numeric))
    out = ["<table>" + ("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" if any(head) else "")]
    for r in rows:
        out.append("<tr>" + "".join(f"<td class='n'>{esc(v)}</td>" if n else f"<td>{esc(v)}</td>"
                                    for v, n in zip(r, num)) + "</tr>")
    return "".join(out) + "</table>"


def png_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img(uri: str, alt: str) -> str:
    return f"<img src='{uri}' alt='{esc(alt)}'>"


def file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def fmt(x, nd: int = 4) -> str:
    return "" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


# -- sections ---------------------------------------------------------------------------------
def run_section(res, man: Dict, settings: Dict) -> str:
    model = man.get("model") or {}
    c = man.get("counts") or {}
    rows = [("input", (man.get("input") or {}).get("path", "")), ("model", model.get("id", "")),
            ("weights sha256", model.get("weights_sha256") or ""), ("back-end", model.get("backend", "")),
            ("device", f"{man.get('device', '')} ({man.get('device_name', '')})" if man.get("device") else ""),
            ("dtype", man.get("dtype", "")), ("batchser", man.get("batchser_version", "")),
            ("audio", f"{(man.get('audio_hours') or 0):.3f} h"),
            ("wall time", f"{(man.get('wall_seconds') or man.get('longest_shard_wall_seconds') or 0):.1f} s"),
            ("speed", f"{man['x_real_time']:.1f}x real time" if man.get("x_real_time") else "")]
    out = [table([r for r in rows if r[1] != ""], ["", ""])]
    out.append(table([(k, v) for k, v in c.items()], ["count", "utterances"], [False, True]))
    if man.get("warnings_total"):
        shown = "".join(f"<li>{esc(w)}</li>" for w in (man.get("warnings") or [])[:20])
        out.append(f"<p>{man['warnings_total']} warnings (the first ones):</p><ul>{shown}</ul>")
    if man.get("oom_backoffs"):
        out.append(table([(e["failed_items"], f"{e['failed_padded_samples'] / 16000:.1f} s",
                           f"{e['new_max_padded_samples'] / 16000:.1f} s") for e in man["oom_backoffs"]],
                         ["batch that ran out of memory", "padded audio", "batches now at most"], [True, True, True]))
    if settings:
        out.append("<details><summary>settings.json (what changes results)</summary><pre>"
                   + esc(json.dumps(settings, indent=2, sort_keys=True)) + "</pre></details>")
    return "".join(out)


def shards_section(man: Dict) -> str:
    shards = man.get("shards") or {}
    rows = []
    for i, d in sorted(shards.items(), key=lambda kv: int(kv[0])):
        p = Path(d) / "manifest.json"
        m = json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
        c = m.get("counts") or {}
        rows.append((i, m.get("status", "?"), c.get("input", ""), c.get("results_total", ""), c.get("errors_total", ""),
                     f"{(m.get('wall_seconds') or 0):.1f}"))
    return table(rows, ["shard", "status", "input", "results", "errors", "wall s"], [True, False, True, True, True, True])


def distribution_section(df, classes: List[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = df.label.value_counts()
    n = int(counts.sum())
    rows = [(l, int(k), f"{k / n:.1%}") for l, k in counts.items()]
    fig, ax = plt.subplots(figsize=(7, max(1.8, 0.6 + 0.3 * len(counts))))
    ax.barh([str(x) for x in counts.index[::-1]], counts.values[::-1], color="#4878a8")
    ax.set_xlabel("utterances")
    fig.tight_layout()
    out = [table(rows, ["label", "utterances", "share"], [False, True, True]), img(png_uri(fig), "label distribution")]
    if "spk" in df.columns and df.spk.notna().any():
        by = df.groupby("spk").label.agg(["count", lambda s: s.value_counts().index[0],
                                          lambda s: s.value_counts().iloc[0] / len(s)])
        by.columns = ["n", "top", "share"]
        by = by.sort_values(["n", "top"], ascending=[False, True])
        rows = [(s, int(r.n), r.top, f"{r.share:.0%}") for s, r in by.head(TOP_GROUPS).iterrows()]
        if len(by) > TOP_GROUPS:
            rest = by.iloc[TOP_GROUPS:]
            rows.append((f"other {len(rest)} speakers", int(rest.n.sum()), "", ""))
        out.append(f"<h3>By speaker ({len(by)} speakers{', the largest ' + str(TOP_GROUPS) if len(by) > TOP_GROUPS else ''})"
                   "</h3>" + table(rows, ["speaker", "utterances", "most frequent label", "its share"],
                                   [False, True, False, True]))
    return "".join(out)


def score_section(df) -> str:
    import matplotlib.pyplot as plt

    s = df.score.dropna().to_numpy(dtype=float)
    if not len(s):
        return ""
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.hist(s, bins=min(40, max(5, len(s) // 4)), range=(0, 1), color="#4878a8")
    ax.set_xlabel("score of the top class")
    ax.set_ylabel("utterances")
    fig.tight_layout()
    return (f"<p>Top-class score: median {np.median(s):.3f}, 10th percentile {np.percentile(s, 10):.3f}.</p>"
            + img(png_uri(fig), "score histogram"))


def metrics_section(m: Dict) -> str:
    mapped = m.get("label_map") or {}
    note = ("<p class='note'>Label map applied before scoring: "
            + esc(", ".join(f"{a} -> {b}" for a, b in mapped.items())) + "</p>") if mapped else ""
    head = note + table([("n", m["n"]), ("WA (accuracy)", fmt(m["WA"])), ("UA (mean recall)", fmt(m["UA"])),
                  ("macro-F1", fmt(m["macro_f1"])), ("weighted F1", fmt(m.get("weighted_f1")))], ["metric", "value"],
                 [False, True])
    per = table([(c, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"])
                 for c, v in (m.get("per_class") or {}).items()], ["class", "precision", "recall", "F1", "support"],
                [False, True, True, True, True])
    cm = m.get("confusion") or {}
    conf = ""
    if cm.get("matrix"):
        rows = [[r] + list(v) for r, v in zip(cm["rows"], cm["matrix"])]
        conf = "<h3>Confusion matrix (rows: reference, columns: predicted)</h3>" + table(
            rows, ["reference"] + list(cm["columns"]), [False] + [True] * len(cm["columns"]))
    return head + per + conf


def wer_section(w: Dict) -> str:
    rows = [("WER", fmt(w.get("wer"))), ("CER", fmt(w.get("cer"))), ("scored", f"{w.get('n')} {w.get('scored_by', '')}s"),
            ("reference words", w.get("ref_words")), ("substitutions / deletions / insertions",
                                                     f"{w.get('substitutions')} / {w.get('deletions')} / {w.get('insertions')}"),
            ("normaliser", w.get("normalizer"))]
    out = [table(rows, ["", ""], [False, True])]
    for key, title in (("per_speaker", "speaker"), ("per_reference_emotion", "reference emotion"),
                       ("per_predicted_label", "predicted label")):
        g = w.get(key) or {}
        if g:
            rows = [(k, v.get("n"), fmt(v.get("wer"))) for k, v in sorted(g.items(), key=lambda kv: -kv[1]["n"])]
            extra = len(rows) - TOP_GROUPS
            rows = rows[:TOP_GROUPS] + ([(f"other {extra}", "", "")] if extra > 0 else [])
            out.append(f"<h3>By {title}</h3>" + table(rows, [title, "utterances", "WER"], [False, True, True]))
    return "".join(out)


def dims_section(d: Dict) -> str:
    rows = [(k, v.get("n"), fmt(v.get("ccc")), fmt(v.get("pearson_r")), fmt(v.get("mae")))
            for k, v in (d.get("dimensions") or {}).items()]
    return table(rows, ["dimension", "n", "CCC", "Pearson r", "MAE"], [False, True, True, True, True])


def errors_section(err) -> str:
    if err.empty:
        return "<p>None: every input utterance has a result.</p>"
    by = err.stage.value_counts()
    out = [table([(s, int(n)) for s, n in by.items()], ["stage", "utterances"], [False, True])]
    for st in by.index:
        rows = [(r.utt_id, r.message) for r in err[err.stage == st].head(ERROR_ROWS).itertuples()]
        out.append(f"<h3>{esc(st)}: the first {len(rows)}</h3>" + table(rows, ["utterance", "message"]))
    return "".join(out)


def timeline_section(out_dir: Path, df, recs: Optional[Sequence[str]]) -> str:
    from .plot import plot_recording

    if recs:
        chosen = list(recs)
    else:
        span = (df.assign(e=df.end.fillna(df.start + df.duration)).groupby("rec_id").agg(n=("utt_id", "size"), e=("e", "max")))
        span = span[span.n > 1].sort_values(["e", "n"], ascending=False)
        chosen = list(span.index[:TIMELINES])
    if not chosen:
        return ""
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in chosen:
            p = plot_recording(out_dir, r, Path(tmp) / "t.png")
            parts.append(f"<h3>{esc(r)}</h3>" + img(file_uri(p), f"emotion over time in {r}"))
    return "".join(parts)


# -- the page -----------------------------------------------------------------------------------
def report(out_dir: str, dest: Optional[str] = None, recs: Optional[Sequence[str]] = None) -> Path:
    """Write the report of ``out_dir`` to ``dest`` (default OUT/report.html); return its path."""
    from .store import layout, open_results

    res = open_results(out_dir)
    out = Path(out_dir)
    man = res.manifest
    settings = json.loads((out / layout.SETTINGS).read_text(encoding="utf-8")) if (out / layout.SETTINGS).exists() else {}
    df, err = res.labels, res.errors
    model = man.get("model") or {}
    status = man.get("status", "unknown (no manifest: a run still going, or one killed before its first part)")
    top = []
    if status != "complete":
        top.append(f"<p class='warn'>This run is {esc(status)}: what is shown is what was committed. Run the same "
                   "command again to resume it.</p>")
    if model.get("test_model"):
        top.append("<p class='warn'>The model is a RANDOM-WEIGHT TEST model: its labels and scores mean nothing; "
                   "this page checks the plumbing only.</p>")
    body = [f"<h1>batchser report: {esc(out.resolve().name)}</h1>",
            f"<p class='note'>{esc(out.resolve())} &middot; {len(df)} results, {len(err)} errors</p>", *top,
            "<h2>Run</h2>", run_section(res, man, settings)]
    if man.get("merged_shards"):
        body += [f"<h2>Shards ({man['merged_shards']} merged)</h2>", shards_section(man)]
    classes = list(model.get("labels") or [])
    if not df.empty and df.label.notna().any():
        body += ["<h2>Labels</h2>", distribution_section(df, classes), "<h2>Scores</h2>", score_section(df)]
    body += evaluation_sections(out, res, df)
    if not df.empty and {"start", "rec_id"} <= set(df.columns) and (recs or df.rec_id.nunique() < len(df)):
        tl = timeline_section(out, df, recs)
        if tl:
            body += ["<h2>Emotion over time</h2>", tl]
    body += [f"<h2>Errors ({len(err)})</h2>", errors_section(err)]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>batchser report: {esc(out.resolve().name)}</title><style>{STYLE}</style></head><body>"
            + "".join(body) + "</body></html>")
    target = Path(dest) if dest else out / "report.html"
    from .store import atomic

    atomic.write_text(target, page)
    return target


def evaluation_sections(out: Path, res, df) -> List[str]:
    """Metrics from eval/*.json when `batchser eval` wrote them, else computed (into a temporary
    folder) against the run's references when it had any."""
    ed = out / "eval"
    parts: List[str] = []
    m = json.loads((ed / "metrics.json").read_text(encoding="utf-8")) if (ed / "metrics.json").exists() else None
    if m is None and "ref_label" in df.columns and df.ref_label.notna().any() and df.label.notna().any():
        from .evaluate import evaluate

        with tempfile.TemporaryDirectory() as tmp:
            m = evaluate(str(out), eval_dir=tmp, plot=False)
    if m is not None:
        parts += ["<h2>Against the references</h2>", metrics_section(m)]
    if (ed / "wer.json").exists():
        parts += ["<h2>Transcripts: word error rate</h2>", wer_section(json.loads((ed / "wer.json").read_text()))]
    if (ed / "dims.json").exists():
        parts += ["<h2>Dimensions</h2>", dims_section(json.loads((ed / "dims.json").read_text()))]
    return parts
