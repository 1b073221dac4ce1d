"""``batchser segment``: speech segments of long recordings (VAD) written as a Kaldi data dir.

reader (recordings) -> decoder + VAD processes -> data-dir writer. The data dir holds
``wav.scp`` (the same recordings, paths made absolute so the dir works from anywhere),
``segments`` (ids ``<rec>-<start>-<end>`` in centiseconds), ``utt2spk`` (the recording's speaker,
or the recording id), ``spk2utt``, ``utt2dur``, ``reco2dur``, ``text`` (empty transcripts: lhotse's
``load_kaldi_data_dir`` needs the file), every file sorted by id as Kaldi wants, and ``segment_errors``: each recording that failed or held no speech, with the reason.
Every input recording is in exactly one of ``segments`` or ``segment_errors``.
``segment.json`` records the options and is written last: a data dir without it is unfinished.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .audio import TARGET_SR, AudioError, stream_recording
from .corpus import AudioSource, CorpusError, ReadError, Utterance, open_corpus
from .store import atomic
from .vad import VadOptions, segment_id

MARKER = "segment.json"
FILES = ("wav.scp", "segments", "utt2spk", "spk2utt", "utt2dur", "reco2dur", "text", "segment_errors", MARKER)

Log = Callable[[str], None]


@dataclass
class Segmented:
    """What ``segment`` did."""

    data_dir: Path
    n_recordings: int = 0
    n_segments: int = 0
    n_failed: int = 0  # recordings in segment_errors (unreadable, or no speech)
    n_dropped_short: int = 0  # segments shorter than min_segment
    audio_seconds: float = 0.0
    speech_seconds: float = 0.0
    wall_seconds: float = 0.0
    errors: List[Tuple[str, str]] = field(default_factory=list)  # first ones, for messages


_VAD = None


def _worker_init() -> None:
    from .procs import child_init

    child_init()
    import torch

    torch.set_num_threads(1)  # one recording per process: processes, not threads, share the cores


def _one(args) -> Tuple[str, float, Optional[List[Tuple[int, int]]], int, Optional[str]]:
    """(rec, seconds, segments in centiseconds or None, dropped, error) of one recording, streamed
    through decoding and the VAD a minute at a time (a 3-hour file is never in memory whole)."""
    global _VAD
    utt, opts, pipe_timeout = args
    if _VAD is None:
        from .vad import SileroVad

        _VAD = SileroVad()
    n = [0]

    def blocks():
        for b in stream_recording(utt, pipe_timeout=pipe_timeout):
            n[0] += len(b)
            yield b

    try:
        segs, dropped = _VAD.segments(blocks(), opts)
    except AudioError as e:
        return utt.rec_id, n[0] / TARGET_SR, None, 0, f"{utt.where}: {e}"
    except Exception as e:  # a decoder or VAD failure is this recording's error, not the run's
        return utt.rec_id, n[0] / TARGET_SR, None, 0, f"{utt.where}: {type(e).__name__}: {e}"
    if n[0] == 0:
        return utt.rec_id, 0.0, None, 0, f"{utt.where}: empty audio (0 samples)"
    return utt.rec_id, n[0] / TARGET_SR, segs, dropped, None


def _rx(src: AudioSource) -> str:
    return f"{src.value} |" if src.kind == "pipe" else src.value


def check_target(out: Path, input_path: str) -> None:
    """``out`` must be new, empty, or a data dir ``segment`` wrote (its segment.json there, and
    nothing else but its files); never the input's own data dir."""
    src = Path(input_path)
    src_dir = (src if src.is_dir() else src.parent).resolve()
    if out.resolve() == src_dir:
        raise CorpusError(f"--out {out} is the input's own data dir: segment writes a new data dir beside it")
    if out.exists():
        if not out.is_dir():
            raise CorpusError(f"{out} is a file, not a directory")
        entries = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        others = sorted(n for n in entries if n not in FILES)
        if others or (entries and MARKER not in entries):
            shown = ", ".join((others or sorted(entries))[:5])
            raise CorpusError(f"{out} holds files batchser segment did not write ({shown}): choose a new directory")


def segment(input_path: str, out_dir: str | os.PathLike, *, opts: VadOptions, audio_root: Optional[str] = None,
            allow_pipes: bool = True, num_workers: int = -1, pipe_timeout: float = 300.0, shard=None,
            progress: bool = True, progress_every: float = 30.0, log: Log = print) -> Segmented:
    """Segment every recording of ``input_path`` (or of this task's ``shard``) into ``out_dir``.

    Raises:
        CorpusError: the input cannot be read, already has segments, or ``out_dir`` is not ours.
    """
    from .progress import Progress

    t0 = time.time()
    out = Path(out_dir)
    check_target(out, input_path)
    stream = open_corpus(input_path, audio_root=audio_root, allow_pipes=allow_pipes, shard=shard)
    if getattr(stream, "segments", None) is not None:
        raise CorpusError(f"{input_path} already has a segments file ({stream.segments}): its recordings are cut "
                          "already, run it without --vad (to segment the whole recordings again, copy its wav.scp "
                          "into a directory of its own)")
    for w in stream.warnings:
        log(f"warning: {w.message}")
    out.mkdir(parents=True, exist_ok=True)
    _mark(out, opts=opts, input_path=input_path, shard=shard, complete=False)
    res = Segmented(data_dir=out)
    wav, segs, spk, dur, rdur, errs = [], [], [], [], [], []
    n_proc = num_workers if num_workers >= 0 else max(1, (len(os.sched_getaffinity(0)) or 1))
    bar = Progress(stream.n_expected, enabled=progress, every=progress_every, log=log,
                   errors=lambda: len(errs), unit="recordings")
    pool = None
    if n_proc > 0:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(n_proc, initializer=_worker_init)
    try:
        for chunk in stream.chunks(10_000):
            for e in chunk.errors:
                errs.append((e.utt_id, e.message))
                res.n_recordings += 1
                bar(1)
            by_rec: Dict[str, Utterance] = {u.rec_id: u for u in chunk.utterances}
            jobs = [(u, opts, pipe_timeout) for u in chunk.utterances]
            results = pool.imap(_one, jobs, chunksize=1) if pool is not None else map(_one, jobs)
            for rec, secs, found, dropped, err in results:
                u = by_rec[rec]
                res.n_recordings += 1
                res.audio_seconds += secs
                res.n_dropped_short += dropped
                if err is None and not found:
                    err = (f"no speech found ({secs:.1f} s of audio, threshold {opts.threshold:g}"
                           + (f"; {dropped} stretch(es) shorter than {opts.min_segment:g} s dropped" if dropped else "")
                           + ")")
                if err is not None:
                    errs.append((rec, err))
                else:
                    wav.append(f"{rec} {_rx(u.source)}")
                    rdur.append(f"{rec} {secs:.3f}")
                    for a, b in found:
                        sid = segment_id(rec, a, b)
                        segs.append(f"{sid} {rec} {a / 100:.2f} {b / 100:.2f}")
                        spk.append((sid, u.spk or rec))
                        dur.append(f"{sid} {(b - a) / 100:.2f}")
                        res.speech_seconds += (b - a) / 100
                    res.n_segments += len(found)
                bar(1, secs)
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    res.n_failed = len(errs)
    res.errors = errs[:20]
    _write(out, wav=wav, segs=segs, spk=spk, dur=dur, rdur=rdur, errs=errs, opts=opts, input_path=input_path,
           shard=shard)
    res.wall_seconds = time.time() - t0
    return res


def _sorted_text(lines: List[str]) -> str:
    """Lines sorted by their first field in byte order (``LC_ALL=C sort``, what Kaldi checks)."""
    return "".join(l + "\n" for l in sorted(lines, key=lambda l: l.split(None, 1)[0].encode("utf-8")))


def _write(out: Path, *, wav, segs, spk, dur, rdur, errs, opts: VadOptions, input_path: str, shard) -> None:
    out.mkdir(parents=True, exist_ok=True)
    spk2utt: Dict[str, List[str]] = {}
    for sid, s in sorted(spk, key=lambda t: t[0].encode("utf-8")):
        spk2utt.setdefault(s, []).append(sid)
    files = {
        "wav.scp": _sorted_text(wav), "segments": _sorted_text(segs),
        "utt2spk": _sorted_text([f"{sid} {s}" for sid, s in spk]),
        "spk2utt": _sorted_text([f"{s} {' '.join(ids)}" for s, ids in spk2utt.items()]),
        "utt2dur": _sorted_text(dur), "reco2dur": _sorted_text(rdur),
        "text": _sorted_text([sid for sid, _ in spk]),
        "segment_errors": _sorted_text([f"{rec} {' '.join(msg.split())}" for rec, msg in errs]),
    }
    for name, text in files.items():
        atomic.write_text(out / name, text)
    _mark(out, opts=opts, input_path=input_path, shard=shard, complete=True)


def _mark(out: Path, *, opts: VadOptions, input_path: str, shard, complete: bool) -> None:
    """segment.json: what made this data dir, and whether it is finished (written first with
    complete false, so an interrupted segment's directory is still known as ours)."""
    meta = {"input": str(Path(input_path).resolve()), "options": opts.to_dict(), "vad": "silero-vad",
            "vad_version": _version("silero-vad"), "shard": None if shard is None else [shard.index, shard.count],
            "complete": complete}
    atomic.write_text(out / MARKER, json.dumps(meta, indent=2) + "\n")


def _version(pkg: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def no_segments(out: Path) -> List[ReadError]:
    """The recordings of ``segment_errors`` as error rows (stage "vad"), for ``run --vad``."""
    from .corpus import table_lines

    path = Path(out) / "segment_errors"
    rows = []
    for _, line in table_lines(path) if path.exists() else ():
        rec, _, why = line.partition(" ")
        rows.append(ReadError(rec, f"no segments: {why}", stage="vad"))
    return rows


def is_complete(out: Path, opts: VadOptions, input_path: str, shard) -> bool:
    """Whether ``out`` holds a finished segmentation of ``input_path`` with ``opts`` (a resumed
    ``run --vad`` reuses it instead of segmenting again)."""
    try:
        meta = json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (meta.get("complete") is True and meta.get("options") == opts.to_dict()
            and meta.get("input") == str(Path(input_path).resolve())
            and meta.get("shard") == (None if shard is None else [shard.index, shard.count]))
