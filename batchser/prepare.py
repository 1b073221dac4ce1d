"""``batchser prepare``: durations computed once, in parallel, into the data dir (Kaldi's
``utils/data/get_utt2dur.sh --nj N``), so that array tasks split the corpus by duration without
reading any file's header and read only their own share's audio.

Without ``segments`` every recording is an utterance and ``utt2dur`` is written; with
``segments``, ``reco2dur`` (for the recordings they use) and ``utt2dur`` (end - start, or the
recording's end for ``-1``). Files are measured from their headers; pipes and ark entries are
decoded once, as Kaldi does. Entries already present are kept. Files are written atomically
(temporary name, then rename) into the data dir, or into ``out_dir`` with copies of the data
dir's text files when the data dir cannot be written.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .audio import AudioError, recording_duration
from .corpus import AudioSource, Corpus, CorpusError, read_corpus
from .store import atomic

TEXT_FILES = ("wav.scp", "segments", "utt2spk", "spk2utt", "utt2emo", "text", "utt2dur", "reco2dur", "utt2dim")


@dataclass
class Prepared:
    data_dir: Path  # where the duration files are (the input data dir, or out_dir)
    written: List[str] = field(default_factory=list)  # file names
    measured: int = 0  # recordings measured now
    known: int = 0  # already listed
    errors: List[Tuple[str, str]] = field(default_factory=list)  # (recording id, why)
    seconds: float = 0.0


def _measure_one(args) -> Tuple[str, Optional[float], Optional[str]]:
    rec, src, timeout = args
    try:
        return rec, recording_duration(src, timeout), None
    except Exception as e:
        return rec, None, str(e) if isinstance(e, AudioError) else f"{src.name}: {type(e).__name__}: {e}"


def _recordings(corpus: Corpus) -> Dict[str, AudioSource]:
    """rec_id -> source of every usable recording the utterances use."""
    out: Dict[str, AudioSource] = {}
    for u in corpus.utterances:
        out.setdefault(u.rec_id, u.source)
    return out


def _read_known(path: Path) -> Dict[str, str]:
    known = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            f = line.split()
            if len(f) == 2:
                known[f[0]] = f[1]
    return known


def _write_table(path: Path, rows: Dict[str, float]) -> None:
    atomic.write_text(path, "".join(f"{k} {v:.3f}\n" for k, v in sorted(rows.items())))


def prepare(data: str | os.PathLike, *, nj: int = 4, out_dir: Optional[str] = None, audio_root: Optional[str] = None,
            allow_pipes: bool = True, pipe_timeout: float = 300.0,
            progress: Optional[Callable[[int, int], None]] = None) -> Prepared:
    """Compute the missing durations of ``data`` in ``nj`` processes and write them.

    Raises:
        CorpusError: the data dir cannot be read, or cannot be written and no ``out_dir`` was given.
    """
    from .inputs import input_kind

    t0 = time.time()
    if input_kind(Path(data)) != "kaldi":
        raise CorpusError(f"{data}: prepare works on a Kaldi data dir (or its wav.scp), whose side files it writes")
    corpus = read_corpus(data, audio_root=audio_root, allow_pipes=allow_pipes)
    src_dir = Path(corpus.data_dir)
    dest = Path(out_dir) if out_dir else src_dir
    if out_dir:
        dest.mkdir(parents=True, exist_ok=True)
        for name in TEXT_FILES:
            if (src_dir / name).exists() and not (dest / name).exists():
                shutil.copy2(src_dir / name, dest / name)
    elif not os.access(src_dir, os.W_OK):
        raise CorpusError(f"{src_dir} cannot be written: pass --out-dir DIR for a copy of its text files "
                          "with the durations added (audio paths in wav.scp stay as they are)")
    segmented = (src_dir / "segments").exists()
    table = "reco2dur" if segmented else "utt2dur"
    known = _read_known(dest / table)
    recs = _recordings(corpus)
    todo = [(r, s, pipe_timeout) for r, s in recs.items() if r not in known]
    res = Prepared(data_dir=dest, known=len(recs) - len(todo))
    # lines the reader could not use (missing files, bad lines) cannot be measured either
    res.errors += [(e.utt_id, e.message) for e in corpus.errors]
    durs: Dict[str, float] = {}
    for r, v in known.items():
        try:
            durs[r] = float(v)
        except ValueError:
            pass
    if todo:
        if nj > 1:
            import multiprocessing as mp

            from .procs import child_init

            with mp.get_context("fork").Pool(nj, initializer=child_init) as pool:
                results = pool.imap_unordered(_measure_one, todo, chunksize=16)
                for k, (rec, d, err) in enumerate(results, 1):
                    _collect(res, durs, rec, d, err)
                    if progress is not None:
                        progress(k, len(todo))
        else:
            for k, job in enumerate(todo, 1):
                _collect(res, durs, *_measure_one(job))
                if progress is not None:
                    progress(k, len(todo))
    rows = {r: d for r, d in durs.items() if r in recs or r in known}
    if rows:  # nothing measured and nothing known: nothing to write (an empty table would claim to be one)
        _write_table(dest / table, rows)
        res.written.append(table)
    if segmented and rows:
        utt = {}
        for u in corpus.utterances:
            total = durs.get(u.rec_id)
            end = u.end if u.end is not None else total
            if end is not None and total is not None:
                end = min(end, total)  # a segment past its recording's end is cut there, as run cuts it
            if end is not None:
                utt[u.utt_id] = max(0.0, end - (u.start or 0.0))
        if utt:
            _write_table(dest / "utt2dur", utt)
            res.written.append("utt2dur")
    res.seconds = time.time() - t0
    return res


def _collect(res: Prepared, durs: Dict[str, float], rec: str, d: Optional[float], err: Optional[str]) -> None:
    if d is None:
        res.errors.append((rec, err or "unknown error"))
    else:
        durs[rec] = d
        res.measured += 1
