"""The corpus data model: recordings' sources, utterances, read errors, and the parsing of one
wav.scp entry (``parse_rxfilename``).

Readers never decode audio. They give :class:`Utterance` records and :class:`ReadError` records
(bad lines), each naming file and line, so that every input line ends up either as an utterance
or as an error row. The readers (:mod:`batchser.kaldi`, :mod:`batchser.inputs`) and their entry
points (:mod:`batchser.corpus`) import this module; it imports none of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

_ARK_RE = re.compile(r"^(?P<path>.+):(?P<offset>\d+)(?P<slice>\[[^\]]*\])?$")


@dataclass(frozen=True, slots=True)
class AudioSource:
    """Where a recording's bytes come from: a file, a shell pipe, a Kaldi ark entry, or a URL
    (object storage: s3://, gs://; the web: http(s)://)."""

    kind: str  # "file" | "pipe" | "ark" | "url"
    value: str  # path, command (without the trailing |), "path.ark:offset", or the URL
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


# what every command says when audio cannot be found (run, info, prepare)
CHECK_HINT = ("check the corpus with `batchser info {path}` (relative paths resolve against the current directory, "
              "or --audio-root)")


class CorpusError(ValueError):
    """The corpus cannot be read at all (missing wav.scp, unreadable file)."""


def table_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """Non-empty lines with CRLF/LF stripped, numbered from 1; UTF-8 (a leading BOM is dropped).

    Bytes that are not UTF-8 stop the read with the file, line and column: a table in another
    encoding is a corpus problem, not one utterance's.
    """
    try:
        # text mode decodes in C, a block at a time (3x faster than line by line); only "\n" ends
        # a line, as for the bytes Kaldi's tools read
        with open(path, encoding="utf-8-sig", newline="\n") as f:
            no = 0
            try:
                for no, line in enumerate(f, 1):
                    line = line.rstrip("\r\n")
                    if line and not line.isspace():
                        yield no, line
            except UnicodeDecodeError:
                _raise_bad_utf8(path)
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror or e}") from e


def _raise_bad_utf8(path: Path) -> None:
    """Find the first line that is not UTF-8 and say where (only once a read has failed)."""
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}:{no}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}): "
                                  f"{raw.rstrip()!r}; batchser reads Kaldi tables as UTF-8") from None
    raise CorpusError(f"{path}: not valid UTF-8; batchser reads Kaldi tables as UTF-8")


URL_SCHEMES = ("s3://", "gs://", "gcs://", "http://", "https://")  # read through fsspec (audio.read_url)


def is_url(rx: str) -> bool:
    return rx.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """A URL as it may appear in messages and the manifest: no user:password@ part."""
    import re as _re

    return _re.sub(r"^([a-z0-9+.-]+://)[^/@]*@", r"\1***@", url)


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
    if is_url(rx):  # object storage or the web: never touched by the reader (a missing object is an error row)
        return AudioSource("url", rx, shown=redact(rx)), None
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
    if full.is_dir():
        return None, (f"{where}: {rx!r} is a directory, not an audio file (a wav.scp line names one file; for a "
                      f"folder of audio files pass the folder itself as PATH)")
    return None, f"{where}: audio file not found: {full}"


def safe_filename(utt_id: str) -> str:
    """A file name derived from an utterance id that cannot escape its directory."""
    s = re.sub(r"[^\w.\-]+", "_", utt_id, flags=re.UNICODE)
    s = s.lstrip(".") or "_"
    return s[:200]

