"""One device's loop: bucketing -> loader (decoders) -> scoring core -> writer.

Every utterance handed in ends up in exactly one of the writer's tables: a result row, or an
error row naming the stage (``decode``, ``model``, ``asr``). The stages are the run's
(``batchser.scoring``); this module only feeds them and hands what they give to the writer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from .audio import TARGET_SR, probe_duration
from .batching import make_batches
from .config import RunStopped, RunSummary
from .idtable import IdTableBuilder
from .loader import cache_shared_recordings, make_loader
from .records import Corpus, Utterance
from .scoring import BatchResult, Scored, Stage, StageFailure, score

Progress = Callable[[int, float], None]  # (utterances, audio seconds) after each batch


@dataclass(frozen=True)
class Feed:
    """How one device's utterances are batched and decoded."""

    batch_seconds: float  # padded audio per batch
    max_batch: int
    min_samples: int  # shorter audio is a decode error (the model's minimum)
    features: Tuple[str, ...]  # feature sets the decoders compute
    num_decoders: int
    pipe_timeout: float
    pipe_max_bytes: int
    with_ref: bool  # rows carry ref_label


def settle_read_errors(corpus: Corpus, writer) -> Tuple[List[Utterance], int, int]:
    """Write the reader's error rows that no earlier run committed (``corpus``: the whole corpus
    or one window of it).

    Returns (the utterances still to run, error rows written, utterances an earlier run finished).
    """
    done = writer.finished_ids
    n_err = n_skip = 0
    for e, was in zip(corpus.errors, done.contains([e.utt_id for e in corpus.errors])):
        if was:
            n_skip += 1
        else:
            writer.add_error(e.utt_id, e.stage, e.message)
            n_err += 1
    was = done.contains([u.utt_id for u in corpus.utterances])
    todo = [u for u, w in zip(corpus.utterances, was) if not w]
    return todo, n_err, n_skip + len(corpus.utterances) - len(todo)


class ChunkFeeder:
    """The chunks of this task, each settled before it runs: its read errors written, what an
    earlier run finished skipped, shared pipe/ark recordings decoded once into OUT/.cache."""

    def __init__(self, stream, chunks: Iterator[Corpus], writer, cache: Path, summary: RunSummary,
                 log: Callable[[str], None], n_logged: int, *, pipe_timeout: float, num_decoders: int,
                 pipe_max_bytes: int):
        self.stream, self.chunks, self.writer, self.cache = stream, chunks, writer, cache
        self.s, self.log, self.n_logged = summary, log, n_logged
        self.pipe_timeout, self.num_decoders, self.pipe_max_bytes = pipe_timeout, num_decoders, pipe_max_bytes
        self.inputs = IdTableBuilder()  # this task's input ids: which of the committed errors are its own
        self.cached = False
        self.bar: Callable[[int], None] = lambda n: None  # progress: errors count as done

    def __iter__(self) -> Iterator[List[Utterance]]:
        s, writer = self.s, self.writer
        for c in self.chunks:
            self.inputs.add([u.utt_id for u in c.utterances] + [e.utt_id for e in c.errors])
            s.n_input += c.n_input
            for w in self.stream.warnings[self.n_logged:]:
                self.log(f"warning: {w.message}")
            self.n_logged = len(self.stream.warnings)
            todo, n_err, n_skip = settle_read_errors(c, writer)
            todo, bad, made = cache_shared_recordings(todo, self.cache, pipe_timeout=self.pipe_timeout,
                                                      num_decoders=self.num_decoders, pipe_max_bytes=self.pipe_max_bytes)
            self.cached |= made
            for u, msg in bad:
                writer.add_error(u.utt_id, "decode", msg)
            s.n_errors += n_err + len(bad)
            s.n_skipped += n_skip
            if n_err + len(bad):
                self.bar(n_err + len(bad))
            if todo:
                yield todo


def flushed(chunks: Iterator[List[Utterance]], writer) -> Iterator[List[Utterance]]:
    """``chunks``, committing the parent's rows (read errors) before each is handed to the devices."""
    for todo in chunks:
        writer.flush()
        yield todo
    writer.flush()


@dataclass
class Processed:
    """What processing a list of utterances did (on one device, or added up over several)."""

    summary: RunSummary
    n_batches: int
    batch_seconds: float
    max_batch_size: int
    failures: List[str] = field(default_factory=list)  # device processes that failed


def count(s: RunSummary, res: BatchResult) -> None:
    """Add one scored batch to the summary."""
    s.n_ok += len(res.rows)
    s.n_errors += len(res.errors)
    s.audio_seconds += res.audio_seconds
    s.padded_seconds += res.padded_seconds
    s.n_windowed += res.n_windowed
    s.n_timeline_windows += len(res.windows)
    s.model_seconds += sum(res.seconds.values())
    s.asr_seconds += res.seconds.get("asr", 0.0)
    s.oom_backoffs.extend(res.oom_events)


def process(stages: Sequence[Stage], writer, todo: List[Utterance], *, feed: Feed,
            progress: Optional[Progress] = None, summary: Optional[RunSummary] = None) -> Processed:
    """Decode, batch and score ``todo``, writing through ``writer`` (``store.OutputWriter``, or a
    plain ``PartWriter`` when no stage makes embeddings).

    ``summary`` (new when not given) is filled as batches finish, so that a run stopped half
    way (a signal, a full disk) still reports what it did; the returned ``Processed`` holds it.
    """
    batches = make_batches([probe_duration(u) for u in todo], feed.batch_seconds, feed.max_batch)
    loader = make_loader(todo, batches, pipe_timeout=feed.pipe_timeout, min_samples=feed.min_samples,
                         features=feed.features, num_decoders=feed.num_decoders, pipe_max_bytes=feed.pipe_max_bytes)
    s = summary if summary is not None else RunSummary()
    clock = time.perf_counter
    t_wait = clock()
    for items in loader:
        t_got = clock()
        s.loader_wait_seconds += t_got - t_wait
        scored = [Scored(todo[it.index], it.wave, it.features, it.cut_short,
                         error=("decode", it.error) if it.error is not None else None) for it in items]
        s.warnings += [it.warning for it in items if it.error is None and it.warning is not None]
        working = getattr(progress, "working", None)  # lines keep coming while a long batch runs
        if working is not None:
            working(sum(len(x.wave) for x in scored if x.wave is not None) / TARGET_SR)
        try:
            res = score(stages, scored, with_ref=feed.with_ref)
        except StageFailure as e:  # the decode errors of the batch are still its own
            failed = [(x.utt.utt_id, *x.error) for x in scored if x.error is not None]
            writer.add_batch(rows=[], errors=failed)
            s.n_errors += len(failed)
            raise RunStopped(f"{e}; what was done before is committed: fix the cause and run the same command "
                             "again to resume") from e
        writer.add_batch(rows=res.rows, errors=res.errors, embeddings=res.embeddings, frames=res.frames,
                         windows=res.windows)
        count(s, res)
        if progress is not None:
            progress(len(items), res.audio_seconds)
        t_wait = clock()
        s.write_seconds += t_wait - t_got - sum(res.seconds.values())  # rows, tables, .npy parts
    writer.flush()
    s.write_seconds += clock() - t_wait
    return Processed(s, len(batches), feed.batch_seconds, feed.max_batch)
