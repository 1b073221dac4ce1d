"""``batchser info``: what a corpus holds and what is wrong with it, without running a model."""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

from .audio import probe_duration
from .records import Corpus

BINS = [0, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf")]


def _probe_headers(corpus: Corpus):
    """(header facts per file recording, problems): rate/channels/format of every plain file
    read from its header once; a file whose header libsndfile cannot read (random bytes, 0
    bytes) is a problem (the run would try ffmpeg, which rarely does better)."""
    import soundfile as sf

    facts: Dict[str, tuple] = {}
    problems: Dict[str, str] = {}
    for u in corpus.utterances:
        src = u.source
        if src.kind != "file" or u.rec_id in facts or u.rec_id in problems:
            continue
        try:
            i = sf.info(src.value)
            if i.frames <= 0:
                raise ValueError("no audio frames")
            facts[u.rec_id] = (i.samplerate, i.channels, f"{i.format}/{i.subtype}", i.frames / i.samplerate)
        except Exception as e:
            problems[u.rec_id] = f"{u.where}: {src.value}: header unreadable ({str(e).strip() or type(e).__name__})"
    return facts, problems


def summarise(corpus: Corpus, probe: bool = True, max_problems: int = 20) -> Dict:
    """Counts, hours, duration histogram, speakers, labels and problems of a corpus.

    ``probe``: read every file's header (durations, rate/channel/format histogram, unreadable
    files counted as unusable); without it only what the data dir says is used.
    """
    facts, bad = _probe_headers(corpus) if probe else ({}, {})
    durs: List[Optional[float]] = [
        (probe_duration(u) if probe and u.rec_id not in bad else u.duration) for u in corpus.utterances
    ]
    known = [d for d in durs if d is not None]
    hist = Counter()
    for d in known:
        for lo, hi in zip(BINS, BINS[1:]):
            if lo <= d < hi:
                hist[(lo, hi)] += 1
                break
    spk = Counter(u.spk for u in corpus.utterances if u.spk is not None)
    labels = Counter(u.ref_label for u in corpus.utterances if u.ref_label is not None)
    kinds = Counter(u.source.kind for u in corpus.utterances)
    problems = [e.message for e in corpus.errors] + list(bad.values()) + [w.message for w in corpus.warnings]
    n_bad_utts = sum(1 for u in corpus.utterances if u.rec_id in bad)
    rates = Counter(f[0] for f in facts.values())
    chans = Counter(f[1] for f in facts.values())
    fmts = Counter(f[2] for f in facts.values())
    return {
        "path": str(corpus.wav_scp),
        "utterances": len(corpus.utterances) - n_bad_utts,
        "unusable": len(corpus.errors) + n_bad_utts,
        "sample_rates": {str(k): v for k, v in sorted(rates.items())},
        "channels": {str(k): v for k, v in sorted(chans.items())},
        "formats": dict(sorted(fmts.items())),
        "warnings": len(corpus.warnings),
        "sources": dict(kinds),
        "hours_known": sum(known) / 3600.0,
        "duration_unknown": len(durs) - len(known),
        "duration_min_s": min(known) if known else None,
        "duration_max_s": max(known) if known else None,
        "duration_histogram": [{"from_s": lo, "to_s": hi, "count": hist[(lo, hi)]}
                               for lo, hi in zip(BINS, BINS[1:]) if hist[(lo, hi)]],
        "speakers": len(spk),
        "utterances_without_speaker": len(corpus.utterances) - sum(spk.values()),
        "labels": dict(sorted(labels.items())),
        "problems": problems[:max_problems],
        "problems_total": len(problems),
    }


def format_text(s: Dict) -> str:
    out = [f"corpus: {s['path']}",
           f"utterances: {s['utterances']} usable, {s['unusable']} unusable, {s['warnings']} warnings",
           "sources: " + ", ".join(f"{k} {v}" for k, v in sorted(s["sources"].items()))]
    if s.get("sample_rates"):
        out += ["files: " + ", ".join(f"{k} Hz {v}" for k, v in s["sample_rates"].items())
                + "; " + ", ".join(f"{k} ch {v}" for k, v in s["channels"].items())
                + "; " + ", ".join(f"{k} {v}" for k, v in s["formats"].items())]
    out.append(f"audio: {s['hours_known']:.3f} h known"
               + (f", {s['duration_unknown']} of unknown duration" if s["duration_unknown"] else ""))
    if s["duration_min_s"] is not None:
        out.append(f"duration: min {s['duration_min_s']:.2f} s, max {s['duration_max_s']:.2f} s")
        top = max(b["count"] for b in s["duration_histogram"])
        for b in s["duration_histogram"]:
            hi = "inf" if b["to_s"] == float("inf") else f"{b['to_s']:g}"
            bar = "#" * max(1, round(40 * b["count"] / top))
            out.append(f"  {b['from_s']:>4g}-{hi:<4} s {b['count']:>8}  {bar}")
    out.append(f"speakers: {s['speakers']}" + (f" ({s['utterances_without_speaker']} utterances without one)"
                                               if s["utterances_without_speaker"] else ""))
    if s["labels"]:
        out.append("labels: " + ", ".join(f"{k} {v}" for k, v in s["labels"].items()))
    if s["problems_total"]:
        out.append(f"problems ({s['problems_total']}):")
        out += [f"  {p}" for p in s["problems"]]
        if s["problems_total"] > len(s["problems"]):
            out.append(f"  ... and {s['problems_total'] - len(s['problems'])} more")
    return "\n".join(out)
