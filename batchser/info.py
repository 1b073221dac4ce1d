"""``batchser info``: what a corpus holds and what is wrong with it, without running a model."""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

from .audio import probe_duration
from .corpus import Corpus

BINS = [0, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf")]


def summarise(corpus: Corpus, probe: bool = True, max_problems: int = 20) -> Dict:
    """Counts, hours, duration histogram, speakers, labels and problems of a corpus."""
    durs: List[Optional[float]] = [
        (probe_duration(u) if probe else u.duration) for u in corpus.utterances
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
    problems = [e.message for e in corpus.errors] + [w.message for w in corpus.warnings]
    return {
        "path": str(corpus.wav_scp),
        "utterances": len(corpus.utterances),
        "unusable": len(corpus.errors),
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
           "sources: " + ", ".join(f"{k} {v}" for k, v in sorted(s["sources"].items())),
           f"audio: {s['hours_known']:.3f} h known" + (f", {s['duration_unknown']} of unknown duration"
                                                      if s["duration_unknown"] else "")]
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
