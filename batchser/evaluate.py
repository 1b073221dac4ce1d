"""``batchser eval`` and ``batchser summarize``: metrics and distributions from an output directory.

Metrics follow the speech-emotion-recognition convention: WA (weighted accuracy) is plain
accuracy over all evaluated utterances; UA (unweighted accuracy) is the mean per-class recall
over the reference classes. Macro and weighted F1 are also over the reference classes.
Utterances with a reference label but no prediction (in errors/, or never run) count as wrong
and are reported.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .models.base import normalise_label
from .store import layout

MISSING = "<missing>"

# Built-in maps: spelling variants are already unified by normalise_label (disgust -> disgusted,
# fear -> fearful, ...); these maps carry semantic choices. "-" drops the class from evaluation.
BUILTIN_MAPS: Dict[str, Dict[str, str]] = {
    # RAVDESS has 'calm', which no 9-class emotion2vec+ or 7-class Whisper label matches: the
    # common choice is to merge it into neutral.
    "ravdess": {"calm": "neutral"},
    "ravdess-drop-calm": {"calm": "-"},
    # IEMOCAP's usual 4-class setup: excited merged into happy.
    "iemocap4": {"excited": "happy", "exc": "happy"},
}


def read_label_map(spec: Optional[str]) -> Dict[str, str]:
    """A built-in map name or a two-column TSV/whitespace file 'from to' ('-' = drop)."""
    if not spec:
        return {}
    if spec in BUILTIN_MAPS:
        return dict(BUILTIN_MAPS[spec])
    p = Path(spec)
    if not p.exists():
        raise ValueError(f"--label-map {spec!r}: neither a file nor a built-in map ({', '.join(BUILTIN_MAPS)})")
    out = {}
    for no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = line.split()
        if len(f) != 2:
            raise ValueError(f"{p}:{no}: expected 'from to', got {line!r}")
        out[normalise_label(f[0])] = f[1] if f[1] == "-" else normalise_label(f[1])
    return out


def apply_map(label: Optional[str], mapping: Dict[str, str]) -> Optional[str]:
    if label is None:
        return None
    lab = normalise_label(label)
    return mapping.get(lab, lab)


def read_ref_file(path: str) -> Dict[str, str]:
    out = {}
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        f = line.split(None, 1)
        if len(f) != 2:
            raise ValueError(f"{path}:{no}: expected '<utt> <label>', got {line!r}")
        out[f[0]] = f[1].strip()
    return out


def confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: List[str], pred_classes: List[str]) -> np.ndarray:
    ti = {c: i for i, c in enumerate(classes)}
    pj = {c: j for j, c in enumerate(pred_classes)}
    m = np.zeros((len(classes), len(pred_classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[ti[t], pj[p]] += 1
    return m


def metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> Dict:
    """WA, UA, macro/weighted F1 and per-class P/R/F1/support over the reference classes."""
    classes = sorted(set(y_true))
    n = len(y_true)
    tp = Counter(t for t, p in zip(y_true, y_pred) if t == p)
    support = Counter(y_true)
    predicted = Counter(y_pred)
    per = {}
    for c in classes:
        prec = tp[c] / predicted[c] if predicted[c] else 0.0
        rec = tp[c] / support[c]
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": prec, "recall": rec, "f1": f1, "support": support[c]}
    wa = sum(tp.values()) / n if n else 0.0
    ua = float(np.mean([per[c]["recall"] for c in classes])) if classes else 0.0
    macro = float(np.mean([per[c]["f1"] for c in classes])) if classes else 0.0
    weighted = sum(per[c]["f1"] * support[c] for c in classes) / n if n else 0.0
    return {"n": n, "WA": wa, "UA": ua, "macro_f1": macro, "weighted_f1": weighted, "per_class": per}


def reference_labels(res, df, ref: Optional[str] = None) -> Dict[str, str]:
    """utt -> reference label: ``ref`` (an utt2emo file), else the run's own (its ref_label
    column, and the utt2emo of its data dir for the utterances in errors/)."""
    if ref:
        return read_ref_file(ref)
    if "ref_label" in df.columns:
        refs = {u: r for u, r in zip(df.utt_id, df.ref_label) if r is not None}
        # errored utterances lost their reference column: take it from the run's data dir (its
        # absolute path is in the manifest, so this works from any working directory)
        data_dir = (res.manifest.get("input") or {}).get("data_dir")
        if data_dir is None:  # a directory written before the manifest kept absolute paths
            inp = res.manifest.get("config", {}).get("input")
            data_dir = (inp if Path(inp).is_dir() else str(Path(inp).parent)) if inp else None
        cand = Path(data_dir) / "utt2emo" if data_dir else None
        if cand is not None and cand.exists():
            refs = {**read_ref_file(str(cand)), **refs}
        return refs
    raise ValueError("no reference labels: pass --ref utt2emo (or run with an utt2emo in the data dir)")


def read_dim_file(path: str, names: Optional[Sequence[str]] = None) -> Tuple[List[str], Dict[str, np.ndarray]]:
    """A Kaldi-style table of dimensional references, ``utt arousal valence dominance``.

    The column names come from ``names`` or, without it, from a header line (the first line, whose
    fields after the first are not numbers, e.g. ``utt arousal valence dominance``).

    Returns (dimension names, normalised; utt -> values). Raises ValueError naming file:line.
    """
    rows: Dict[str, np.ndarray] = {}
    header: Optional[List[str]] = [normalise_label(n) for n in names] if names else None
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        try:
            vals = np.array([float(v) for v in f[1:]], dtype=np.float64)
        except ValueError:
            if not rows and header is None and no == 1:
                header = [normalise_label(n) for n in f[1:]]
                continue
            raise ValueError(f"{path}:{no}: expected '<utt> <number> <number> ...', got {line!r}")
        if header is None:
            raise ValueError(f"{path}: no header line naming the dimensions (e.g. 'utt arousal valence dominance'); "
                             "add one, or give the names with --dim-names arousal,valence,dominance")
        if len(vals) != len(header) or not np.all(np.isfinite(vals)):
            raise ValueError(f"{path}:{no}: expected {len(header)} finite values ({', '.join(header)}), got {line!r}")
        if f[0] in rows:
            raise ValueError(f"{path}:{no}: utterance {f[0]!r} appears twice")
        rows[f[0]] = vals
    if header is None or not rows:
        raise ValueError(f"{path}: no reference values")
    return header, rows


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (population moments, as MSP-Podcast and AVEC
    compute it): 2 cov / (var_x + var_y + (mean_x - mean_y)^2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    den = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / den) if den > 0 else float("nan")


def dim_metrics(ref: np.ndarray, pred: np.ndarray) -> Dict:
    r = float(np.corrcoef(ref, pred)[0, 1]) if len(ref) > 1 and ref.std() > 0 and pred.std() > 0 else float("nan")
    return {"n": int(len(ref)), "ccc": ccc(ref, pred), "pearson_r": r, "mae": float(np.abs(ref - pred).mean()),
            "ref_mean": float(ref.mean()), "pred_mean": float(pred.mean())}


def evaluate_dims(out_dir: str, ref_dim: Optional[str] = None, dim_names: Optional[Sequence[str]] = None,
                  eval_dir: Optional[str] = None) -> Dict:
    """A regression (dimensional) run against an ``utt2dim`` table: CCC, Pearson r and MAE per
    dimension (over the utterances with both), overall and per speaker; written to
    OUT/eval/dims.json. Utterances with a reference but no prediction are counted, not scored."""
    from .store import open_results, value_column

    res = open_results(out_dir)
    df = res.labels
    if ref_dim is None:
        data_dir = (res.manifest.get("input") or {}).get("data_dir")
        cand = Path(data_dir) / "utt2dim" if data_dir else None
        if cand is None or not cand.exists():
            raise ValueError(f"{out_dir} holds dimensional predictions: give the references with --ref-dim "
                             "utt2dim ('utt arousal valence dominance' lines, a header line naming the columns)")
        ref_dim = str(cand)
    names, refs = read_dim_file(ref_dim, dim_names)
    model_dims = (res.manifest.get("model") or {}).get("labels") or [
        c[len("value_"):] for c in df.columns if c.startswith("value_")]
    both = [n for n in names if value_column(n) in df.columns]
    if not both:
        raise ValueError(f"{ref_dim} names dimensions {names}; the model predicts {model_dims}: none in common "
                         "(rename the header, or use --dim-names)")
    pred = df.set_index("utt_id")
    ids = sorted(u for u in refs if u in pred.index)
    if not ids:
        raise ValueError("no utterance has both a reference and a prediction in this output")
    err_ids = set(res.errors.utt_id)
    missing = [u for u in refs if u not in pred.index]
    m: Dict = {"n": len(ids), "dimensions": {}, "per_speaker": {},
               "missing_predictions": {"in_errors": sum(u in err_ids for u in missing),
                                       "not_run": sum(u not in err_ids for u in missing)},
               "reference_dimensions_not_predicted": [n for n in names if n not in both],
               "predicted_dimensions_without_reference": [d for d in model_dims if d not in names],
               "ref_file": str(ref_dim)}
    col = {n: names.index(n) for n in both}
    for n in both:
        r = np.array([refs[u][col[n]] for u in ids])
        p = pred.loc[ids, value_column(n)].to_numpy(dtype=np.float64)
        m["dimensions"][n] = dim_metrics(r, p)
    spk = pred.loc[ids, "spk"]
    for s in sorted(set(spk.dropna())):
        sid = [u for u, k in zip(ids, spk) if k == s]
        m["per_speaker"][s] = {n: {k: v for k, v in dim_metrics(
            np.array([refs[u][col[n]] for u in sid]), pred.loc[sid, value_column(n)].to_numpy(dtype=np.float64)).items()
            if k in ("n", "ccc", "mae")} for n in both}
    model = res.manifest.get("model") or {}
    m["model"] = {"id": model.get("id"), "test_model": bool(model.get("test_model"))}
    ed = Path(eval_dir) if eval_dir else Path(out_dir) / layout.EVAL
    ed.mkdir(parents=True, exist_ok=True)
    (ed / "dims.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    m["eval_dir"] = str(ed)
    return m


def format_dim_report(m: Dict) -> str:
    warn = (["NOTE: these predictions come from a random-weight TEST model: the figures test the plumbing, "
             "they say nothing about accuracy", ""] if m.get("model", {}).get("test_model") else [])
    lines = warn + [f"utterances evaluated: {m['n']}", "",
                    f"{'dimension':<14}{'CCC':>9}{'Pearson r':>11}{'MAE':>9}{'ref mean':>10}{'pred mean':>11}"]
    for d, v in m["dimensions"].items():
        lines.append(f"{d:<14}{v['ccc']:>9.4f}{v['pearson_r']:>11.4f}{v['mae']:>9.4f}{v['ref_mean']:>10.4f}"
                     f"{v['pred_mean']:>11.4f}")
    miss = m["missing_predictions"]
    if miss["in_errors"] or miss["not_run"]:
        lines.append(f"\nreferences without a prediction (not scored): {miss['in_errors']} in errors/, "
                     f"{miss['not_run']} never run")
    if m["reference_dimensions_not_predicted"]:
        lines.append("reference dimensions the model does not predict: " + ", ".join(m["reference_dimensions_not_predicted"]))
    if m["per_speaker"]:
        dims = list(m["dimensions"])
        lines += ["", f"{'speaker':<20}{'n':>6}" + "".join(f"{'CCC ' + d[:8]:>14}" for d in dims)]
        for s, v in m["per_speaker"].items():
            lines.append(f"{s:<20}{v[dims[0]]['n']:>6d}" + "".join(f"{v[d]['ccc']:>14.4f}" for d in dims))
    lines.append(f"\nwrote {m['eval_dir']}/dims.json")
    return "\n".join(lines)


def head_kind(res) -> str:
    """What the run's model head gives (``Results.head_kind``)."""
    return res.head_kind


def evaluate(out_dir: str, ref: Optional[str] = None, label_map: Optional[str] = None,
             eval_dir: Optional[str] = None, plot: bool = True) -> Dict:
    """Compare predictions in ``out_dir`` with reference labels; write metrics.json (+ PNG).

    A multi-label run is scored by its top class. A regression run is refused (its metrics are
    :func:`evaluate_dims`')."""
    from .store import open_results

    res = open_results(out_dir)
    if head_kind(res) == "regression":
        raise ValueError(f"{out_dir} holds dimensional predictions (a regression head: value_* columns), not "
                         "classes: WA/UA/F1 do not apply. Score them with `batchser eval OUT --ref-dim utt2dim` "
                         "(CCC, Pearson r, MAE per dimension)")
    df = res.labels
    if head_kind(res) == "multi_label" and not df.empty:  # the top class stands for the prediction
        cls = [c for c in df.columns if c.startswith("score_")]
        df = df.assign(label=np.array([c[len("score_"):] for c in cls])[df[cls].to_numpy().argmax(1)])
    mapping = read_label_map(label_map)
    refs = reference_labels(res, df, ref)
    if not df.empty and df.label.isna().all():
        raise ValueError(f"{out_dir} has no predicted labels (an embedding-only model?)")
    pred = {u: l for u, l in zip(df.utt_id, df.label)} if not df.empty else {}
    spk = {u: s for u, s in zip(df.utt_id, df.spk)} if not df.empty else {}
    err_ids = set(res.errors.utt_id)
    model_labels = res.manifest.get("model", {}).get("labels") or sorted(set(pred.values()) - {None})
    model_classes = {apply_map(l, mapping) for l in model_labels}

    y_true, y_pred, ids, dropped = [], [], [], Counter()
    n_err = n_notrun = 0
    for u, r in sorted(refs.items()):
        t = apply_map(r, mapping)
        if t == "-":
            dropped[normalise_label(r)] += 1
            continue
        if u in pred:
            p = apply_map(pred[u], mapping)
        else:
            p = MISSING
            if u in err_ids:
                n_err += 1
            else:
                n_notrun += 1
        y_true.append(t)
        y_pred.append(p if p != "-" else MISSING)
        ids.append(u)
    if not y_true:
        raise ValueError("no utterance has both a reference label and a place in this output")
    m = metrics(y_true, y_pred)
    classes = sorted(set(y_true))
    pred_classes = sorted(set(y_pred) | set(classes), key=lambda c: (c == MISSING, c))
    cm = confusion(y_true, y_pred, classes, pred_classes)
    m.update({
        "scored_by": "top class of a multi-label head" if head_kind(res) == "multi_label" else "label",
        "label_map": mapping,
        "reference_classes_model_cannot_output": {c: int(sum(1 for t in y_true if t == c))
                                                  for c in classes if c not in model_classes},
        "missing_predictions": {"in_errors": n_err, "not_run": n_notrun},
        "dropped_by_label_map": dict(dropped),
        "confusion": {"rows": classes, "columns": pred_classes, "matrix": cm.tolist()},
        "predictions_without_reference": len(set(pred) - set(refs)),
    })
    by_spk = {}
    for s in sorted({spk.get(u) for u in ids} - {None}):
        idx = [i for i, u in enumerate(ids) if spk.get(u) == s]
        mm = metrics([y_true[i] for i in idx], [y_pred[i] for i in idx])
        by_spk[s] = {k: mm[k] for k in ("n", "WA", "UA", "macro_f1")}
    m["per_speaker"] = by_spk
    model = res.manifest.get("model") or {}
    m["model"] = {"id": model.get("id"), "test_model": bool(model.get("test_model"))}
    ed = Path(eval_dir) if eval_dir else Path(out_dir) / layout.EVAL
    ed.mkdir(parents=True, exist_ok=True)
    (ed / "metrics.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    if plot:
        plot_confusion(cm, classes, pred_classes, ed / "confusion.png",
                       title=f"UA {m['UA']:.3f}  WA {m['WA']:.3f}  (n={m['n']})", test_model=m["model"]["test_model"])
    m["eval_dir"] = str(ed)
    m["written"] = [str(ed / "metrics.json")] + ([str(ed / "confusion.png")] if plot else [])
    return m


def plot_confusion(cm: np.ndarray, rows: List[str], cols: List[str], path: Path, title: str = "",
                   test_model: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import mark_test_model

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(cols), 1.0 + 0.6 * len(rows)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if test_model:  # room for the note above the title
        fig.set_figheight(fig.get_figheight() + 0.4)
        fig.subplots_adjust(top=1 - 0.5 / fig.get_figheight())
        mark_test_model(fig, True, text="RANDOM-WEIGHT TEST model:\nlabels mean nothing")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_report(m: Dict) -> str:
    warn = (["NOTE: these predictions come from a random-weight TEST model: the figures test the plumbing, "
             "they say nothing about accuracy", ""] if m.get("model", {}).get("test_model") else [])
    lines = warn + [f"utterances evaluated: {m['n']}   WA {m['WA']:.4f}   UA {m['UA']:.4f}   "
             f"macro-F1 {m['macro_f1']:.4f}   weighted-F1 {m['weighted_f1']:.4f}",
             "", f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for c, v in m["per_class"].items():
        lines.append(f"{c:<14}{v['precision']:>10.4f}{v['recall']:>10.4f}{v['f1']:>10.4f}{v['support']:>10d}")
    cm = m["confusion"]
    lines += ["", "confusion (rows: reference, columns: predicted)",
              " " * 14 + "".join(f"{c[:9]:>10}" for c in cm["columns"])]
    for r, row in zip(cm["rows"], cm["matrix"]):
        lines.append(f"{r:<14}" + "".join(f"{v:>10d}" for v in row))
    miss = m["missing_predictions"]
    if miss["in_errors"] or miss["not_run"]:
        lines.append(f"\nmissing predictions counted as wrong: {miss['in_errors']} in errors/, "
                     f"{miss['not_run']} never run")
    if m["reference_classes_model_cannot_output"]:
        lines.append("reference classes the model cannot output: " + ", ".join(
            f"{c} ({n})" for c, n in m["reference_classes_model_cannot_output"].items())
            + "  (a --label-map can merge them, e.g. --label-map ravdess)")
    if m["dropped_by_label_map"]:
        lines.append("dropped by the label map: " + ", ".join(f"{c} ({n})" for c, n in m["dropped_by_label_map"].items()))
    if m["per_speaker"]:
        lines += ["", f"{'speaker':<20}{'n':>6}{'WA':>9}{'UA':>9}{'macro-F1':>10}"]
        for s, v in m["per_speaker"].items():
            lines.append(f"{s:<20}{v['n']:>6d}{v['WA']:>9.4f}{v['UA']:>9.4f}{v['macro_f1']:>10.4f}")
    lines.append("\nwrote " + ", ".join(m.get("written") or [f"{m['eval_dir']}/metrics.json"]))
    return "\n".join(lines)


SUMMARY_TOP_GROUPS = 40  # groups drawn one by one in summary_by_*.png; the rest are one "other" bar


def summarize(out_dir: str, by: str = "spk", png: bool = False) -> Tuple[Path, "object"]:
    """Per-speaker or per-recording label distribution and mean class scores, as Parquet.

    The ``n_<class>`` / ``frac_<class>`` / ``mean_score_<class>`` columns are those of every class
    the model has (from the manifest), whether or not it was predicted, so that tables of several
    runs line up. The PNG shows the largest groups one by one and the rest as one "other" bar.
    """
    import pandas as pd

    from .store import open_results

    res = open_results(out_dir)
    df = res.labels
    key = {"spk": "spk", "rec": "rec_id"}[by]
    if df.empty:
        raise ValueError(f"{out_dir} has no results to summarise")
    if df[key].isna().all():
        raise ValueError(f"no {by} information in {out_dir} (run with an utt2spk to summarise by speaker)")
    g = df.groupby(key)
    out = pd.DataFrame({"utterances": g.size(), "hours": g.duration.sum() / 3600.0})
    classes = (res.manifest.get("model") or {}).get("labels") or \
        [c[len("score_"):] for c in df.columns if c.startswith("score_")]
    if df.label.notna().any():
        counts = pd.crosstab(df[key], df.label).reindex(columns=classes, fill_value=0)
        for c in classes:
            out[f"n_{c}"] = counts[c]
            out[f"frac_{c}"] = counts[c] / out.utterances
        out["top_label"] = counts.idxmax(axis=1)
    for c in classes:
        if f"score_{c}" in df.columns:
            out[f"mean_score_{c}"] = g[f"score_{c}"].mean()
    for c in df.columns:  # a regression head: each dimension's mean and spread per group
        if c.startswith("value_"):
            out[f"mean_{c}"] = g[c].mean()
            out[f"std_{c}"] = g[c].std(ddof=0)
    out = out.reset_index()
    path = layout.summary_path(Path(out_dir), by)
    out.to_parquet(path, index=False)
    if png and df.label.notna().any():
        plot_summary(out, key=key, classes=classes, what={"spk": "speaker", "rec": "recording"}[by],
                     path=layout.summary_path(Path(out_dir), by, ".png"),
                     test_model=bool((res.manifest.get("model") or {}).get("test_model")))
    return path, out


def plot_summary(out, *, key: str, classes: List[str], what: str, path: Path,
                 top: int = SUMMARY_TOP_GROUPS, test_model: bool = False) -> None:
    """Stacked horizontal bars of each group's label fractions, the largest groups first; a
    readable size for 3 groups or 30,000 (at most ``top`` + 1 bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    t = out.sort_values(["utterances", key], ascending=[False, True])
    shown = t.head(top)
    n_cols = [f"n_{c}" for c in classes]
    fr = shown.set_index(key)[n_cols].astype(float)
    fr.index = [f"{k} ({n})" for k, n in zip(fr.index, shown.utterances)]
    rest = t.iloc[top:]
    if len(rest):
        fr.loc[f"other {len(rest)} {what}s ({int(rest.utterances.sum())})"] = rest[n_cols].sum().astype(float).values
    fr = fr.div(fr.sum(axis=1).where(lambda x: x > 0, 1), axis=0)
    fr.columns = classes
    fig, ax = plt.subplots(figsize=(9, min(2 + 0.28 * len(fr), 14)))
    fr.iloc[::-1].plot.barh(stacked=True, ax=ax, colormap="tab10", width=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of the group's utterances")
    ax.set_ylabel(f"{what} (utterances)")
    ax.set_title(f"Predicted labels by {what}: {len(t)} {what}s, {int(t.utterances.sum())} utterances"
                 + (f" (largest {top} shown, the rest as one bar)" if len(rest) else ""), fontsize=10)
    ax.tick_params(axis="y", labelsize=7 if len(fr) > 20 else 9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="label")
    fig.tight_layout()
    if test_model:
        from .plot import mark_test_model

        fig.subplots_adjust(top=1 - 0.55 / fig.get_figheight())
        mark_test_model(fig, True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
