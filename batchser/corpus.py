"""Kaldi data-dir reader: wav.scp (+ segments, utt2spk, utt2dur, reco2dur, utt2emo) -> utterances.

The reader never decodes audio. It yields a manifest of :class:`Utterance` records and a list of
:class:`ReadError` records (bad lines), each naming file and line, so that every input line ends
up either as an utterance or as an error row.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

_ARK_RE = re.compile(r"^(?P<path>.+):(?P<offset>\d+)(?P<slice>\[[^\]]*\])?$")


@dataclass(frozen=True, slots=True)
class AudioSource:
    """Where a recording's bytes come from: a file, a shell pipe, or a Kaldi ark entry."""

    kind: str  # "file" | "pipe" | "ark"
    value: str  # path, command (without the trailing |), or "path.ark:offset"


@dataclass(slots=True)
class Utterance:
    """One unit of work: a whole recording or a segment of one."""

    utt_id: str
    rec_id: str
    source: AudioSource
    start: Optional[float] = None  # seconds; None = from the beginning
    end: Optional[float] = None  # seconds; None = to the end
    spk: Optional[str] = None
    duration: Optional[float] = None  # known without decoding (segments, utt2dur, reco2dur)
    ref_label: Optional[str] = None
    list_file: str = ""  # the file (wav.scp or segments) whose line defined this utterance
    line: int = 0

    @property
    def where(self) -> str:
        """'file:line' of the defining line, for messages."""
        return f"{self.list_file}:{self.line}"


@dataclass
class ReadError:
    """A line or utterance the reader could not turn into work."""

    utt_id: str
    message: str
    stage: str = "read"


@dataclass
class Corpus:
    utterances: List[Utterance] = field(default_factory=list)
    errors: List[ReadError] = field(default_factory=list)
    warnings: List[ReadError] = field(default_factory=list)  # bad lines in side tables, ignored duplicates
    data_dir: Optional[Path] = None
    wav_scp: Optional[Path] = None

    @property
    def n_input(self) -> int:
        return len(self.utterances) + len(self.errors)


class _Where:
    """'file:line', formatted only when a message needs it (the reader's hot loop makes millions)."""

    __slots__ = ("file", "line")

    def __init__(self, file: str, line: int):
        self.file, self.line = file, line

    def __format__(self, spec: str) -> str:
        return f"{self.file}:{self.line}"


class CorpusError(ValueError):
    """The corpus cannot be read at all (missing wav.scp, unreadable file)."""


def _lines(path: Path) -> Iterator[Tuple[int, str]]:
    """Non-empty lines with CRLF/LF stripped, numbered from 1; UTF-8."""
    try:
        with open(path, "r", encoding="utf-8", newline="") as f:
            for no, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield no, line
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not valid UTF-8 ({e})") from e


def _split_id(line: str) -> Tuple[str, str]:
    parts = line.strip().split(None, 1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _read_table(path: Path, errors: List[ReadError]) -> Dict[str, Tuple[str, int]]:
    """Two-column Kaldi table (id value) -> {id: (value, line)}. Bad lines -> errors."""
    out: Dict[str, Tuple[str, int]] = {}
    if not path.exists():
        return out
    for no, line in _lines(path):
        key, val = _split_id(line)
        where = f"{path}:{no}"
        if not val:
            errors.append(ReadError(key, f"{where}: malformed line, expected '<id> <value>': {line!r}"))
        elif key in out:
            errors.append(ReadError(key, f"{where}: duplicate id {key!r} (first at line {out[key][1]}); line ignored"))
        else:
            out[key] = (val, no)
    return out


def parse_rxfilename(rx: str, base: Path, scp_dir: Path, allow_pipes: bool, where: str) -> Tuple[Optional[AudioSource], Optional[str]]:
    """Classify a wav.scp value. Returns (source, None) or (None, error message)."""
    if rx.endswith("|"):
        cmd = rx[:-1].strip()
        if not cmd:
            return None, f"{where}: empty pipe command"
        if not allow_pipes:
            return None, f"{where}: pipe command refused (--no-pipes): {cmd!r}"
        return AudioSource("pipe", cmd), None
    if rx.startswith("|"):
        return None, f"{where}: output pipes ('| cmd') cannot be read from"
    if rx == "-":
        return None, f"{where}: standard input ('-') is not supported as an audio source"
    p = Path(rx)
    full = p if p.is_absolute() else base / p
    if full.is_file():
        return AudioSource("file", str(full)), None
    m = _ARK_RE.match(rx)
    if m:
        ap = Path(m.group("path"))
        afull = ap if ap.is_absolute() else base / ap
        if afull.is_file():
            return AudioSource("ark", f"{afull}:{m.group('offset')}{m.group('slice') or ''}"), None
    if " " in rx.strip() or "\t" in rx:
        return None, (f"{where}: {rx!r} contains spaces but is neither an existing file nor a command "
                      "ending in '|' (Kaldi pipe form)")
    if not p.is_absolute() and (scp_dir / p).exists():
        return None, (f"{where}: {rx!r} not found relative to {base} (relative paths resolve against "
                      f"the current directory, as in Kaldi); it exists next to the wav.scp: "
                      f"pass --audio-root {scp_dir}")
    return None, f"{where}: audio file not found: {full}"


def read_corpus(path: str | os.PathLike, audio_root: Optional[str] = None, allow_pipes: bool = True) -> Corpus:
    """Read a wav.scp file or a Kaldi data dir holding one."""
    path = Path(path)
    if path.is_dir():
        data_dir, scp = path, path / "wav.scp"
        if not scp.exists():
            raise CorpusError(f"{path} is a directory without a wav.scp")
    elif path.is_file():
        data_dir, scp = path.parent, path
    else:
        raise CorpusError(f"{path}: no such file or directory")
    base = Path(audio_root) if audio_root else Path.cwd()
    corpus = Corpus(data_dir=data_dir, wav_scp=scp)

    recs: Dict[str, Tuple[AudioSource, int]] = {}
    seen: Dict[str, int] = {}
    rec_bad: Dict[str, str] = {}
    errs: List[ReadError] = []  # wav.scp problems; about recordings, which are utterances without segments
    for no, line in _lines(scp):
        rec, rx = _split_id(line)
        where = f"{scp}:{no}"
        if rec in seen:
            errs.append(ReadError(rec, f"{where}: duplicate recording id {rec!r} (first at line {seen[rec]}); line ignored"))
            continue
        seen[rec] = no
        if not rx:
            errs.append(ReadError(rec, f"{where}: malformed line, expected '<recording-id> <rxfilename>': {line!r}"))
            continue
        src, msg = parse_rxfilename(rx, base, scp.parent, allow_pipes, where)
        if src is None:
            errs.append(ReadError(rec, msg))
            rec_bad[rec] = msg
            continue
        recs[rec] = (src, no)

    warn = corpus.warnings
    spk = _read_table(data_dir / "utt2spk", warn)
    dur = _read_table(data_dir / "utt2dur", warn)
    rdur = _read_table(data_dir / "reco2dur", warn)
    emo = _read_table(data_dir / "utt2emo", warn)

    # one string object per distinct recording / speaker / label, shared by all its utterances
    # (a manifest of millions of utterances is held in memory: ~0.3 KB each instead of ~0.6)
    canon: Dict[str, str] = {}

    def shared(v: Optional[str]) -> Optional[str]:
        return None if v is None else canon.setdefault(v, v)

    def fnum(s: str) -> Optional[float]:
        try:
            v = float(s)
        except ValueError:
            return None
        return v if v == v else None  # reject NaN

    seg_path = data_dir / "segments"
    if seg_path.exists():
        warn.extend(errs)  # with segments, utterances are the segments: report per segment below
        errs = []
        seen_utt: Dict[str, int] = {}
        seg_file = str(seg_path)
        for no, line in _lines(seg_path):
            where = _Where(seg_file, no)
            f = line.split()
            uid = f[0]
            if len(f) != 4:
                errs.append(ReadError(uid, f"{where}: malformed segment, expected '<utt> <rec> <start> <end>': {line!r}"))
                continue
            if uid in seen_utt:
                errs.append(ReadError(uid, f"{where}: duplicate utterance id {uid!r} (first at line {seen_utt[uid]}); line ignored"))
                continue
            seen_utt[uid] = no
            rec, s, e = f[1], fnum(f[2]), fnum(f[3])
            if rec not in recs:
                why = f"which is unusable: {rec_bad[rec]}" if rec in rec_bad else (
                    "whose wav.scp line was ignored" if rec in seen else "not in wav.scp")
                errs.append(ReadError(uid, f"{where}: segment refers to recording {rec!r} {why}"))
                continue
            if s is None or e is None or s < 0:
                errs.append(ReadError(uid, f"{where}: bad start/end times {f[2]!r} {f[3]!r}"))
                continue
            end = None if e == -1 else e
            if end is not None and s >= end:
                errs.append(ReadError(uid, f"{where}: start {s} >= end {end}"))
                continue
            known = (end - s) if end is not None else (
                fnum(rdur[rec][0]) - s if rec in rdur and fnum(rdur[rec][0]) is not None else None)
            corpus.utterances.append(Utterance(
                utt_id=uid, rec_id=shared(rec), source=recs[rec][0], start=s, end=end,
                spk=shared(spk.get(uid, (None,))[0]), duration=known,
                ref_label=shared(emo.get(uid, (None,))[0]), list_file=seg_file, line=no))
    else:
        scp_file = str(scp)
        for rec, (src, no) in recs.items():
            d = dur.get(rec) or rdur.get(rec)
            corpus.utterances.append(Utterance(
                utt_id=rec, rec_id=rec, source=src, spk=shared(spk.get(rec, (None,))[0]),
                duration=fnum(d[0]) if d else None, ref_label=shared(emo.get(rec, (None,))[0]), list_file=scp_file,
                line=no))
    # An id is either work or an error row, never both: a duplicate line of an id that is
    # processed (or already reported) becomes a warning.
    ok = {u.utt_id for u in corpus.utterances}
    kept: Dict[str, ReadError] = {}
    for e in errs:
        if e.utt_id in ok or e.utt_id in kept:
            warn.append(e)
        else:
            kept[e.utt_id] = e
    corpus.errors = list(kept.values())
    return corpus


def safe_filename(utt_id: str) -> str:
    """A file name derived from an utterance id that cannot escape its directory."""
    s = re.sub(r"[^\w.\-]+", "_", utt_id, flags=re.UNICODE)
    s = s.lstrip(".") or "_"
    return s[:200]

