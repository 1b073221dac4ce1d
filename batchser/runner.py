"""One run: reader -> loader (decoders) -> model worker -> writer, wired together.

Every input utterance ends up in exactly one of the labels table or the errors table; a
resumed run skips what a previous run committed. The stages live in their own modules
(docs/ARCHITECTURE.md); this one only decides which run to do and connects them.
"""
from __future__ import annotations

import errno
import itertools
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from .audio import TARGET_SR
from .config import RunConfig, RunStopped, RunSummary
from .corpus import Corpus, CorpusError, ReadError, Utterance, open_corpus
from .idtable import IdTable, IdTableBuilder
from .loader import cache_shared_recordings, decoder_count, feature_spec, parse_feature_sets
from .pipeline import Processed, process, settle_read_errors
from .progress import Progress
from .policy import batch_limits, parse_devices, resolve_dtype
from .shards import Shard, parse_shard
from .store import (OutputLock, OutputWriter, check_claimable, clear_ours, committed_ids, count_rows, layout, shard_dir,
                    write_explanations)
from .store.merging import SHARD_DIR_RE
from .store.manifest import run_manifest, run_settings

__all__ = ["RunConfig", "RunStopped", "RunSummary", "run"]

Log = Callable[[str], None]


def shard_out(shard: Optional[Shard], top: Path, log: Log) -> Path:
    """The output directory of this task (its own under OUT/shards/ with a shard)."""
    if shard is None:
        return top
    other = sorted({m.group(2) for p in (top / layout.SHARDS).glob("shard-*")
                    if (m := SHARD_DIR_RE.match(p.name)) and int(m.group(2)) != shard.count})
    if other:
        raise ValueError(f"{top / layout.SHARDS} holds shards of a split into {', '.join(str(int(n)) for n in other)}, "
                         f"not {shard.count}: one OUT takes one array size (use another --out, or the same N)")
    return shard_dir(top, shard.name)


def _first_usable(chunks: Iterator[Corpus], cfg: RunConfig) -> Iterator[Corpus]:
    """``chunks`` again, after checking that some utterance is usable: a corpus where nothing is
    (a wrong --audio-root, a typo) stops at once, before a model is loaded."""
    held = []
    for c in chunks:
        held.append(c)
        if c.utterances:
            return itertools.chain(held, chunks)
    errs = [e for c in held for e in c.errors]
    shown = "\n  ".join(e.message for e in errs[:5])
    raise CorpusError(f"no utterance of {cfg.input} is usable ({len(errs)} problems), e.g.:\n  {shown}"
                      f"\ncheck the corpus with `batchser info {cfg.input}` (relative paths resolve against "
                      "the current directory, or --audio-root)")


def _load_model(cfg: RunConfig, devices: List[str], dtype: str, log: Log):
    """The back-end, checked against the run's options. With several devices the parent only
    needs the model's metadata: it loads it on the CPU (each device process loads its own)."""
    from .models import load_backend

    multi = len(devices) > 1
    backend = load_backend(cfg.model, device="cpu" if multi else devices[0],
                           dtype="float32" if multi else dtype, hub=cfg.hub, backend=cfg.backend,
                           fe_options=cfg.fe_options)
    if backend.info.test_model:
        log(f"note: {backend.info.path} is a random-weight TEST model; its labels mean nothing")
    if int(cfg.max_seconds * TARGET_SR) < 2 * backend.min_samples:
        raise ValueError(f"--max-seconds {cfg.max_seconds:g} is too short for this model "
                         f"(windows need at least {backend.min_samples / TARGET_SR:.3f} s)")
    if cfg.timeline is not None:
        _check_timeline(cfg, backend)
    if cfg.heads:  # a head trained on another model's embeddings is refused before anything runs
        from .heads import load_heads

        for h in load_heads(cfg.heads):
            h.check(model_sha256=backend.info.sha256, dim=backend.embed_dim, model_id=backend.info.id)
    if cfg.threshold is not None and backend.head_kind != "multi_label":
        raise ValueError(f"--threshold is for multi-label heads (a sigmoid per class); {backend.info.id} has a "
                         f"{backend.head_kind.replace('_', '-')} head")
    return backend


def _load_asr(cfg: RunConfig, devices: List[str], log: Log):
    """``--asr``: the speech recogniser (on the CPU in the parent of a multi-device run, which
    needs only its metadata; each device process loads its own)."""
    if cfg.asr is None:
        return None
    from .asr import load_asr

    if len(devices) > 1:  # metadata only: the CPU's own dtype (float16 is refused there)
        from dataclasses import replace

        asr = load_asr(replace(cfg.asr, dtype="auto"), device="cpu", hub=cfg.hub)
    else:
        asr = load_asr(cfg.asr, device=devices[0], hub=cfg.hub)
    if asr.info.test_model:
        log(f"note: {asr.info.path} is a random-weight TEST speech recogniser; its transcripts mean nothing")
    return asr


def _head_columns(cfg: RunConfig) -> List[Tuple[str, List[str]]]:
    """(name, classes) of each --head, for the labels schema."""
    if not cfg.heads:
        return []
    from .heads import load_heads

    return [(h.name, h.labels) for h in load_heads(cfg.heads)]


def _check_timeline(cfg: RunConfig, backend) -> None:
    """``--timeline`` needs class scores, and windows the model takes whole."""
    t = cfg.timeline
    if not backend.labels:
        raise ValueError(f"--timeline: {backend.info.id} has no classifier head (an embedding-only model), "
                         "so there are no class scores to follow over time")
    limit = min(cfg.max_seconds, (backend.max_input_samples or float("inf")) / TARGET_SR)
    if t.win > limit:
        raise ValueError(f"--timeline {t.win:g},{t.hop:g}: windows of {t.win:g} s are longer than this model takes "
                         f"in one piece ({limit:g} s{', --max-seconds' if limit == cfg.max_seconds else ''})")
    if t.win_samples < backend.min_samples:
        raise ValueError(f"--timeline {t.win:g},{t.hop:g}: windows must be at least "
                         f"{backend.min_samples / TARGET_SR:.3f} s for this model")


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
    sets = parse_feature_sets(cfg.features)  # an unknown set, or egemaps without opensmile: before anything runs
    if "egemaps" in sets:
        from .egemaps import columns

        columns()
    cfg.features = feature_spec(sets)
    shard = parse_shard(cfg.shard, cfg.num_shards, cfg.shard_index)
    top = Path(cfg.out)
    check_claimable(top)  # touches nothing: a foreign directory is refused before any write
    out = shard_out(shard, top, log)
    if shard is not None:
        check_claimable(out)
    try:
        if cfg.vad is None:
            stream, chunks, n_logged = _open(cfg, cfg.input, shard, out, log)
            with OutputLock(out, command=cfg.argv, log=log):
                return _run_locked(cfg, stream, chunks, shard, out, t0, log, n_logged)
        with OutputLock(out, command=cfg.argv, log=log):
            data, no_segments = _segmented(cfg, shard, out, log)
            # the segments are this task's; none at all (an empty share, nothing but silence) is no error
            stream, chunks, n_logged = _open(cfg, str(data), None, out, log, may_be_empty=True)
            if shard is not None:
                log(f"shard {shard.index}/{shard.count}: {stream.n_expected} segments of its recordings -> {out}")
            # a recording without segments (unreadable, or no speech) is an error row: every input is somewhere
            chunks = itertools.chain([Corpus(errors=no_segments)], chunks)
            stream.n_expected += len(no_segments)
            return _run_locked(cfg, stream, chunks, shard, out, t0, log, n_logged)
    except OSError as e:
        if e.errno not in WRITE_FAULTS:
            raise
        raise _write_failure(e, out) from e


def _open(cfg: RunConfig, path: str, shard: Optional[Shard], out: Path, log: Log, may_be_empty: bool = False):
    """The corpus stream of this task, its chunks (checked for something usable, unless
    ``may_be_empty``: the segments ``run --vad`` made), and how many of its warnings were logged."""
    stream = open_corpus(path, audio_root=cfg.audio_root, allow_pipes=cfg.allow_pipes,
                         extensions=cfg.extensions.split(",") if cfg.extensions else None, shard=shard)
    if may_be_empty:
        return stream, stream.chunks(cfg.chunk_size), 0
    if stream.n_lines == 0:
        raise CorpusError(f"{stream.wav_scp}: no utterances (the file is empty or holds only blank lines)")
    for w in stream.warnings:
        log(f"warning: {w.message}")
    n_logged = len(stream.warnings)  # later ones (found while reading chunks) are logged as they come
    chunks = stream.chunks(cfg.chunk_size)
    if shard is None:
        chunks = _first_usable(chunks, cfg)
    elif stream.n_usable_lines == 0:
        chunks = _first_usable(iter(()), cfg)
    else:
        log(f"shard {shard.index}/{shard.count}: {stream.n_expected} utterances -> {out}")
        if stream.n_unknown_durations:
            log(f"note: {stream.n_unknown_durations} recordings have no known duration: they count as the mean "
                "known one in the split (run `batchser prepare DATA` once for duration-balanced shards)")
    return stream, chunks, n_logged


def _segmented(cfg: RunConfig, shard: Optional[Shard], out: Path, log: Log) -> Tuple[Path, List[ReadError]]:
    """``run --vad``: this task's recordings cut into speech segments in OUT/vad/ (reused on a
    resume with the same options: the segmentation is deterministic), and an error row (stage
    "vad") for each recording without segments."""
    from .segment import is_complete, no_segments, segment

    vdir = out / layout.VAD
    settings = out / layout.SETTINGS
    if settings.exists() and not cfg.overwrite:  # before segmenting again: a resume with other VAD options is refused
        old = json.loads(settings.read_text(encoding="utf-8")).get("vad")
        if old != cfg.vad.to_dict():
            raise ValueError(f"cannot resume {out}: it was made with other VAD options ({old} there, "
                             f"{cfg.vad.to_dict()} now). Use a new --out directory, or --overwrite to start again.")
    failed = no_segments(vdir) if is_complete(vdir, cfg.vad, cfg.input, shard) else []
    if is_complete(vdir, cfg.vad, cfg.input, shard) and not cfg.overwrite and not (cfg.retry_errors and failed):
        log(f"vad: reusing the segments in {vdir}")
        return vdir, no_segments(vdir)
    devices = parse_devices(cfg.device)
    n = decoder_count(cfg.num_workers, "cpu", 1) if not devices[0].startswith("cuda") else decoder_count(
        cfg.num_workers, devices[0], len(devices))
    r = segment(cfg.input, vdir, opts=cfg.vad, audio_root=cfg.audio_root, allow_pipes=cfg.allow_pipes,
                num_workers=n, pipe_timeout=cfg.pipe_timeout, shard=shard, progress=cfg.progress,
                progress_every=cfg.progress_every, log=log)
    log(f"vad: {r.n_recordings} recordings ({r.audio_seconds / 3600:.2f} h) -> {r.n_segments} segments "
        f"({r.speech_seconds / 3600:.2f} h of speech) in {r.wall_seconds:.1f} s; {r.n_failed} recordings without "
        f"segments (listed in {vdir / 'segment_errors'})")
    return vdir, no_segments(vdir)


def _run_locked(cfg: RunConfig, stream, chunks: Iterator[Corpus], shard: Optional[Shard], out: Path, t0: float,
                log: Log, n_logged: int) -> RunSummary:
    devices = parse_devices(cfg.device)
    dtype = resolve_dtype(cfg.dtype, devices[0])
    backend = _load_model(cfg, devices, dtype, log)
    info, labels, embed_dim, head_kind = backend.info, backend.labels, backend.embed_dim, backend.head_kind
    asr = _load_asr(cfg, devices, log)
    asr_info = asr.info if asr is not None else None

    if cfg.overwrite:  # after every check: the run is known to go ahead
        # vad/: just made; heads/: trained heads are kept (a run may be applying one of them)
        kept = clear_ours(out, keep=((layout.VAD,) if cfg.vad is not None else ()) + (layout.HEADS,))
        if kept:
            log(f"--overwrite: kept what batchser did not write in {out} ({len(kept)}): {', '.join(kept[:10])}"
                + (", ..." if len(kept) > 10 else ""))
    with_ref = stream.with_ref
    writer_args = dict(labels=labels, model_id=info.id, emb_dtype=cfg.emb_dtype,
                       frames=cfg.granularity == "frame", with_ref=with_ref, part_size=cfg.part_size,
                       settings=run_settings(cfg, info, labels, dtype, backend.head_kind, asr_info=asr_info,
                                             device=devices[0]),
                       npy_layout=cfg.npy_layout, features=parse_feature_sets(cfg.features),
                       timeline=cfg.timeline is not None, head_kind=backend.head_kind, heads=_head_columns(cfg),
                       asr=asr is not None)
    writer = OutputWriter(out, **writer_args)  # refuses a directory made with other settings
    if cfg.retry_errors:
        writer.drop_errors()
    n_before = len(writer.finished_ids)
    if n_before:
        log(f"resuming: {n_before} utterance(s) already finished in {out} (results or errors) are skipped")
    s = RunSummary(out_dir=str(out), shard=shard.name if shard else None)
    n_dec = decoder_count(cfg.num_workers, devices[0], len(devices))
    live = RunSummary()  # filled batch by batch: what an interrupted run did is still reported
    bar = Progress(max(0, stream.n_expected - n_before), enabled=cfg.progress, every=cfg.progress_every, log=log,
                   errors=lambda: s.n_errors + live.n_errors)
    done = Processed(live, 0, *batch_limits(devices[0], cfg.batch_seconds, cfg.max_batch_size))
    inputs = IdTableBuilder()  # this task's input ids: which of the committed errors are its own
    status, cached = "stopped", False

    def todo_chunks() -> Iterator[List[Utterance]]:
        """Each chunk's utterances still to run, after its read errors are written."""
        nonlocal cached, n_logged
        for c in chunks:
            inputs.add([u.utt_id for u in c.utterances] + [e.utt_id for e in c.errors])
            s.n_input += c.n_input
            for w in stream.warnings[n_logged:]:
                log(f"warning: {w.message}")
            n_logged = len(stream.warnings)
            todo, n_err, n_skip = settle_read_errors(c, writer)
            s.n_errors += n_err
            s.n_skipped += n_skip
            if n_err:
                bar(n_err)
            todo, bad, made = cache_shared_recordings(todo, out / layout.CACHE, pipe_timeout=cfg.pipe_timeout,
                                                      num_decoders=n_dec,
                                                      pipe_max_bytes=int(cfg.pipe_max_mb * (1 << 20)))
            cached |= made
            for u, msg in bad:
                writer.add_error(u.utt_id, "decode", msg)
                s.n_errors += 1
            if bad:
                bar(len(bad))
            if todo:
                yield todo

    try:
        if len(devices) == 1:
            for todo in todo_chunks():
                nb = done.n_batches
                done = process(backend, writer, todo, cfg=cfg, device=devices[0], with_ref=with_ref, progress=bar,
                               summary=live, asr=asr)
                done.n_batches += nb
        else:
            from .devices import run_on_devices

            del backend, asr
            done = run_on_devices(cfg, devices, out=str(out), dtype=dtype, chunks=_flushed(todo_chunks(), writer),
                                  writer_args=writer_args, with_ref=with_ref, on_progress=bar, log=log)
        status = "stopped" if done.failures else "complete"
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through procs.terminate_as_interrupt
        status = "interrupted"
        raise
    finally:
        bar.close()  # before the devices' counts join s: its error count adds both already
        s.add(done.summary)
        s.n_read_warnings = stream.n_warnings
        for w in s.warnings:
            log(f"warning: {w}")
        for ev in s.oom_backoffs:
            log(f"out of memory on a batch of {ev['failed_items']} ({ev['failed_padded_samples'] / TARGET_SR:.1f} s "
                f"padded): batches now hold at most {ev['new_max_padded_samples'] / TARGET_SR:.1f} s padded")
        _finish(cfg, out, writer, s, status=status, t0=t0, cached=cached, log=log, stream=stream,
                inputs=inputs.build(),
                manifest=dict(info=info, labels=labels, head_kind=head_kind, embed_dim=embed_dim, devices=devices, dtype=dtype,
                              n_batches=done.n_batches, batch_seconds=done.batch_seconds,
                              max_batch_size=done.max_batch_size, num_decoders=n_dec, failures=done.failures,
                              shard=shard, asr_info=asr_info))
    if done.failures:
        raise RunStopped("device process failed; finished parts are kept, run again to resume:\n"
                         + "\n".join(done.failures))
    return s


def _flushed(chunks: Iterator[List[Utterance]], writer: OutputWriter) -> Iterator[List[Utterance]]:
    """``chunks``, committing the parent's rows (read errors) before each is handed to the devices."""
    for todo in chunks:
        writer.flush()
        yield todo
    writer.flush()


def _finish(cfg: RunConfig, out: Path, writer: OutputWriter, s: RunSummary, *, status: str, t0: float,
            cached: bool, log: Log, stream, inputs: IdTable, manifest: dict) -> None:
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
    n_ok, n_err = count_rows(out, layout.LABELS), count_rows(out, layout.ERRORS)  # every namespace, earlier runs
    _, err_ids = committed_ids(out)
    s.n_failed_total = int(inputs.contains(sorted(err_ids)).sum())
    warnings = [w.message for w in stream.warnings] + s.warnings
    if status != "complete":
        log(f"{status}: {n_ok} results and {n_err} errors are committed in {out}; "
            "run the same command again to resume")
    try:
        writer.ensure_errors_part()  # errors/*.parquet always matches, with the full schema
        if "prosody" in parse_feature_sets(cfg.features):
            write_explanations(out)
        writer.write_manifest(run_manifest(
            cfg=cfg, summary=s, status=status, corpus=stream, warnings=warnings[:MAX_WARNINGS_KEPT],
            warnings_total=stream.n_warnings + len(s.warnings), totals={"results_total": n_ok, "errors_total": n_err},
            **manifest))
    except OSError as e:
        log(f"error: could not write {out / layout.MANIFEST}: {e}")
