"""The Kaldi data-dir reader, streaming: memory bounded by a chunk, not by the corpus.

A data dir is read in two passes over its list of utterances (``segments``, or ``wav.scp``
without one):

1. **index** (:class:`KaldiStream` construction): counts lines, sums each recording's known
   duration, screens utterance ids for duplicates (8 bytes per line) and, with a shard,
   decides which recordings are this task's. No audio file is opened or even looked up.
2. **chunks** (:meth:`KaldiStream.chunks`): the utterances of this task's share, a chunk
   at a time, each a :class:`~batchser.corpus.Corpus` of utterances and error rows. Only here
   are the share's recordings looked up on disk.

Side tables (``utt2spk``, ``utt2emo``, ``utt2dur``, ``reco2dur``) are held compactly
(:mod:`batchser.idtable`: ~20 bytes per line). Rules, the same in both passes and for every task:

* the first line of an id decides it (an utterance or an error row); later lines with that id are
  warnings ("duplicate ... line ignored");
* shards are contiguous runs of recordings in ``wav.scp`` order, balanced by known audio
  (:func:`batchser.shards.contiguous`); a recording's segments stay together; a line that is bad
  on its own (malformed, bad times, unknown or unusable recording) goes to the share
  :func:`batchser.shards.error_share` of its id.
"""
from __future__ import annotations

import gc
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .records import AudioSource, Corpus, CorpusError, ReadError, Utterance, parse_rxfilename, table_lines
from .idtable import BLOCK, SideTable
from .shards import Shard, contiguous, error_share

_INF = float("inf")
MAX_WARNINGS_KEPT = 1000  # in memory; the count is always exact
CHUNK_SIZE = 100_000  # utterances handed on at a time: read, sorted by length and bucketed together


def _fnum(s: str) -> Optional[float]:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if v == v and v not in (_INF, -_INF) else None  # reject NaN and infinities


def _split_id(line: str) -> Tuple[str, str]:
    parts = line.strip().split(None, 1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _locate(path: Path) -> Tuple[Path, Path]:
    """(data dir, wav.scp) for a data dir or a wav.scp path."""
    if path.is_dir():
        if not (path / "wav.scp").exists():
            raise CorpusError(f"{path} is a directory without a wav.scp")
        return path, path / "wav.scp"
    if path.is_file():
        return path.parent, path
    raise CorpusError(f"{path}: no such file or directory")


def _syntax(rx: str, allow_pipes: bool) -> Optional[str]:
    """What is wrong with a wav.scp value without looking at the disk (None: maybe fine)."""
    if not rx:
        return "malformed line, expected '<recording-id> <rxfilename>'"
    if rx.endswith("|"):
        if not rx[:-1].strip():
            return "empty pipe command"
        if not allow_pipes:
            return f"pipe command refused (--no-pipes): {rx[:-1].strip()!r}"
        return None
    if rx.startswith("|"):
        return "output pipes ('| cmd') cannot be read from"
    if rx == "-":
        return "standard input ('-') is not supported as an audio source"
    return None


@dataclass
class _Line:
    """One line of the utterance list, parsed (both passes parse with the same code)."""

    uid: str
    rec: str
    start: Optional[float]
    end: Optional[float]
    known: Optional[float]  # duration known without audio (segments times, utt2dur, reco2dur)
    error: Optional[str]  # a line bad on its own: an error row


class _InOrder:
    """A float side table (utt2dur, reco2dur) read in step with the ids asked for, in order.

    Kaldi's tables are sorted alike, so the common case holds no table at all; at the first id
    the file does not have next, the rest is looked up in a compact table of the whole file
    (:class:`~batchser.idtable.SideTable`).
    """

    def __init__(self, path: Path, *, warn):
        self.path, self.warn = path, warn
        self.lines = table_lines(path) if path.exists() else iter(())
        self.head: Optional[Tuple[str, str, int]] = None
        self.table: Optional[SideTable] = None
        self._next()

    def _next(self) -> None:
        for no, line in self.lines:
            f = line.split(None, 1)
            if len(f) == 2:
                self.head = (f[0], f[1].strip(), no)
                return
            self.warn(f[0], f"{self.path}:{no}: malformed line, expected '<id> <value>': {line!r}")
        self.head = None

    def get(self, ids: List[str]) -> List[Optional[float]]:
        if self.table is not None:
            return self.table.get(ids)
        out: List[Optional[float]] = []
        for i, uid in enumerate(ids):
            if self.head is None or self.head[0] != uid:
                if self.head is None and not self.path.exists():
                    return out + [None] * (len(ids) - i)
                self.table = SideTable(self.path, kind="float", warn=self.warn, lines=table_lines)
                return out + self.table.get(ids[i:])
            out.append(_fnum(self.head[1]))
            self._next()
        return out


class KaldiStream:
    """A Kaldi data dir or wav.scp, indexed (pass 1); :meth:`chunks` yields its utterances.

    Args:
        path: data dir or wav.scp.
        audio_root: what relative paths resolve against (default: the current directory).
        allow_pipes: accept ``cmd |`` entries.
        shard: read only this task's share (None: everything).
    """

    def __init__(self, path: Path, *, audio_root: Optional[str] = None, allow_pipes: bool = True,
                 shard: Optional[Shard] = None):
        self.data_dir, self.wav_scp = _locate(Path(path))
        self.base = Path(audio_root) if audio_root else Path.cwd()
        self.allow_pipes, self.shard = allow_pipes, shard
        self.warnings: List[ReadError] = []
        self.n_warnings = 0
        d = self.data_dir
        self.segments = d / "segments" if (d / "segments").exists() else None
        self.list_file = self.segments or self.wav_scp
        # durations decide the split. With segments: their times (and reco2dur for end -1, per
        # recording: small). Without: utt2dur, else reco2dur, per line, read in step with wav.scp
        # (Kaldi tables are sorted alike: no table in memory) and kept as 4 bytes per line.
        self._warned: set = set()
        if self.segments is not None:
            self.rdur = SideTable(d / "reco2dur", kind="float", warn=self._warn, lines=table_lines)
        else:
            self._dur_in_order = [_InOrder(d / name, warn=self._warn) for name in ("utt2dur", "reco2dur")]
        self.with_ref = any(True for _ in table_lines(d / "utt2emo")) if (d / "utt2emo").exists() else False
        mine = self._index()
        # speakers and labels only for this task's lines (a shard of 10^7 lines holds 10^5 of them)
        self.spk = SideTable(d / "utt2spk", kind="str", warn=self._warn, lines=table_lines, only=mine)
        self.emo = SideTable(d / "utt2emo", kind="str", warn=self._warn, lines=table_lines, only=mine)

    # -- messages -------------------------------------------------------------------------
    def _warn(self, utt_id: str, message: str) -> None:
        if message in self._warned:  # a table read twice (see _InOrder) reports a line once
            return
        if len(self.warnings) < MAX_WARNINGS_KEPT:
            self._warned.add(message)
        self.n_warnings += 1
        if len(self.warnings) < MAX_WARNINGS_KEPT:
            self.warnings.append(ReadError(utt_id, message))

    # -- pass 1 ---------------------------------------------------------------------------
    def _read_recordings(self) -> None:
        """With ``segments``: wav.scp's recordings (few: a dict), their syntax checked."""
        self.recs: Dict[str, Tuple[str, int]] = {}  # rec -> (rxfilename, line)
        self.bad_recs: Dict[str, str] = {}  # rec -> why it cannot be used (without a disk lookup)
        first: Dict[str, int] = {}
        for no, line in table_lines(self.wav_scp):
            rec, rx = _split_id(line)
            where = f"{self.wav_scp}:{no}"
            if rec in first:
                self._warn(rec, f"{where}: duplicate recording id {rec!r} (first at line {first[rec]}); line ignored")
                continue
            first[rec] = no
            why = _syntax(rx, self.allow_pipes)
            if why is not None:
                msg = f"{where}: {why}" + (f": {line!r}" if not rx else "")
                self._warn(rec, msg)  # with segments, utterances are the segments: reported per segment
                self.bad_recs[rec] = msg
                continue
            self.recs[rec] = (rx, no)

    def _parse(self, no: int, line: str) -> _Line:
        if self.segments is not None:
            return self._segment(str(self.segments), no, line)
        rec, rx = _split_id(line)
        why = _syntax(rx, self.allow_pipes)
        err = None if why is None else f"{self.wav_scp}:{no}: {why}" + (f": {line!r}" if not rx else "")
        return _Line(rec, rec, None, None, None, err)

    def _segment(self, seg: str, no: int, line: str) -> _Line:
        f = line.split()
        uid = f[0]
        if len(f) != 4:
            return _Line(uid, "", None, None, None,
                         f"{seg}:{no}: malformed segment, expected '<utt> <rec> <start> <end>': {line!r}")
        rec, s, e = f[1], _fnum(f[2]), _fnum(f[3])
        if rec not in self.recs:
            why = f"which is unusable: {self.bad_recs[rec]}" if rec in self.bad_recs else "not in wav.scp"
            return _Line(uid, rec, None, None, None, f"{seg}:{no}: segment refers to recording {rec!r} {why}")
        if s is None or e is None or s < 0:
            return _Line(uid, rec, None, None, None, f"{seg}:{no}: bad start/end times {f[2]!r} {f[3]!r}")
        end = None if e == -1 else e
        if end is not None and s >= end:
            return _Line(uid, rec, None, None, None, f"{seg}:{no}: start {s} >= end {end}")
        return _Line(uid, rec, s, end, (end - s) if end is not None else None, None)

    def _index(self) -> Optional[np.ndarray]:
        """Pass 1: one cheap parse of every line; returns the first hashes of this task's ids
        (None without a shard: every id)."""
        gc_was = gc.isenabled()
        gc.disable()  # millions of short-lived strings: the cyclic collector would rescan them for nothing
        try:
            return self._index_lines()
        finally:
            if gc_was:
                gc.enable()

    def _index_lines(self) -> Optional[np.ndarray]:
        """Pass 1: hash every line's id, find the duplicates, measure each unit's audio and, with a
        shard, pick the lines of this task. Returns this task's id hashes (None: no shard)."""
        h1, code, line_secs, secs, unknown = self._scan_lines()
        return self._share_lines(h1, code, line_secs, secs, unknown)

    def _scan_lines(self):
        """Every line once: (id hashes, unit codes, per-line seconds blocks, per-recording seconds
        and unknown-duration counts with segments)."""
        secs: List[float] = []
        unknown: List[int] = []
        if self.segments is not None:
            self._read_recordings()
            rec_no = {r: i for i, r in enumerate(self.recs)}
            rd = self.rdur.get(list(self.recs))  # end -1: to the recording's end
            secs = [0.0] * len(rec_no)
            unknown = [0] * len(rec_no)
        n_shares = self.shard.count if self.shard else 1
        h1 = array("q")
        code = array("i")  # per line: its unit (recording, or the line itself) >= 0, or -(1 + share) if bad
        line_secs: List[np.ndarray] = []
        block_ids: List[str] = []
        block_good: List[bool] = []
        seg = self.segments is not None
        for no, line in table_lines(self.list_file):
            if seg:  # the common case inline (this loop runs 10^7 times); anything unusual: _segment
                f = line.split()
                if len(f) == 4 and (r := rec_no.get(f[1])) is not None:
                    try:
                        st, en = float(f[2]), float(f[3])
                    except ValueError:
                        st = en = -2.0
                    if st >= 0 and (en == -1 or st < en) and en == en and en != _INF:
                        code.append(r)
                        if en != -1:
                            secs[r] += en - st
                        elif rd[r] is not None:
                            secs[r] += rd[r] - st
                        else:
                            unknown[r] += 1
                        block_ids.append(f[0])
                        if len(block_ids) >= BLOCK:
                            self._index_block(block_ids, block_good, h1, line_secs)
                        continue
            else:  # wav.scp: a path, an ark entry or a pipe that needs no closer look here
                f = line.split(None, 1)
                if len(f) == 2:
                    rx = f[1].rstrip()
                    last = rx[-1]
                    if rx[0] != "|" and rx != "-" and (last != "|" or (self.allow_pipes and rx[:-1].strip())):
                        code.append(len(code))
                        block_ids.append(f[0])
                        block_good.append(True)
                        if len(block_ids) >= BLOCK:
                            self._index_block(block_ids, block_good, h1, line_secs)
                        continue
            x = self._parse(no, line)
            if x.error is not None:
                code.append(-1 - error_share(x.uid, n_shares))
            elif self.segments is not None:
                r = rec_no[x.rec]
                code.append(r)
                if x.known is not None:
                    secs[r] += x.known
                elif rd[r] is not None:
                    secs[r] += rd[r] - x.start
                else:
                    unknown[r] += 1
            else:
                code.append(len(code))
            block_ids.append(x.uid)
            if self.segments is None:
                block_good.append(x.error is None)
            if len(block_ids) >= BLOCK:
                self._index_block(block_ids, block_good, h1, line_secs)
        if block_ids:
            self._index_block(block_ids, block_good, h1, line_secs)
        return h1, code, line_secs, secs, unknown

    def _share_lines(self, h1: array, code: array, line_secs: List[np.ndarray], secs: List[float],
                     unknown: List[int]) -> Optional[np.ndarray]:
        n_shares = self.shard.count if self.shard else 1
        self.n_lines = len(code)
        h = np.frombuffer(h1, dtype=np.int64) if len(h1) else np.zeros(0, dtype=np.int64)
        c = np.frombuffer(code, dtype=np.int32) if len(code) else np.zeros(0, dtype=np.int32)
        srt = np.sort(h)
        self._dup_hashes = set(srt[1:][srt[1:] == srt[:-1]].tolist())  # ids on several lines (or a rare hash twin)
        del srt
        if self.segments is not None:
            u = np.array(secs, dtype=np.float64)
            u[np.array(unknown, dtype=np.int64) > 0] = np.nan  # a recording with an unknown segment
            u[np.bincount(c[c >= 0], minlength=len(u)) == 0] = 0.0  # no segment: no audio to share
        else:
            self._line_secs = np.concatenate(line_secs) if line_secs else np.zeros(0, dtype=np.float32)
            del line_secs[:]
            u = self._line_secs.astype(np.float64)
            u[c < 0] = 0.0
        known = u[~np.isnan(u)]
        self.n_unknown_durations = int(len(u) - len(known))
        unit_share = contiguous(np.where(np.isnan(u), float(known.mean()) if len(known) else 1.0, u), n_shares)
        self.n_usable_lines = int((c >= 0).sum())  # whole corpus, before any disk lookup
        if self.shard is None:  # pass 2 parses every line
            self._touch = self._touch_share = None
            self.n_expected = self.n_lines
            return None
        unit_share = unit_share.astype(np.int32)
        share = np.where(c >= 0, unit_share[np.maximum(c, 0)] if len(unit_share) else 0, -1 - c).astype(np.int32)
        mine = self.shard.index
        is_mine = share == mine
        self._touch = np.flatnonzero(is_mine)  # the lines pass 2 parses, and their shares
        if self._dup_hashes:  # and every line of a duplicated id, wherever it goes: the first decides
            dup_lines = np.flatnonzero(np.isin(h, np.fromiter(self._dup_hashes, dtype=np.int64)))
            self._touch = np.union1d(self._touch, dup_lines)
        self._touch_share = share[self._touch]
        self.n_expected = int(is_mine.sum())  # for progress (duplicates aside)
        return h[is_mine]

    def _index_block(self, ids: List[str], good: List[bool], h1: array, line_secs: List[np.ndarray]) -> None:
        h1.extend(map(hash, ids))
        if self.segments is None:  # durations per line: utt2dur, else reco2dur
            ok = np.array(good, dtype=bool)
            secs = np.full(len(ids), np.nan, dtype=np.float32)
            known = self._known_durations([u for u, g in zip(ids, good) if g])
            secs[ok] = [np.nan if k is None else k for k in known]
            line_secs.append(secs)
        ids.clear()
        good.clear()

    def _known_durations(self, ids: List[str]) -> List[Optional[float]]:
        """Without segments, in wav.scp order: utt2dur, else reco2dur (the recording is the utterance)."""
        a, b = (t.get(ids) for t in self._dur_in_order)
        return [x if x is not None else y for x, y in zip(a, b)]

    # -- pass 2 ---------------------------------------------------------------------------
    def _source(self, x: _Line, no: int, text: str, memo: Dict) -> Tuple[Optional[AudioSource], Optional[str]]:
        """The audio source of a line's recording, looked up on disk (once per recording)."""
        if self.segments is None:
            return parse_rxfilename(_split_id(text)[1], self.base, self.wav_scp.parent, self.allow_pipes,
                                    f"{self.wav_scp}:{no}")
        if x.rec not in memo:
            rx, rno = self.recs[x.rec]
            src, msg = parse_rxfilename(rx, self.base, self.wav_scp.parent, self.allow_pipes, f"{self.wav_scp}:{rno}")
            memo[x.rec] = (src, None if src is not None else
                           f"segment refers to recording {x.rec!r} which is unusable: {msg}")
        src, msg = memo[x.rec]
        return src, None if msg is None else f"{self.segments}:{no}: {msg}"

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[Corpus]:
        """This task's utterances and error rows, in list order, ``size`` utterances at a time
        (a chunk ends where a recording ends when it can: segments of one recording together,
        so a pipe recording is decoded once)."""
        mine = self.shard.index if self.shard else 0
        first_of_dup: Dict[str, int] = {}  # only ids whose hash was seen on several lines
        memo: Dict[str, Tuple] = {}
        list_file = str(self.list_file)
        what = "utterance id" if self.segments is not None else "recording id"
        buf: List[Tuple[int, _Line, AudioSource]] = []
        errors: List[ReadError] = []
        lack = {"utt2spk": [0, []], "utt2emo": [0, []]}
        touch, touch_share = self._touch, self._touch_share
        nxt, n_touch, want = 0, (len(touch) if touch is not None else -1), (int(touch[0]) if touch is not None and len(touch) else -1)
        for idx, (no, text) in enumerate(table_lines(self.list_file)):
            if touch is None:
                share = mine
            elif idx != want:
                if want < 0:
                    break
                continue
            else:
                share = int(touch_share[nxt])
                nxt += 1
                want = int(touch[nxt]) if nxt < n_touch else -1
            x = self._parse(no, text)
            if self._dup_hashes and hash(x.uid) in self._dup_hashes:
                if x.uid in first_of_dup:
                    if share == mine:
                        self._warn(x.uid, f"{list_file}:{no}: duplicate {what} {x.uid!r} "
                                          f"(first at line {first_of_dup[x.uid]}); line ignored")
                    continue
                first_of_dup[x.uid] = no
            if share != mine:
                continue
            held = len(buf) + len(errors)
            if held >= size and (not buf or buf[-1][2].rec != x.rec or held >= 2 * size):
                yield self._chunk(buf, errors, lack)
                buf, errors = [], []
                memo = {x.rec: memo[x.rec]} if x.rec in memo else {}
            src = None
            if x.error is None:
                src, x.error = self._source(x, no, text, memo)
            if x.error is not None:
                errors.append(ReadError(x.uid, x.error))
                continue
            buf.append((idx, no, x, src))
        if buf or errors:
            yield self._chunk(buf, errors, lack)
        for name, (n, some) in lack.items():
            if n:
                self._warn(some[0], f"{self.data_dir / name}: no {'speaker' if name == 'utt2spk' else 'reference label'} "
                                    f"for {n} utterance(s), e.g. {', '.join(some)}")

    def _chunk(self, buf: List[Tuple[int, int, _Line, AudioSource]], errors: List[ReadError], lack: Dict) -> Corpus:
        ids = [x.uid for _, _, x, _ in buf]
        spk, emo = self.spk.get(ids), self.emo.get(ids)
        for name, table, got in (("utt2spk", self.spk, spk), ("utt2emo", self.emo, emo)):
            if table.present:
                miss = [u for u, v in zip(ids, got) if v is None]
                lack[name][0] += len(miss)
                lack[name][1].extend(miss[: 5 - len(lack[name][1])])
        if self.segments is None:  # measured in pass 1 (nan: unknown)
            known = [None if v != v else float(v) for v in self._line_secs[[b[0] for b in buf]].tolist()]
        else:
            known = [x.known for _, _, x, _ in buf]
            todo = [i for i, k in enumerate(known) if k is None]
            for i, rd in zip(todo, self.rdur.get([buf[i][2].rec for i in todo])):
                known[i] = rd - buf[i][2].start if rd is not None else None
        canon: Dict[str, str] = {}
        one = canon.setdefault  # one string object per recording / speaker / label in the chunk
        list_file = str(self.list_file)
        utts = [Utterance(utt_id=x.uid, rec_id=one(x.rec, x.rec), source=src, start=x.start, end=x.end,
                          spk=None if s is None else one(s, s), duration=k,
                          ref_label=None if e is None else one(e, e), list_file=list_file, line=no)
                for (_, no, x, src), s, e, k in zip(buf, spk, emo, known)]
        return Corpus(utterances=utts, errors=errors, warnings=[], data_dir=self.data_dir, wav_scp=self.wav_scp)


def read_kaldi(path: Path, audio_root: Optional[str] = None, allow_pipes: bool = True) -> Corpus:
    """A whole Kaldi data dir or wav.scp in memory (``info``, ``prepare``, ``features``)."""
    st = KaldiStream(Path(path), audio_root=audio_root, allow_pipes=allow_pipes)
    c = Corpus(data_dir=st.data_dir, wav_scp=st.wav_scp)
    for w in st.chunks(size=1 << 62):
        c.utterances.extend(w.utterances)
        c.errors.extend(w.errors)
    c.warnings = st.warnings
    return c
