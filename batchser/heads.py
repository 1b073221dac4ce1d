"""Trained heads: a small classifier on frozen utterance embeddings (the EmoBox protocol), and
applying it to new embeddings.

* Folds (``fold_assignment``), EmoBox's rule for ``auto``: fewer than 4 speakers -> one split
  holding out a stratified 25% of each class; 4-6 speakers -> leave one speaker out; more ->
  speaker groups of about 4 (``round(speakers / 4)`` folds, speakers shuffled with the seed and
  dealt round-robin). ``speaker``: leave one speaker out. ``N``: N folds of speaker groups (N
  class-stratified folds when the run has no speakers). Every fold but the 25% split is
  speaker-independent: no speaker is in both its train and test part.
* The head (``HeadNet``): the embedding standardised by the training data's mean and standard
  deviation, then ``linear`` (one layer) or ``mlp`` (Linear 256, ReLU, dropout 0.2, Linear),
  trained with AdamW in mini-batches of 256 and a class-weighted cross entropy (weights
  n / (k * n_c)) for a fixed number of epochs, shuffled from a fixed seed: the same data gives
  the same head.
* A head directory (``save_head``): ``head.safetensors`` (the weights and the standardisation)
  and ``head.json`` (name, labels, kind, the embedding model's sha256 and dimension, training
  settings, cross-validated metrics); ``train-head`` adds ``confusion.png`` of the pooled
  out-of-fold predictions. The final head is trained on all labelled utterances.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

HIDDEN = 256
DROPOUT = 0.2
EPOCHS = {"linear": 40, "mlp": 40}
LR = {"linear": 3e-3, "mlp": 1e-3}
BATCH = 256
WEIGHT_DECAY = 1e-3
HEAD_FILE, META_FILE = "head.safetensors", "head.json"


class HeadMismatch(ValueError):
    """A head trained on another embedding model (or dimension) than the one it is applied to."""


def head_name(text: str) -> str:
    """A head's name as it appears in column names (``head_<name>_label``)."""
    t = re.sub(r"[^0-9a-z_]+", "_", str(text).lower()).strip("_")
    if not t:
        raise ValueError(f"head name {text!r}: needs letters or digits")
    return t


# -- folds ---------------------------------------------------------------------------------
def _stratified(y: np.ndarray, k: int, rng) -> np.ndarray:
    """k class-stratified folds (each class dealt round-robin after a shuffle)."""
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def fold_assignment(spk: Optional[Sequence[Optional[str]]], y: np.ndarray, rule: str = "auto",
                    seed: int = 0) -> Tuple[np.ndarray, str]:
    """Test-fold index of every utterance (-1: always in training), and what rule was used.

    ``rule``: ``auto`` (EmoBox), ``speaker`` (leave one speaker out) or a number of folds.
    """
    rng = np.random.default_rng(seed)
    spk_known = spk is not None and all(s is not None for s in spk)
    speakers = sorted(set(spk)) if spk_known else []
    if rule == "auto":
        n = len(speakers)
        if n < 4:
            fold = np.full(len(y), -1, dtype=np.int64)
            for c in np.unique(y):
                idx = rng.permutation(np.flatnonzero(y == c))
                fold[idx[: max(1, int(round(0.25 * len(idx))))] if len(idx) > 1 else []] = 0
            return fold, f"EmoBox: {n} speaker(s) (< 4): one stratified 25% test split (not speaker-independent)"
        if n <= 6:
            return _by_speaker(spk, speakers), f"EmoBox: {n} speakers (4-6): leave one speaker out"
        k = max(2, int(np.floor(n / 4 + 0.5)))  # round half up: 10 speakers -> 3 folds (4, 3, 3)
        return _speaker_groups(spk, speakers, k, rng), f"EmoBox: {n} speakers (> 6): {k} folds of about 4 speakers"
    if rule == "speaker":
        if len(speakers) < 2:
            raise ValueError("--folds speaker needs at least 2 speakers (an utt2spk in the run's data dir)")
        return _by_speaker(spk, speakers), f"leave one speaker out ({len(speakers)} speakers)"
    try:
        k = int(rule)
    except ValueError:
        raise ValueError(f"--folds {rule!r}: auto, speaker or a number of folds") from None
    if k < 2:
        raise ValueError(f"--folds {k}: at least 2")
    if speakers:
        if len(speakers) < k:
            raise ValueError(f"--folds {k}: only {len(speakers)} speakers (folds are speaker-independent)")
        return _speaker_groups(spk, speakers, k, rng), f"{k} folds of speaker groups"
    return _stratified(y, k, rng), f"{k} class-stratified folds (no speakers known: not speaker-independent)"


def _by_speaker(spk, speakers) -> np.ndarray:
    pos = {s: i for i, s in enumerate(speakers)}
    return np.array([pos[s] for s in spk], dtype=np.int64)


def _speaker_groups(spk, speakers, k: int, rng) -> np.ndarray:
    order = rng.permutation(len(speakers))
    group = {speakers[j]: n % k for n, j in enumerate(order)}
    return np.array([group[s] for s in spk], dtype=np.int64)


# -- the model -------------------------------------------------------------------------------
def _net(kind: str, dim: int, n_classes: int):
    import torch
    from torch import nn

    class HeadNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("std", torch.ones(dim))
            if kind == "linear":
                self.layers = nn.Sequential(nn.Linear(dim, n_classes))
            else:
                self.layers = nn.Sequential(nn.Linear(dim, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
                                            nn.Linear(HIDDEN, n_classes))

        def forward(self, x):
            return self.layers((x - self.mean) / self.std)

    if kind not in EPOCHS:
        raise ValueError(f"--head {kind!r}: linear or mlp")
    return HeadNet()


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, *, kind: str = "linear", seed: int = 0,
        device: str = "cpu", epochs: Optional[int] = None):
    """Train a head on embeddings ``x`` (n x d) with class indices ``y``; returns the module (eval mode)."""
    import torch

    torch.manual_seed(seed)
    net = _net(kind, x.shape[1], n_classes).to(device)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    with torch.no_grad():
        net.mean.copy_(xt.mean(0))
        net.std.copy_(xt.std(0, unbiased=False).clamp_min(1e-6))
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(w, dtype=torch.float32, device=device))
    opt = torch.optim.AdamW(net.parameters(), lr=LR[kind], weight_decay=WEIGHT_DECAY)
    z = (xt - net.mean) / net.std  # standardised once: the loop trains the layers on it
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs or EPOCHS[kind]):
        for idx in torch.randperm(len(yt), generator=gen).to(device).split(BATCH):
            opt.zero_grad()
            loss = loss_fn(net.layers(z[idx]), yt[idx])
            loss.backward()
            opt.step()
    return net.eval()


def predict_proba(net, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    import torch

    with torch.no_grad():
        t = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
        return torch.softmax(net.to(device)(t), -1).float().cpu().numpy()


# -- training with cross-validation -------------------------------------------------------------
@dataclass
class TrainResult:
    net: object
    labels: List[str]
    folds: List[Dict]
    summary: Dict
    fold_rule: str
    oof_true: List[str] = field(default_factory=list)
    oof_pred: List[str] = field(default_factory=list)


def cross_validate(x: np.ndarray, labels: Sequence[str], spk: Optional[Sequence[Optional[str]]], *,
                   kind: str = "linear", folds: str = "auto", seed: int = 0, device: str = "cpu") -> TrainResult:
    """Cross-validated metrics (per fold and mean +- std) and the final head trained on all data."""
    from .evaluate import metrics

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"a head needs at least 2 classes; the references hold {classes}")
    y = np.array([classes.index(l) for l in labels])
    fold, rule = fold_assignment(spk, y, folds, seed)
    per, oof_t, oof_p = [], [], []
    for f in sorted(set(fold.tolist()) - {-1}):
        test = fold == f
        train = ~test
        if len(np.unique(y[train])) < 2:
            raise ValueError(f"fold {f}: its training part holds one class only")
        net = fit(x[train], y[train], len(classes), kind=kind, seed=seed, device=device)
        pred = predict_proba(net, x[test], device).argmax(1)
        t = [classes[i] for i in y[test]]
        p = [classes[i] for i in pred]
        m = metrics(t, p)
        held = sorted({spk[i] for i in np.flatnonzero(test)}) if spk is not None and all(s is not None for s in spk) else []
        per.append({"fold": int(f), "n_test": int(test.sum()), "n_train": int(train.sum()), "test_speakers": held,
                    "WA": m["WA"], "UA": m["UA"], "macro_f1": m["macro_f1"], "micro_f1": m["WA"]})
        oof_t += t
        oof_p += p
    summary = {k: {"mean": float(np.mean([d[k] for d in per])), "std": float(np.std([d[k] for d in per]))}
               for k in ("WA", "UA", "macro_f1", "micro_f1")}
    pooled = metrics(oof_t, oof_p)
    summary["pooled_out_of_fold"] = {k: pooled[k] for k in ("n", "WA", "UA", "macro_f1")}
    final = fit(x, y, len(classes), kind=kind, seed=seed, device=device)
    return TrainResult(final, classes, per, summary, rule, oof_t, oof_p)


# -- saving, loading, applying --------------------------------------------------------------------
def save_head(dest: Path, result: TrainResult, *, name: str, kind: str, embedding: Dict, settings: Dict) -> Path:
    """Write ``dest/head.safetensors`` and ``dest/head.json`` (each atomically)."""
    from safetensors.torch import save_file

    from .store import atomic

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{HEAD_FILE}.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in result.net.state_dict().items()}, str(tmp))
    atomic.commit(tmp, dest / HEAD_FILE)
    meta = {"name": name, "kind": kind, "labels": result.labels, "embedding": embedding, "settings": settings,
            "folds": result.fold_rule, "cv": {"per_fold": result.folds, **result.summary},
            "weights_sha256": hashlib.sha256((dest / HEAD_FILE).read_bytes()).hexdigest()}
    atomic.write_text(dest / META_FILE, json.dumps(meta, indent=2) + "\n")
    return dest


@dataclass
class LoadedHead:
    name: str
    labels: List[str]
    meta: Dict
    net: object
    path: Path

    def check(self, *, model_sha256: Optional[str], dim: int, model_id: str = "") -> None:
        """Refuse embeddings of another model than the one the head was trained on."""
        emb = self.meta.get("embedding", {})
        want = emb.get("model_sha256")
        if int(emb.get("dim", -1)) != int(dim) or (want and model_sha256 and want != model_sha256) or \
                (want and not model_sha256):
            raise HeadMismatch(
                f"head {self.path} was trained on embeddings of {emb.get('model_id')} (sha256 {str(want)[:12]}..., "
                f"{emb.get('dim')}-d); these come from {model_id or 'another model'} (sha256 "
                f"{str(model_sha256)[:12]}..., {dim}-d): a head only works on the embeddings it was trained on")

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict_proba(self.net, np.asarray(x, dtype=np.float32))

    def columns(self, probs: np.ndarray) -> List[Dict]:
        """``head_<name>_label``, ``head_<name>_score``, ``head_<name>_score_<class>`` per row."""
        out = []
        for p in probs:
            k = int(np.argmax(p))
            r = {f"head_{self.name}_label": self.labels[k], f"head_{self.name}_score": float(p[k])}
            r.update({f"head_{self.name}_score_{l}": float(v) for l, v in zip(self.labels, p)})
            out.append(r)
        return out

    def column_names(self) -> List[str]:
        return ([f"head_{self.name}_label", f"head_{self.name}_score"]
                + [f"head_{self.name}_score_{l}" for l in self.labels])


def load_head(path: str | Path) -> LoadedHead:
    """A head directory written by ``train-head``. Raises ValueError naming what is missing."""
    from safetensors.torch import load_file

    p = Path(path)
    if not (p / META_FILE).is_file() or not (p / HEAD_FILE).is_file():
        raise ValueError(f"--head {p}: not a head directory (needs {META_FILE} and {HEAD_FILE}, as train-head writes)")
    meta = json.loads((p / META_FILE).read_text(encoding="utf-8"))
    state = load_file(str(p / HEAD_FILE))
    dim = int(meta["embedding"]["dim"])
    net = _net(meta["kind"], dim, len(meta["labels"]))
    net.load_state_dict(state)
    return LoadedHead(head_name(meta["name"]), list(meta["labels"]), meta, net.eval(), p)


def load_heads(paths: Sequence[str]) -> List[LoadedHead]:
    heads = [load_head(p) for p in paths]
    names = [h.name for h in heads]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"--head: two heads named {dup[0]!r}; heads need distinct names (train-head --name)")
    return heads


# -- train-head and apply-head on an output directory ------------------------------------------
def train_head(out_dir: str, *, ref: Optional[str] = None, label_map: Optional[str] = None, kind: str = "linear",
               folds: str = "auto", seed: int = 0, name: Optional[str] = None, device: str = "cpu",
               plot: bool = True) -> Dict:
    """``batchser train-head``: cross-validate a head on OUT's embeddings and references, train
    the final one on all of them, write OUT/heads/NAME/. Returns head.json's contents (+ its path)."""
    from .evaluate import apply_map, plot_confusion, read_label_map, reference_labels
    from .store import layout, open_results

    res = open_results(out_dir)
    df = res.labels
    if df.empty:
        raise ValueError(f"{out_dir} has no results to train on")
    mapping = read_label_map(label_map)
    refs = reference_labels(res, df, ref)
    keep, y = [], []
    for i, u in enumerate(df.utt_id):
        r = refs.get(u)
        if r is None:
            continue
        t = apply_map(r, mapping)
        if t != "-":
            keep.append(i)
            y.append(t)
    if len(keep) < 4:
        raise ValueError(f"only {len(keep)} utterances of {out_dir} have a reference label: too few to train a head")
    x = np.asarray(res.embeddings(), dtype=np.float32)[keep]
    spk = df.spk.to_numpy(dtype=object)[keep]
    spk = None if any(s is None or s != s for s in spk) else list(spk)
    result = cross_validate(x, y, spk, kind=kind, folds=folds, seed=seed, device=device)
    model = res.manifest.get("model") or {}
    nm = head_name(name or f"{kind}")
    dest = Path(out_dir) / layout.HEADS / nm
    meta_emb = {"model_id": model.get("id"), "model_sha256": model.get("weights_sha256"), "dim": int(x.shape[1]),
                "test_model": bool(model.get("test_model")), "from": str(Path(out_dir).resolve())}
    settings = {"head": kind, "folds": folds, "seed": seed, "label_map": mapping, "n_train": len(keep),
                "epochs": EPOCHS[kind], "batch_size": BATCH, "lr": LR[kind], "weight_decay": WEIGHT_DECAY,
                "class_weights": "n / (k * n_class)", "hidden": HIDDEN if kind == "mlp" else None}
    save_head(dest, result, name=nm, kind=kind, embedding=meta_emb, settings=settings)
    if plot and result.oof_true:
        from .evaluate import confusion

        cls = result.labels
        cm = confusion(result.oof_true, result.oof_pred, cls, cls)
        s = result.summary["pooled_out_of_fold"]
        plot_confusion(cm, cls, cls, dest / "confusion.png",
                       title=f"head {nm}, out-of-fold\nUA {s['UA']:.3f}  WA {s['WA']:.3f}  (n={s['n']})",
                       test_model=bool(model.get("test_model")))
    meta = json.loads((dest / META_FILE).read_text())
    meta["dir"] = str(dest)
    return meta


def format_cv(meta: Dict) -> str:
    cv = meta["cv"]
    warn = (["NOTE: the embeddings come from a random-weight TEST model: these figures check the plumbing, "
             "they say nothing about accuracy", ""] if meta["embedding"].get("test_model") else [])
    lines = warn + [f"head {meta['name']} ({meta['kind']}) on {meta['settings']['n_train']} utterances, "
                    f"{len(meta['labels'])} classes; folds: {meta['folds']}", "",
                    f"{'fold':<6}{'n_test':>8}{'WA':>9}{'UA':>9}{'macro-F1':>10}  held-out speakers"]
    for f in cv["per_fold"]:
        sp = ", ".join(f["test_speakers"][:6]) + (" ..." if len(f["test_speakers"]) > 6 else "")
        lines.append(f"{f['fold']:<6}{f['n_test']:>8}{f['WA']:>9.4f}{f['UA']:>9.4f}{f['macro_f1']:>10.4f}  {sp}")
    lines.append(f"{'mean':<6}{'':>8}" + "".join(f"{cv[k]['mean']:>9.4f}" if k != "macro_f1" else f"{cv[k]['mean']:>10.4f}"
                                               for k in ("WA", "UA", "macro_f1")))
    lines.append(f"{'+-std':<6}{'':>8}" + "".join(f"{cv[k]['std']:>9.4f}" if k != "macro_f1" else f"{cv[k]['std']:>10.4f}"
                                                for k in ("WA", "UA", "macro_f1")))
    lines.append(f"\nfinal head (all labelled utterances) -> {meta['dir']}/")
    return "\n".join(lines)


def apply_head(out_dir: str, head_dir: str) -> Dict:
    """``batchser apply-head``: the head on OUT's stored embeddings, without running the model,
    into OUT/head_predictions/NAME/ through the store (``store.write_head_predictions``: one part
    per labels part, atomic, idempotent)."""
    from .store import open_results, write_head_predictions
    from .store.head_predictions import embedding_dim

    res = open_results(out_dir)
    head = load_head(head_dir)
    model = res.manifest.get("model") or {}
    head.check(model_sha256=model.get("weights_sha256"), dim=embedding_dim(res.dir), model_id=str(model.get("id")))
    source = {"head": str(Path(head_dir).resolve()), "weights_sha256": head.meta.get("weights_sha256")}
    return write_head_predictions(res.dir, name=head.name, classes=head.labels, source=source,
                                  predict=lambda e: head.columns(head.predict(e)))
