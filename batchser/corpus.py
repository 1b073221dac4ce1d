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
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

_ARK_RE = re.compile(r"^(?P<path>.+):(?P<offset>\d+)(?P<slice>\[[^\]]*\])?$")


@dataclass(frozen=True, slots=True)
class AudioSource:
    """Where a recording's bytes come from: a file, a shell pipe, or a Kaldi ark entry."""

    kind: str  # "file" | "pipe" | "ark"
    value: str  # path, command (without the trailing |), or "path.ark:offset"
    shown: Optional[str] = None  # what messages call it, when not ``value`` (a cached pipe's command)

    @property
    def name(self) -> str:
        """The source as the user wrote it, for messages."""
        if self.shown is not None:
            return self.shown
        return f"pipe {self.value!r}" if self.kind == "pipe" else self.value


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


def table_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """Non-empty lines with CRLF/LF stripped, numbered from 1; UTF-8 (a leading BOM is dropped).

    Bytes that are not UTF-8 stop the read with the file, line and column: a table in another
    encoding is a corpus problem, not one utterance's.
    """
    try:
        with open(path, "rb") as f:
            for no, raw in enumerate(f, 1):
                if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise CorpusError(f"{path}:{no}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}): "
                                      f"{raw.rstrip()!r}; batchser reads Kaldi tables as UTF-8") from None
                if line.strip():
                    yield no, line
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror or e}") from e


def _split_id(line: str) -> Tuple[str, str]:
    parts = line.strip().split(None, 1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _duplicate(seen: Dict[str, int], key: str, no: int, where, what: str) -> Optional[ReadError]:
    """A ReadError if ``key`` was seen before (at the line ``seen`` records), else record it."""
    if key in seen:
        return ReadError(key, f"{where}: duplicate {what} {key!r} (first at line {seen[key]}); line ignored")
    seen[key] = no
    return None


def _read_table(path: Path, errors: List[ReadError]) -> Dict[str, str]:
    """Two-column Kaldi table (id value) -> {id: value}. Bad lines -> errors."""
    out: Dict[str, str] = {}
    if not path.exists():
        return out
    seen: Dict[str, int] = {}
    for no, line in table_lines(path):
        key, val = _split_id(line)
        where = f"{path}:{no}"
        if not val:
            errors.append(ReadError(key, f"{where}: malformed line, expected '<id> <value>': {line!r}"))
        elif (dup := _duplicate(seen, key, no, where, "id")) is not None:
            errors.append(dup)
        else:
            out[key] = val
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


@dataclass
class _WavScp:
    """wav.scp read: usable recordings, unusable ones (why), every id seen, and the line errors."""

    recs: Dict[str, Tuple[AudioSource, int]] = field(default_factory=dict)
    bad: Dict[str, str] = field(default_factory=dict)
    seen: Dict[str, int] = field(default_factory=dict)
    errors: List[ReadError] = field(default_factory=list)


@dataclass
class _SideTables:
    spk: Dict[str, str]
    dur: Dict[str, str]
    rdur: Dict[str, str]
    emo: Dict[str, str]


def _locate(path: Path) -> Tuple[Path, Path]:
    """(data dir, wav.scp) for a data dir or a wav.scp path."""
    if path.is_dir():
        if not (path / "wav.scp").exists():
            raise CorpusError(f"{path} is a directory without a wav.scp")
        return path, path / "wav.scp"
    if path.is_file():
        return path.parent, path
    raise CorpusError(f"{path}: no such file or directory")


def _read_wav_scp(scp: Path, base: Path, allow_pipes: bool) -> _WavScp:
    w = _WavScp()
    for no, line in table_lines(scp):
        rec, rx = _split_id(line)
        where = f"{scp}:{no}"
        dup = _duplicate(w.seen, rec, no, where, "recording id")
        if dup is not None:
            w.errors.append(dup)
            continue
        if not rx:
            w.errors.append(ReadError(rec, f"{where}: malformed line, expected '<recording-id> <rxfilename>': {line!r}"))
            continue
        src, msg = parse_rxfilename(rx, base, scp.parent, allow_pipes, where)
        if src is None:
            w.errors.append(ReadError(rec, msg))
            w.bad[rec] = msg
            continue
        w.recs[rec] = (src, no)
    return w


class _Shared:
    """One string object per distinct recording / speaker / label, shared by all its utterances
    (a manifest of millions of utterances is held in memory: ~0.3 KB each instead of ~0.6)."""

    def __init__(self):
        self.canon: Dict[str, str] = {}

    def __call__(self, v: Optional[str]) -> Optional[str]:
        return None if v is None else self.canon.setdefault(v, v)


def _fnum(s: str) -> Optional[float]:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if v == v else None  # reject NaN


def _segment_utterances(seg_path: Path, wav: _WavScp, side: _SideTables, shared: _Shared
                        ) -> Tuple[List[Utterance], List[ReadError]]:
    """One utterance per line of ``segments``; bad lines become errors named by their utterance id."""
    utts: List[Utterance] = []
    errs: List[ReadError] = []
    seen: Dict[str, int] = {}
    seg_file = str(seg_path)
    for no, line in table_lines(seg_path):
        where = _Where(seg_file, no)
        f = line.split()
        uid = f[0]
        if len(f) != 4:
            errs.append(ReadError(uid, f"{where}: malformed segment, expected '<utt> <rec> <start> <end>': {line!r}"))
            continue
        dup = _duplicate(seen, uid, no, where, "utterance id")
        if dup is not None:
            errs.append(dup)
            continue
        rec, s, e = f[1], _fnum(f[2]), _fnum(f[3])
        if rec not in wav.recs:
            why = f"which is unusable: {wav.bad[rec]}" if rec in wav.bad else (
                "whose wav.scp line was ignored" if rec in wav.seen else "not in wav.scp")
            errs.append(ReadError(uid, f"{where}: segment refers to recording {rec!r} {why}"))
            continue
        if s is None or e is None or s < 0:
            errs.append(ReadError(uid, f"{where}: bad start/end times {f[2]!r} {f[3]!r}"))
            continue
        end = None if e == -1 else e
        if end is not None and s >= end:
            errs.append(ReadError(uid, f"{where}: start {s} >= end {end}"))
            continue
        rd = _fnum(side.rdur[rec]) if rec in side.rdur else None
        known = (end - s) if end is not None else (rd - s if rd is not None else None)
        utts.append(Utterance(
            utt_id=uid, rec_id=shared(rec), source=wav.recs[rec][0], start=s, end=end,
            spk=shared(side.spk.get(uid)), duration=known, ref_label=shared(side.emo.get(uid)),
            list_file=seg_file, line=no))
    return utts, errs


def _recording_utterances(scp: Path, wav: _WavScp, side: _SideTables, shared: _Shared) -> List[Utterance]:
    """Without ``segments``, every usable recording is one utterance (its id is the recording id)."""
    scp_file = str(scp)
    out = []
    for rec, (src, no) in wav.recs.items():
        d = side.dur.get(rec) or side.rdur.get(rec)
        out.append(Utterance(
            utt_id=rec, rec_id=rec, source=src, spk=shared(side.spk.get(rec)),
            duration=_fnum(d) if d else None, ref_label=shared(side.emo.get(rec)), list_file=scp_file, line=no))
    return out


def _settle_errors(utts: List[Utterance], errs: List[ReadError], warnings: List[ReadError]) -> List[ReadError]:
    """An id is either work or one error row, never both: a duplicate line of an id that is
    processed (or already reported) becomes a warning."""
    ok = {u.utt_id for u in utts}
    kept: Dict[str, ReadError] = {}
    for e in errs:
        if e.utt_id in ok or e.utt_id in kept:
            warnings.append(e)
        else:
            kept[e.utt_id] = e
    return list(kept.values())


def read_corpus(path: str | os.PathLike, audio_root: Optional[str] = None, allow_pipes: bool = True,
                extensions: Optional[Sequence[str]] = None) -> Corpus:
    """Read a Kaldi data dir or wav.scp, or one of the other inputs (``batchser.inputs``): an
    audio file, a text file of paths, a folder of audio files (``extensions``), a lhotse manifest."""
    from . import inputs

    p = Path(path)
    kind = inputs.input_kind(p) if p.exists() else "kaldi"
    if kind == "audio":
        return inputs.read_audio_file(p)
    if kind == "folder":
        return inputs.read_folder(p, extensions or inputs.AUDIO_EXTENSIONS)
    if kind == "list":
        return inputs.read_path_list(p, audio_root)
    if kind == "lhotse":
        return inputs.read_lhotse(p, allow_pipes)
    return read_kaldi(p, audio_root=audio_root, allow_pipes=allow_pipes)


def read_kaldi(path: Path, audio_root: Optional[str] = None, allow_pipes: bool = True) -> Corpus:
    """Read a wav.scp file or a Kaldi data dir holding one."""
    data_dir, scp = _locate(Path(path))
    base = Path(audio_root) if audio_root else Path.cwd()
    corpus = Corpus(data_dir=data_dir, wav_scp=scp)
    wav = _read_wav_scp(scp, base, allow_pipes)
    warn = corpus.warnings
    side = _SideTables(*(_read_table(data_dir / name, warn) for name in ("utt2spk", "utt2dur", "reco2dur", "utt2emo")))
    shared = _Shared()
    seg_path = data_dir / "segments"
    if seg_path.exists():
        warn.extend(wav.errors)  # with segments, utterances are the segments: reported per segment
        corpus.utterances, errs = _segment_utterances(seg_path, wav, side, shared)
    else:
        corpus.utterances, errs = _recording_utterances(scp, wav, side, shared), wav.errors
    corpus.errors = _settle_errors(corpus.utterances, errs, warn)
    for name, table, what in (("utt2spk", side.spk, "speaker"), ("utt2emo", side.emo, "reference label")):
        if table:
            lack = [u.utt_id for u in corpus.utterances if u.utt_id not in table]
            if lack:
                warn.append(ReadError(lack[0], f"{data_dir / name}: no {what} for {len(lack)} utterance(s), e.g. "
                                               f"{', '.join(lack[:5])}"))
    return corpus


def safe_filename(utt_id: str) -> str:
    """A file name derived from an utterance id that cannot escape its directory."""
    s = re.sub(r"[^\w.\-]+", "_", utt_id, flags=re.UNICODE)
    s = s.lstrip(".") or "_"
    return s[:200]

