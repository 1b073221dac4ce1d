"""One device's loop: bucketing -> loader (decoders) -> model worker -> writer.

Every utterance handed in ends up in exactly one of the writer's tables: a result row, or an
error row naming the stage (``decode`` or ``model``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np

from .audio import TARGET_SR, probe_duration
from .batching import make_batches
from .config import RunConfig, RunStopped, RunSummary
from .records import Corpus, Utterance
from .loader import decoder_count, make_loader, parse_feature_sets
from .models.base import Backend
from .policy import batch_limits
from .store import OutputWriter, PartWriter, prediction_columns, utterance_row
from .timeline import TimelineOptions, windows
from .worker import MemoryBudget, ModelFailure, run_items

Progress = Callable[[int, float], None]  # (utterances, audio seconds) after each batch


def settle_read_errors(corpus: Corpus, writer: PartWriter) -> Tuple[List[Utterance], int, int]:
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


def timeline_windows(backend: Backend, utts: List[Utterance], wavs: List[np.ndarray], opts: TimelineOptions, *,
                     batch_seconds: float, max_batch: int, budget: MemoryBudget, threshold: Optional[float] = None
                     ) -> Tuple[List[Optional[List[dict]]], List[Optional[str]], int]:
    """``--timeline``: every window of each waveform run as an utterance of its own, windows of
    all the given utterances bucketed together into batches of ``batch_seconds``.

    Returns (per utterance: its timeline rows, or None if a window failed; per utterance: the
    error, or None; windows run). Raises :class:`ModelFailure` like ``run_items``.
    """
    spans = [windows(len(w), opts) for w in wavs]
    flat = [(i, k, a, b) for i, sp in enumerate(spans) for k, (a, b) in enumerate(sp)]
    results: List[Optional[object]] = [None] * len(flat)
    for group in make_batches([(b - a) / TARGET_SR for _, _, a, b in flat], batch_seconds, max_batch):
        pieces = [wavs[flat[j][0]][flat[j][2]:flat[j][3]] for j in group]
        res, _, _ = run_items(backend, pieces, frames=False, max_samples=max(len(p) for p in pieces),
                              budget=budget)
        for j, r in zip(group, res):
            results[j] = r
    rows: List[Optional[List[dict]]] = [[] for _ in wavs]
    errors: List[Optional[str]] = [None] * len(wavs)
    for (i, k, a, b), r in zip(flat, results):
        if errors[i] is not None:
            continue
        u = utts[i]
        t0 = u.start or 0.0
        if r.error is not None:
            errors[i] = f"{u.utt_id}: timeline window {k} ({a / TARGET_SR:.2f}-{b / TARGET_SR:.2f} s): {r.error}"
            rows[i] = None
            continue
        rows[i].append({"utt_id": u.utt_id, "rec_id": u.rec_id, "spk": u.spk, "window": k,
                        "start": t0 + a / TARGET_SR, "end": t0 + b / TARGET_SR,
                        **prediction_columns(backend.labels, r.scores, backend.head_kind, threshold)})
    return rows, errors, len(flat)


class AsrFailure(RuntimeError):
    """The recogniser failed on every utterance of a batch, one at a time too: the recogniser's
    fault (a missing CUDA library, a broken device), not the utterances'."""


def transcribe_items(asr, waves: List[np.ndarray], ids: List[str]) -> Tuple[List[Optional[object]], List[Optional[str]]]:
    """``--asr``: one transcript per waveform, or the error of the one that failed. A failing
    batch is run again one utterance at a time, so that one bad utterance never costs the others;
    when every one of several fails alone too, :class:`AsrFailure` stops the run (as the emotion
    model's worker does) instead of writing them all into errors/.
    """
    try:
        return list(asr.transcribe(waves)), [None] * len(waves)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:
        if len(waves) == 1:
            return [None], [f"{ids[0]}: speech recognition failed: {type(e).__name__}: {e}"]
        first = e
    out: List[Optional[object]] = []
    errs: List[Optional[str]] = []
    for w, i in zip(waves, ids):
        t, e = transcribe_items(asr, [w], [i])
        out += t
        errs += e
    if all(e is not None for e in errs):
        raise AsrFailure(f"the speech recogniser failed on a batch of {len(ids)} utterances ({', '.join(ids[:5])}"
                         f"{', ...' if len(ids) > 5 else ''}) and on each of them alone: {type(first).__name__}: "
                         f"{first}") from first
    return out, errs


def _spread(n: int, idx: List[int], values: List, errors: List[Optional[str]]) -> Tuple[List, List[Optional[str]]]:
    """A stage's results for the items at ``idx``, as lists over all ``n`` items (None elsewhere)."""
    out_v: List = [None] * n
    out_e: List[Optional[str]] = [None] * n
    for j, v, e in zip(idx, values, errors):
        out_v[j], out_e[j] = v, e
    return out_v, out_e


def _count_model_time(s: RunSummary, dt: float) -> float:
    s.model_seconds += dt
    return dt


@dataclass
class Processed:
    """What processing a list of utterances did (on one device, or added up over several)."""

    summary: RunSummary
    n_batches: int
    batch_seconds: float
    max_batch_size: int
    failures: List[str] = field(default_factory=list)  # device processes that failed


def process(backend: Backend, writer: OutputWriter, todo: List[Utterance], *, cfg: RunConfig, device: str,
            with_ref: bool, progress: Optional[Progress] = None, n_devices: int = 1,
            summary: Optional[RunSummary] = None, asr=None) -> Processed:
    """Decode, batch and run ``todo`` on one device (of ``n_devices`` running at once), writing
    through ``writer``.

    ``summary`` (new when not given) is filled as batches finish, so that a run stopped half
    way (a signal, a full disk) still reports what it did; the returned ``Processed`` holds it.
    ``asr`` (``--asr``, a :class:`batchser.asr.AsrEngine`): the same waveforms transcribed too.
    """
    frames = cfg.granularity == "frame"
    batch_seconds, max_batch = batch_limits(device, cfg.batch_seconds, cfg.max_batch_size)
    batches = make_batches([probe_duration(u) for u in todo], batch_seconds, max_batch)
    max_samples = int(cfg.max_seconds * TARGET_SR)
    loader = make_loader(todo, batches, pipe_timeout=cfg.pipe_timeout, min_samples=backend.min_samples,
                         features=parse_feature_sets(cfg.features),
                         num_decoders=decoder_count(cfg.num_workers, device, n_devices),
                         pipe_max_bytes=int(cfg.pipe_max_mb * (1 << 20)))
    s = summary if summary is not None else RunSummary()
    heads = []
    if cfg.heads:  # --head: trained heads on each utterance's embedding (checked against the model by the runner)
        from .heads import load_heads

        heads = load_heads(cfg.heads)
    budget = MemoryBudget()
    s.oom_backoffs = budget.events
    clock = time.perf_counter
    t_wait = clock()
    for items in loader:
        t_got = clock()
        s.loader_wait_seconds += t_got - t_wait
        dt_model = 0.0
        good = [it for it in items if it.error is None]
        for it in items:
            if it.error is not None:
                writer.add_error(todo[it.index].utt_id, "decode", it.error)
                s.n_errors += 1
            elif it.warning is not None:
                s.warnings.append(it.warning)
        audio_before = s.audio_seconds
        if good:
            t_model = clock()
            try:
                results, real, padded = run_items(backend, [it.wave for it in good], frames=frames,
                                                  max_samples=max_samples, long_audio=cfg.long_audio, budget=budget)
            except ModelFailure as e:
                ids = [todo[it.index].utt_id for it in good]
                raise RunStopped(
                    f"the model failed on a batch of {len(ids)} utterances ({', '.join(ids[:5])}"
                    f"{', ...' if len(ids) > 5 else ''}): {e}. This is not out of memory and not one utterance's "
                    "fault, so the run stops instead of blaming them; what was done before is committed: fix the "
                    "cause and run the same command again to resume") from e
            dt_model = clock() - t_model
            s.model_seconds += dt_model
            s.padded_seconds += padded / TARGET_SR
            # stages after the emotion model, each on the utterances still without an error; their
            # time counts as model time (and --asr's also as asr_seconds)
            win_rows: List[Optional[List[dict]]] = [None] * len(good)
            win_errs: List[Optional[str]] = [None] * len(good)
            if cfg.timeline is not None:
                t_stage = clock()
                ok = [j for j, r in enumerate(results) if r.error is None]
                try:
                    wr, we, _ = timeline_windows(backend, [todo[good[j].index] for j in ok], [good[j].wave for j in ok],
                                                  cfg.timeline, batch_seconds=batch_seconds, max_batch=max_batch,
                                                  budget=budget, threshold=cfg.threshold)
                except ModelFailure as e:
                    raise RunStopped(f"the model failed on a batch of timeline windows: {e}; what was done before is "
                                     "committed: fix the cause and run the same command again to resume") from e
                win_rows, win_errs = _spread(len(good), ok, wr, we)
                dt_model += _count_model_time(s, clock() - t_stage)
            texts: List[Optional[object]] = [None] * len(good)
            asr_errs: List[Optional[str]] = [None] * len(good)
            if asr is not None:  # the waveforms the emotion model took, transcribed in the engine's batches
                t_stage = clock()
                ok = [j for j, r in enumerate(results) if r.error is None and win_errs[j] is None]
                try:
                    tr, te = transcribe_items(asr, [good[j].wave for j in ok], [todo[good[j].index].utt_id for j in ok])
                except AsrFailure as e:
                    raise RunStopped(f"{e}. This is not one utterance's fault, so the run stops instead of blaming "
                                     "them; what was done before is committed: fix the cause and run the same "
                                     "command again to resume") from e
                texts, asr_errs = _spread(len(good), ok, tr, te)
                dt = _count_model_time(s, clock() - t_stage)
                dt_model += dt
                s.asr_seconds += dt
            rows, embs, frs, wins = [], [], [], []
            for it, r, wr_, we_, tx, ae in zip(good, results, win_rows, win_errs, texts, asr_errs):
                u = todo[it.index]
                if r.error is not None or we_ is not None:
                    writer.add_error(u.utt_id, "model", f"{u.utt_id}: {r.error}" if r.error is not None else we_)
                    s.n_errors += 1
                    continue
                if ae is not None:
                    writer.add_error(u.utt_id, "asr", ae)
                    s.n_errors += 1
                    continue
                if wr_ is not None:
                    wins.extend(wr_)
                dur = len(it.wave) / TARGET_SR
                rows.append({**utterance_row(u, dur, with_ref=with_ref, cut_short=it.cut_short),
                             **prediction_columns(backend.labels, r.scores, backend.head_kind, cfg.threshold),
                             **({"text": tx.text, "language": tx.language} if asr is not None else {}),
                             **(it.features or {})})
                embs.append(r.embedding)
                frs.append(r.frames)
                s.audio_seconds += dur
                s.n_windowed += r.windows > 1
            if rows and heads:
                e = np.stack(embs)
                for h in heads:
                    for row, cols in zip(rows, h.columns(h.predict(e))):
                        row.update(cols)
            if rows:
                writer.add(rows, np.stack(embs), frs if frames else None,
                           windows=wins if cfg.timeline is not None else None)
                s.n_timeline_windows += len(wins)
                s.n_ok += len(rows)
        if progress is not None:
            progress(len(items), s.audio_seconds - audio_before)
        t_wait = clock()
        s.write_seconds += t_wait - t_got - dt_model  # rows, tables, .npy parts
    writer.flush()
    s.write_seconds += clock() - t_wait
    return Processed(s, len(batches), batch_seconds, max_batch)
