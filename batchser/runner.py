"""One run: reader -> loader (decoders) -> model worker -> writer, wired together.

Every input utterance ends up in exactly one of the labels table or the errors table; a
resumed run skips what a previous run committed. The stages live in their own modules
(docs/ARCHITECTURE.md); this one only decides which run to do and connects them.
"""
from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from .audio import TARGET_SR
from .config import RunConfig, RunStopped, RunSummary
from .corpus import Corpus, CorpusError, read_corpus
from .loader import cache_shared_recordings, decoder_count
from .pipeline import Processed, process, settle_read_errors
from .progress import Progress
from .policy import batch_limits, parse_devices, resolve_dtype
from .shards import Shard, assign, parse_shard
from .store import (OutputLock, OutputWriter, check_claimable, clear_ours, committed_ids, layout, shard_dir,
                    write_explanations)
from .store.merging import SHARD_DIR_RE
from .store.manifest import run_manifest, run_settings

__all__ = ["RunConfig", "RunStopped", "RunSummary", "run"]

Log = Callable[[str], None]


def select_shard(corpus: Corpus, cfg: RunConfig, out: Path, log: Log) -> Tuple[Optional[Shard], Path]:
    """Keep only this task's share of ``corpus`` (in place); return the shard and its output dir.

    The split is computed on the whole corpus from what the data dir says (segments, utt2dur,
    reco2dur: ``batchser prepare`` writes them), so a resubmitted task gets the same share and no
    task reads a header of another share's files. Utterances of unknown duration count as the
    median known one (all alike when none is known: shares of equal counts).
    """
    shard = parse_shard(cfg.shard, cfg.num_shards, cfg.shard_index)
    if shard is None:
        return None, out
    durs = [u.duration for u in corpus.utterances]
    known = sorted(d for d in durs if d is not None)
    unknown = known[len(known) // 2] if known else 10.0
    if len(known) < len(durs):
        log(f"note: {len(durs) - len(known)} of {len(durs)} utterances have no known duration: shards are balanced "
            "by count for them (run `batchser prepare DATA` once for duration-balanced shards)")
    # whole recordings go to one task: a task reads (or decodes, for pipes) only its own recordings
    rec_secs: dict = {}
    for u, d in zip(corpus.utterances, durs):
        rec_secs[u.rec_id] = rec_secs.get(u.rec_id, 0.0) + (d if d is not None else unknown)
    units = [f"rec:{r}" for r in rec_secs] + [f"err:{e.utt_id}" for e in corpus.errors]
    share = assign(units, list(rec_secs.values()) + [0.0] * len(corpus.errors), shard.count)
    corpus.utterances = [u for u in corpus.utterances if share[f"rec:{u.rec_id}"] == shard.index]
    corpus.errors = [e for e in corpus.errors if share[f"err:{e.utt_id}"] == shard.index]
    other = sorted({m.group(2) for p in (out / layout.SHARDS).glob("shard-*")
                    if (m := SHARD_DIR_RE.match(p.name)) and int(m.group(2)) != shard.count})
    if other:
        raise ValueError(f"{out / layout.SHARDS} holds shards of a split into {', '.join(str(int(n)) for n in other)}, "
                         f"not {shard.count}: one OUT takes one array size (use another --out, or the same N)")
    out = shard_dir(out, shard.name)
    log(f"shard {shard.index}/{shard.count}: {corpus.n_input} utterances -> {out}")
    return shard, out


def _load_model(cfg: RunConfig, devices: List[str], dtype: str, log: Log):
    """The back-end, checked against the run's options. With several devices the parent only
    needs the model's metadata: it loads it on the CPU (each device process loads its own)."""
    from .models import load_backend

    multi = len(devices) > 1
    backend = load_backend(cfg.model, device="cpu" if multi else devices[0],
                           dtype="float32" if multi else dtype, hub=cfg.hub, backend=cfg.backend)
    if backend.info.test_model:
        log(f"note: {backend.info.path} is a random-weight TEST model; its labels mean nothing")
    if int(cfg.max_seconds * TARGET_SR) < 2 * backend.min_samples:
        raise ValueError(f"--max-seconds {cfg.max_seconds:g} is too short for this model "
                         f"(windows need at least {backend.min_samples / TARGET_SR:.3f} s)")
    return backend


# what a full disk, a quota, a read-only mount or lost permissions raise while writing
WRITE_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}
MAX_WARNINGS_KEPT = 200  # in the manifest; the count is always exact


def _write_failure(e: OSError, out: Path) -> RunStopped:
    where = f" ({e.filename})" if e.filename else ""
    return RunStopped(f"cannot write to {out}: {e.strerror or e}{where}. The parts committed so far are kept: "
                      "free space or fix the output directory, then run the same command again to resume")


def run(cfg: RunConfig, log: Log = print) -> RunSummary:
    """Process ``cfg.input`` into ``cfg.out``.

    Raises:
        CorpusError: the corpus cannot be read, or holds no utterance.
        ForeignDirectory / OutputBusy: ``--out`` is not batchser's, or another run holds it.
        ModelNotAvailable: the model cannot be found or loaded.
        RunStopped: stopped unfinished (disk full, read-only, a device process died): resumable.
        Interrupted / KeyboardInterrupt: a signal stopped it after committing what it held.
    """
    t0 = time.time()
    corpus = read_corpus(cfg.input, audio_root=cfg.audio_root, allow_pipes=cfg.allow_pipes,
                         extensions=cfg.extensions.split(",") if cfg.extensions else None)
    if corpus.n_input == 0:
        raise CorpusError(f"{corpus.wav_scp}: no utterances (the file is empty or holds only blank lines)")
    if not corpus.utterances:  # nothing to run: say why at once, without loading a model
        shown = "\n  ".join(e.message for e in corpus.errors[:5])
        raise CorpusError(f"no utterance of {cfg.input} is usable ({len(corpus.errors)} problems), e.g.:\n  {shown}"
                          f"\ncheck the corpus with `batchser info {cfg.input}` (relative paths resolve against "
                          "the current directory, or --audio-root)")
    for w in corpus.warnings:
        log(f"warning: {w.message}")
    top = Path(cfg.out)
    check_claimable(top)  # touches nothing: a foreign directory is refused before any write
    shard, out = select_shard(corpus, cfg, top, log)
    if shard is not None:
        check_claimable(out)
    try:
        with OutputLock(out, command=cfg.argv, log=log):
            return _run_locked(cfg, corpus, shard, out, t0, log)
    except OSError as e:
        if e.errno not in WRITE_FAULTS:
            raise
        raise _write_failure(e, out) from e


def _run_locked(cfg: RunConfig, corpus: Corpus, shard: Optional[Shard], out: Path, t0: float, log: Log) -> RunSummary:
    devices = parse_devices(cfg.device)
    dtype = resolve_dtype(cfg.dtype, devices[0])
    backend = _load_model(cfg, devices, dtype, log)
    info, labels, embed_dim = backend.info, backend.labels, backend.embed_dim

    if cfg.overwrite:  # after every check: the run is known to go ahead
        kept = clear_ours(out)
        if kept:
            log(f"--overwrite: kept what batchser did not write in {out} ({len(kept)}): {', '.join(kept[:10])}"
                + (", ..." if len(kept) > 10 else ""))
    with_ref = any(u.ref_label is not None for u in corpus.utterances)
    writer_args = dict(labels=labels, model_id=info.id, emb_dtype=cfg.emb_dtype,
                       frames=cfg.granularity == "frame", with_ref=with_ref, part_size=cfg.part_size,
                       settings=run_settings(cfg, info, labels, dtype), npy_layout=cfg.npy_layout,
                       prosody=cfg.features == "prosody")
    writer = OutputWriter(out, **writer_args)  # refuses a directory made with other settings
    if cfg.retry_errors:
        writer.drop_errors()
    todo, n_err, n_skip = settle_read_errors(corpus, writer)
    s = RunSummary(n_input=corpus.n_input, n_errors=n_err, n_skipped=n_skip, n_read_warnings=len(corpus.warnings),
                   out_dir=str(out), shard=shard.name if shard else None)
    if s.n_skipped:
        log(f"resuming: {s.n_skipped} utterance(s) already finished in {out} (results or errors), "
            f"{len(todo)} to run" + (f"; {n_err} unreadable ones listed in errors/ again" if n_err else ""))
    n_dec = decoder_count(cfg.num_workers, devices[0], len(devices))
    live = RunSummary()  # filled batch by batch: what an interrupted run did is still reported
    bar = Progress(len(todo), enabled=cfg.progress, every=cfg.progress_every, log=log,
                   errors=lambda: s.n_errors + live.n_errors)
    done = Processed(live, 0, *batch_limits(devices[0], cfg.batch_seconds, cfg.max_batch_size))
    status, cached = "stopped", True
    try:
        todo, bad, cached = cache_shared_recordings(todo, out / layout.CACHE, pipe_timeout=cfg.pipe_timeout,
                                                    num_decoders=n_dec, pipe_max_bytes=int(cfg.pipe_max_mb * (1 << 20)))
        for u, msg in bad:
            writer.add_error(u.utt_id, "decode", msg)
            s.n_errors += 1
        if len(devices) == 1:
            done = process(backend, writer, todo, cfg=cfg, device=devices[0], with_ref=with_ref, progress=bar,
                           summary=live)
        else:
            from .devices import run_on_devices

            writer.flush()  # read errors committed before the device processes start
            del backend
            done = run_on_devices(cfg, devices, out=str(out), dtype=dtype, todo=todo, writer_args=writer_args,
                                  with_ref=with_ref, on_progress=bar, log=log)
        status = "stopped" if done.failures else "complete"
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through procs.terminate_as_interrupt
        status = "interrupted"
        raise
    finally:
        s.add(done.summary)
        bar.close()
        for w in s.warnings:
            log(f"warning: {w}")
        for ev in s.oom_backoffs:
            log(f"out of memory on a batch of {ev['failed_items']} ({ev['failed_padded_samples'] / TARGET_SR:.1f} s "
                f"padded): batches now hold at most {ev['new_max_padded_samples'] / TARGET_SR:.1f} s padded")
        _finish(cfg, out, writer, s, status=status, t0=t0, cached=cached, log=log, corpus=corpus,
                manifest=dict(info=info, labels=labels, embed_dim=embed_dim, devices=devices, dtype=dtype,
                              n_batches=done.n_batches, batch_seconds=done.batch_seconds,
                              max_batch_size=done.max_batch_size, num_decoders=n_dec, failures=done.failures,
                              shard=shard))
    if done.failures:
        raise RunStopped("device process failed; finished parts are kept, run again to resume:\n"
                         + "\n".join(done.failures))
    return s


def _finish(cfg: RunConfig, out: Path, writer: OutputWriter, s: RunSummary, *, status: str, t0: float,
            cached: bool, log: Log, corpus: Corpus, manifest: dict) -> None:
    """Commit what is buffered and write the manifest, whatever stopped the run (a failing write
    here is reported, never allowed to hide why the run stopped)."""
    try:
        writer.flush()
    except OSError as e:
        log(f"error: could not commit the last part: {e}")
        status = "stopped"
    if cached:
        shutil.rmtree(out / layout.CACHE, ignore_errors=True)
    s.wall_seconds = time.time() - t0
    ok_ids, err_ids = committed_ids(out)  # totals over every namespace and earlier runs
    inputs = {u.utt_id for u in corpus.utterances} | {e.utt_id for e in corpus.errors}
    s.n_failed_total = len(err_ids & inputs)
    warnings = [w.message for w in corpus.warnings] + s.warnings
    if status != "complete":
        log(f"{status}: {len(ok_ids)} results and {len(err_ids)} errors are committed in {out}; "
            "run the same command again to resume")
    try:
        writer.ensure_errors_part()  # errors/*.parquet always matches, with the full schema
        if cfg.features == "prosody":
            write_explanations(out)
        writer.write_manifest(run_manifest(
            cfg=cfg, summary=s, status=status, corpus=corpus, warnings=warnings[:MAX_WARNINGS_KEPT],
            warnings_total=len(warnings), totals={"results_total": len(ok_ids), "errors_total": len(err_ids)},
            **manifest))
    except OSError as e:
        log(f"error: could not write {out / layout.MANIFEST}: {e}")
