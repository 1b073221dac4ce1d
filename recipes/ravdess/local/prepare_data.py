#!/usr/bin/env python3
"""Make a Kaldi data dir (wav.scp, utt2spk, spk2utt, utt2emo) from an extracted RAVDESS download.

    python local/prepare_data.py /path/to/RAVDESS data/ravdess [--include-song]

RAVDESS file names are 'MM-VV-EE-II-SS-RR-AA.wav': modality (03 = audio only), vocal channel
(01 speech, 02 song), emotion, intensity, statement, repetition, actor. Emotions: 01 neutral,
02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust (written 'disgusted', emotion2vec's
spelling), 08 surprised. Utterance ids are 'ravdess<AA>-<file stem>' so that they sort by speaker
(Kaldi convention); speakers are 'ravdess<AA>'. Paths in wav.scp are absolute.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
            "06": "fearful", "07": "disgusted", "08": "surprised"}
NAME = re.compile(r"^(?P<mod>\d\d)-(?P<voc>\d\d)-(?P<emo>\d\d)-(?P<int>\d\d)-(?P<st>\d\d)-(?P<rep>\d\d)-(?P<act>\d\d)$")


def prepare(src: Path, dst: Path, include_song: bool = False) -> dict:
    """Scan ``src`` recursively; write the data dir; return counts and skipped files."""
    rows, skipped = [], []
    for p in sorted(src.rglob("*.wav")):
        m = NAME.match(p.stem)
        if not m or m["emo"] not in EMOTIONS:
            skipped.append(f"{p}: name does not follow the RAVDESS scheme")
            continue
        if m["mod"] != "03":
            skipped.append(f"{p}: modality {m['mod']} is not audio-only (03)")
            continue
        if m["voc"] == "02" and not include_song:
            continue
        spk = f"ravdess{m['act']}"
        rows.append((f"{spk}-{p.stem}", spk, EMOTIONS[m["emo"]], p.resolve()))
    ids = [r[0] for r in rows]
    dup = {u for u in ids if ids.count(u) > 1}
    if dup:
        raise SystemExit(f"the same file name occurs twice under {src}: {sorted(dup)[:3]}")
    rows.sort()
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "wav.scp").write_text("".join(f"{u} {p}\n" for u, _, _, p in rows))
    (dst / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _, _ in rows))
    (dst / "utt2emo").write_text("".join(f"{u} {e}\n" for u, _, e, _ in rows))
    spk2utt = {}
    for u, s, _, _ in rows:
        spk2utt.setdefault(s, []).append(u)
    (dst / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    return {"utterances": len(rows), "speakers": len(spk2utt), "skipped": skipped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="extracted RAVDESS (e.g. Audio_Speech_Actors_01-24/)")
    ap.add_argument("dst", type=Path, help="data dir to write")
    ap.add_argument("--include-song", action="store_true", help="also take the song files (vocal channel 02)")
    a = ap.parse_args()
    if not a.src.is_dir():
        raise SystemExit(f"{a.src}: not a directory")
    r = prepare(a.src, a.dst, a.include_song)
    for s in r["skipped"][:10]:
        print(f"skipped: {s}", file=sys.stderr)
    if not r["utterances"]:
        raise SystemExit(f"no RAVDESS speech files found under {a.src}")
    print(f"{a.dst}: {r['utterances']} utterances, {r['speakers']} speakers"
          + (f", {len(r['skipped'])} files skipped" if r["skipped"] else ""))


if __name__ == "__main__":
    main()
