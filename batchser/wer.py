"""``batchser eval OUT --wer``: word and character error rates of a run's transcripts (``run
--asr``) against reference transcripts (the data dir's Kaldi ``text``, or ``--ref-text``).

Normalisation (the default, as Whisper's papers and model cards score): OpenAI's Whisper English
text normaliser from the ``whisper-normalizer`` package (lower case, punctuation removed,
British spellings and numbers written one way, contractions expanded), applied to reference and
hypothesis alike; ``basic`` is Whisper's language-independent one; ``none`` scores the raw
strings. Counts come from ``jiwer`` (Levenshtein alignment of words, or characters for the CER).

Every reference utterance is scored: one without a transcript (in errors/, or never run) counts
as an empty hypothesis (all deletions) and is reported; one whose reference is empty after
normalisation cannot be scored (WER is undefined) and is reported apart.
WER by emotion: grouped by the reference emotion (utt2emo) when the data dir has one, and by the
predicted label.
Segments (``run --vad``): when the references name recordings rather than the run's utterances,
each recording's segment transcripts are joined in time order and scored against its reference
(the default references are then the ``text`` of the data dir the segments were cut from).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .store import layout

NORMALIZERS = ("english", "basic", "none")


def read_text_file(path: str) -> Dict[str, str]:
    """A Kaldi ``text`` file: ``utt transcript...`` per line (a line with an id only is an empty
    transcript); a repeated id is refused with its line number."""
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            utt = parts[0]
            if utt in out:
                raise ValueError(f"{path}:{n}: utterance {utt!r} appears twice")
            out[utt] = parts[1] if len(parts) > 1 else ""
    return out


def normalizer(kind: str) -> Callable[[str], str]:
    if kind == "none":
        return lambda s: " ".join(s.split())
    try:
        if kind == "english":
            from whisper_normalizer.english import EnglishTextNormalizer

            f = EnglishTextNormalizer()
        elif kind == "basic":
            from whisper_normalizer.basic import BasicTextNormalizer

            f = BasicTextNormalizer()
        else:
            raise ValueError(f"--normalizer {kind!r}: use one of {', '.join(NORMALIZERS)}")
    except ImportError as e:
        raise ValueError("eval --wer normalises with Whisper's text normaliser: pip install 'batchser[asr]' "
                         "(or pass --no-normalize to score the raw text)") from e
    return lambda s: " ".join(f(s).split())


def counts(refs: Sequence[str], hyps: Sequence[str]) -> Dict:
    """WER, CER and the word edit counts over utterances taken together (corpus level)."""
    import jiwer

    if not refs:
        return {"n": 0, "ref_words": 0, "wer": None, "cer": None, "substitutions": 0, "deletions": 0,
                "insertions": 0, "hits": 0}
    w = jiwer.process_words(list(refs), list(hyps))
    c = jiwer.process_characters(list(refs), list(hyps))
    n_words = w.hits + w.substitutions + w.deletions
    return {"n": len(refs), "ref_words": n_words, "wer": w.wer, "cer": c.cer, "substitutions": w.substitutions,
            "deletions": w.deletions, "insertions": w.insertions, "hits": w.hits}


def _grouped(keys: Dict[str, Optional[str]], ids: List[str], refs: Dict[str, str], hyps: Dict[str, str]) -> Dict:
    out = {}
    for g in sorted({keys.get(u) for u in ids} - {None}):
        sel = [u for u in ids if keys.get(u) == g]
        out[g] = counts([refs[u] for u in sel], [hyps[u] for u in sel])
    return out


def _reference_dir(data_dir: Optional[str]) -> Optional[str]:
    """Where the references are: the run's data dir, or for segments that VAD cut (``run --vad``,
    ``batchser segment``: their data dir holds a segment.json) the data dir they were cut from."""
    if not data_dir:
        return None
    seg = Path(data_dir) / "segment.json"
    if seg.exists():
        inp = Path(json.loads(seg.read_text(encoding="utf-8")).get("input", data_dir))
        return str(inp if inp.is_dir() else inp.parent)
    return data_dir


def _segment_recordings(seg_dir: Optional[str]) -> Dict[str, str]:
    """segment id -> recording id, from a data dir's ``segments`` file ({} without one)."""
    f = Path(seg_dir) / "segments" if seg_dir else None
    if f is None or not f.exists():
        return {}
    out = {}
    with open(f, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = parts[1]
    return out


def evaluate_wer(out_dir: str, *, ref_text: Optional[str] = None, normalize: str = "english",
                 eval_dir: Optional[str] = None) -> Dict:
    """Score OUT's ``text`` column; write OUT/eval/wer.json (or ``eval_dir``) and return it."""
    from .evaluate import read_ref_file
    from .store import open_results

    try:
        import jiwer  # noqa: F401
    except ImportError as e:
        raise ValueError("eval --wer counts errors with jiwer: pip install 'batchser[asr]'") from e
    res = open_results(out_dir)
    df = res.labels
    if "text" not in df.columns:
        raise ValueError(f"{out_dir} has no transcripts (no text column): run with --asr MODEL to transcribe")
    data_dir = _reference_dir((res.manifest.get("input") or {}).get("data_dir"))
    if ref_text is None:
        cand = Path(data_dir) / "text" if data_dir else None
        if cand is None or not cand.exists():
            raise ValueError(f"no reference transcripts: {cand or 'the data dir'} does not exist; pass --ref-text "
                             "FILE (Kaldi 'text': '<utt> <transcript>' lines)")
        ref_text = str(cand)
    raw_refs = read_text_file(ref_text)
    norm = normalizer(normalize)
    hyp_raw = {u: t for u, t in zip(df.utt_id, df.text)}
    rec_ids = set(df.rec_id)
    by_recording = bool(raw_refs) and not any(u in hyp_raw for u in raw_refs) and any(u in rec_ids for u in raw_refs)
    err_ids = set(res.errors.utt_id)
    partial: List[str] = []
    if by_recording:  # segments (run --vad) against their recordings' transcripts: joined in time order
        d = df.sort_values(["rec_id", "start"])
        hyp_raw = {r: " ".join(t for t in g.text if t) for r, g in d.groupby("rec_id", sort=False)}
        df = d.groupby("rec_id", sort=False).first().reset_index().assign(utt_id=lambda x: x.rec_id)
        seg2rec = _segment_recordings((res.manifest.get("input") or {}).get("data_dir"))
        err_recs = {seg2rec.get(u, u) for u in err_ids}  # a failed segment's recording (or a recording VAD could not read)
        partial = sorted(r for r in hyp_raw if r in err_recs)
        err_ids = err_recs
    refs, hyps, ids, empty_ref = {}, {}, [], []
    missing = {"in_errors": 0, "not_run": 0}
    for u in sorted(raw_refs):
        r = norm(raw_refs[u])
        if not r:
            empty_ref.append(u)
            continue
        if u not in hyp_raw:
            missing["in_errors" if u in err_ids else "not_run"] += 1
        refs[u], hyps[u] = r, norm(hyp_raw.get(u) or "")
        ids.append(u)
    if not ids:
        raise ValueError(f"{ref_text}: no reference transcript to score (none left after normalisation, or the "
                         "file is empty)")
    m: Dict = {"normalizer": normalize, "ref_file": ref_text, "scored_by": "recording" if by_recording else "utterance",
               **counts([refs[u] for u in ids], [hyps[u] for u in ids]),
               "missing_transcripts": missing, "empty_references": len(empty_ref),
               **({"recordings_partly_in_errors": len(partial)} if by_recording else {}),
               "transcripts_without_reference": int(sum(u not in raw_refs for u in hyp_raw))}
    spk = {u: k for u, k in zip(df.utt_id, df.spk) if isinstance(k, str)}
    if data_dir and (Path(data_dir) / "utt2spk").exists():  # speakers of the utterances in errors/ too
        spk = {**read_ref_file(str(Path(data_dir) / "utt2spk")), **spk}
    m["per_speaker"] = _grouped(spk, ids, refs, hyps)
    emo_file = Path(data_dir) / "utt2emo" if data_dir else None
    if emo_file is not None and emo_file.exists():
        m["per_reference_emotion"] = _grouped(read_ref_file(str(emo_file)), ids, refs, hyps)
    if "label" in df.columns and df.label.notna().any() and not by_recording:
        m["per_predicted_label"] = _grouped({u: l for u, l in zip(df.utt_id, df.label) if isinstance(l, str)},
                                            ids, refs, hyps)
    asr = res.manifest.get("asr") or {}
    m["asr_model"] = {"id": asr.get("id"), "engine": asr.get("engine"), "test_model": bool(asr.get("test_model"))}
    m["emotion_model"] = {"id": (res.manifest.get("model") or {}).get("id"),
                          "test_model": bool((res.manifest.get("model") or {}).get("test_model"))}
    ed = Path(eval_dir) if eval_dir else Path(out_dir) / layout.EVAL
    ed.mkdir(parents=True, exist_ok=True)
    (ed / "wer.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    m["eval_dir"] = str(ed)
    return m


def _pct(x: Optional[float]) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def format_wer_report(m: Dict) -> str:
    lines = []
    if m["asr_model"]["test_model"]:
        lines += ["NOTE: these transcripts come from a random-weight TEST speech recogniser: the figures test the "
                  "plumbing, they say nothing about accuracy", ""]
    lines += [f"WER {_pct(m['wer'])}  CER {_pct(m['cer'])}  over {m['n']} utterances, {m['ref_words']} reference words "
              f"(normaliser: {m['normalizer']})",
              f"  substitutions {m['substitutions']}, deletions {m['deletions']}, insertions {m['insertions']}"]
    if m.get("scored_by") == "recording":
        lines.append("  scored per recording: its segments' transcripts joined in time order")
        if m.get("recordings_partly_in_errors"):
            lines.append(f"  {m['recordings_partly_in_errors']} recordings have segments in errors/: scored without them")
    if m.get("transcripts_without_reference"):
        lines.append(f"  {m['transcripts_without_reference']} transcripts have no reference (not scored)")
    miss = m["missing_transcripts"]
    if miss["in_errors"] or miss["not_run"]:
        lines.append(f"  without a transcript, scored as empty: {miss['in_errors']} in errors/, {miss['not_run']} not run")
    if m["empty_references"]:
        lines.append(f"  {m['empty_references']} references are empty after normalisation: not scored")
    for key, title in (("per_reference_emotion", "by reference emotion"), ("per_predicted_label", "by predicted label"),
                       ("per_speaker", "by speaker")):
        g = m.get(key) or {}
        if key == "per_predicted_label" and m["emotion_model"]["test_model"]:
            title += " (random-weight test model)"
        if not g:
            continue
        lines += ["", f"{title}:", f"  {'':<16}{'n':>5} {'WER':>7} {'CER':>7}"]
        shown = sorted(g.items(), key=lambda kv: -kv[1]["n"])[:30]
        for k, v in shown:
            lines.append(f"  {str(k)[:16]:<16}{v['n']:>5} {_pct(v['wer']):>7} {_pct(v['cer']):>7}")
        if len(g) > len(shown):
            lines.append(f"  ... {len(g) - len(shown)} more in wer.json")
    lines += ["", f"wrote {Path(m['eval_dir']) / 'wer.json'}"]
    return "\n".join(lines)
