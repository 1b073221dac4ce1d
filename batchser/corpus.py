"""The reader's entry points: :func:`read_corpus` (a whole corpus in memory) and :func:`open_corpus`
(what a run reads: a stream of chunks, so memory does not grow with the corpus).

Kaldi data dirs are read by :mod:`batchser.kaldi` (streaming); the other inputs by
:mod:`batchser.inputs`; the records they give are :mod:`batchser.records` (re-exported here).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

from . import inputs
from .kaldi import KaldiStream, read_kaldi
from .records import (AudioSource, Corpus, CorpusError, ReadError, Utterance, parse_rxfilename, safe_filename,
                      table_lines)
from .shards import contiguous, error_share

__all__ = ["AudioSource", "Corpus", "CorpusError", "MemoryStream", "ReadError", "Utterance", "open_corpus",
           "parse_rxfilename", "read_corpus", "safe_filename", "table_lines"]


def read_corpus(path: str | os.PathLike, audio_root: Optional[str] = None, allow_pipes: bool = True,
                extensions: Optional[Sequence[str]] = None, spk_from_folder: bool = False) -> Corpus:
    """Read a Kaldi data dir or wav.scp, or one of the other inputs (``batchser.inputs``): an
    audio file, a text file of paths, a folder of audio files (``extensions``), a lhotse manifest."""
    p = Path(path)
    kind = inputs.input_kind(p) if p.exists() else "kaldi"
    if kind == "audio":
        return inputs.read_audio_file(p)
    if kind == "folder":
        return inputs.read_folder(p, extensions or inputs.AUDIO_EXTENSIONS, spk_from_folder=spk_from_folder)
    if kind == "list":
        return inputs.read_path_list(p, audio_root)
    if kind == "lhotse":
        return inputs.read_lhotse(p, allow_pipes)
    return read_kaldi(p, audio_root=audio_root, allow_pipes=allow_pipes)


class MemoryStream:
    """A corpus already in memory (the inputs of :mod:`batchser.inputs`) seen as a stream: the
    same interface as :class:`batchser.kaldi.KaldiStream`, with the same share rules."""

    def __init__(self, corpus: Corpus, shard=None):
        self.data_dir, self.wav_scp = corpus.data_dir, corpus.wav_scp
        self.warnings, self.n_warnings = corpus.warnings, len(corpus.warnings)
        self.n_lines = corpus.n_input
        self.with_ref = any(u.ref_label is not None for u in corpus.utterances)
        utts, errs = corpus.utterances, corpus.errors
        self.n_usable_lines = len(utts)
        self.n_unknown_durations = sum(u.duration is None for u in utts)
        if shard is not None and shard.count > 1:
            secs: Dict[str, float] = {}
            for u in utts:
                secs[u.rec_id] = secs.get(u.rec_id, 0.0) + (u.duration if u.duration is not None else float("nan"))
            import numpy as np

            d = np.array(list(secs.values()), dtype=np.float64)
            known = d[~np.isnan(d)]
            share = dict(zip(secs, contiguous(np.where(np.isnan(d), known.mean() if len(known) else 1.0, d),
                                              shard.count).tolist()))
            utts = [u for u in utts if share[u.rec_id] == shard.index]
            errs = [e for e in errs if error_share(e.utt_id, shard.count) == shard.index]
        self._corpus = Corpus(utterances=utts, errors=errs, warnings=[], data_dir=self.data_dir, wav_scp=self.wav_scp)
        self.n_expected = len(utts) + len(errs)

    def chunks(self, size: int) -> Iterator[Corpus]:
        c = self._corpus
        for i in range(0, max(len(c.utterances), 1), size):
            yield Corpus(utterances=c.utterances[i:i + size], errors=c.errors if i == 0 else [],
                         data_dir=c.data_dir, wav_scp=c.wav_scp)


def open_corpus(path: str | os.PathLike, *, audio_root: Optional[str] = None, allow_pipes: bool = True,
                extensions: Optional[Sequence[str]] = None, shard=None, spk_from_folder: bool = False):
    """What a run reads: a stream with ``chunks(size)`` of this task's share (``shard``).

    A Kaldi data dir is streamed (:class:`batchser.kaldi.KaldiStream`: memory bounded by a
    chunk); the other inputs are read whole (:class:`MemoryStream`).
    """
    p = Path(path)
    if (inputs.input_kind(p) if p.exists() else "kaldi") == "kaldi":
        return KaldiStream(p, audio_root=audio_root, allow_pipes=allow_pipes, shard=shard)
    return MemoryStream(read_corpus(p, audio_root=audio_root, allow_pipes=allow_pipes, extensions=extensions,
                                    spk_from_folder=spk_from_folder), shard)
