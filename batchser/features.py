"""``batchser features``: prosody and/or eGeMAPS columns, no model: reader -> loader (decoders) ->
scoring core (the features stage alone) -> writer.

Writes OUT/features/part-*.parquet, OUT/errors/ and OUT/explanations.parquet through the same
writer as ``batchser run``; a re-run skips utterances already written.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from .audio import PIPE_MAX_BYTES
from .config import RunSummary
from .corpus import CorpusError, read_corpus
from .loader import decoder_count
from .pipeline import Feed, process, settle_read_errors
from .prosody import explanations
from .scoring import FeaturesStage
from .store import OutputLock, check_claimable, committed_ids, features_writer, layout, write_explanations

# decoding and Praat's pitch tracker cost the same per second of audio whatever the batch: these
# only bound how much decoded audio waits in memory
BATCH_SECONDS, MAX_BATCH = 60.0, 16
MIN_SAMPLES = 400  # 25 ms: one analysis frame


def run_features(input_path: str, out_dir: str, *, audio_root: Optional[str] = None, allow_pipes: bool = True,
                 num_workers: int = -1, pipe_timeout: float = 300.0, part_size: int = 2000,
                 log: Callable[[str], None] = print, features: Sequence[str] = ("prosody",)) -> RunSummary:
    """Features (``features``: prosody, egemaps) of every utterance of ``input_path`` into
    ``out_dir``; returns the counts."""
    t0 = time.time()
    corpus = read_corpus(input_path, audio_root=audio_root, allow_pipes=allow_pipes)
    if corpus.n_input == 0:
        raise CorpusError(f"{corpus.wav_scp}: no utterances (the file is empty or holds only blank lines)")
    for w in corpus.warnings:
        log(f"warning: {w.message}")
    check_claimable(Path(out_dir))
    with OutputLock(out_dir, command=["batchser", "features", str(input_path)], log=log):
        return _features(corpus, out_dir, t0=t0, num_workers=num_workers, pipe_timeout=pipe_timeout,
                         part_size=part_size, features=tuple(features))


def _features(corpus, out_dir: str, *, t0: float, num_workers: int, pipe_timeout: float, part_size: int,
              features: Sequence[str]) -> RunSummary:
    with_ref = any(u.ref_label for u in corpus.utterances)
    stage = FeaturesStage(features)
    writer = features_writer(out_dir, annotations=stage.annotation_fields, with_ref=with_ref, part_size=part_size,
                             settings={"features": ",".join(features)} if tuple(features) != ("prosody",) else None)
    todo, n_err, n_skip = settle_read_errors(corpus, writer)
    s = RunSummary(n_input=corpus.n_input, n_errors=n_err, n_skipped=n_skip)
    feed = Feed(BATCH_SECONDS, MAX_BATCH, min_samples=MIN_SAMPLES, features=tuple(features),
                num_decoders=decoder_count(num_workers), pipe_timeout=pipe_timeout, pipe_max_bytes=PIPE_MAX_BYTES,
                with_ref=with_ref)
    try:
        process([stage], writer, todo, feed=feed, summary=s)
    finally:
        writer.flush()
    writer.ensure_errors_part()
    if "prosody" in features:
        write_explanations(out_dir, explain=explanations, table=layout.FEATURES)
    inputs = {u.utt_id for u in corpus.utterances} | {e.utt_id for e in corpus.errors}
    s.n_failed_total = len(committed_ids(out_dir, layout.FEATURES)[1] & inputs)
    s.wall_seconds = time.time() - t0
    return s
