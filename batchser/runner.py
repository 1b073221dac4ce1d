"""One run: reader -> loader (decoders) -> scoring core -> writer, wired together.

Every input utterance ends up in exactly one of the labels table or the errors table; a
resumed run skips what a previous run committed. The stages live in their own modules
(docs/ARCHITECTURE.md); this one only decides which run to do and connects them.
"""
from __future__ import annotations

import errno
import itertools
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from .audio import TARGET_SR
from .config import RunConfig, RunStopped, RunSummary
from .corpus import Corpus, CorpusError, ReadError, open_corpus
from .inputs import looks_like_path_list
from .records import CHECK_HINT
from .idtable import IdTable
from .pipeline import ChunkFeeder, Processed, flushed, process
from .plan import RunPlan, emotion_stage, make_plan
from .procs import children_quiet, received_signal
from .progress import Progress, append_to
from .resume import nothing_left
from .prosody import explanations as prosody_explanations
from .shards import Shard
from .store import (OutputLock, OutputWriter, check_claimable, clear_ours, committed_ids, count_rows, layout, shard_dir,
                    write_explanations)
from .store.merging import SHARD_DIR_RE
from .store.manifest import run_manifest

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
    scp = Path(cfg.input) / "wav.scp" if Path(cfg.input).is_dir() else Path(cfg.input)
    if looks_like_path_list(scp):
        raise CorpusError(f"no line of {scp} is a wav.scp line ('<recording-id> <rxfilename>'): this looks like a list "
                          "of audio paths, one per line. Give it a name without .scp (my_files.txt), and batchser "
                          "reads it as a list (ids from the file names)")
    raise CorpusError(f"no utterance of {cfg.input} is usable ({len(errs)} problems), e.g.:\n  {shown}"
                      f"\n{CHECK_HINT.format(path=cfg.input)}")


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
    plan = make_plan(cfg)  # an unknown feature set, a bad shard or head: before anything is touched
    shard = plan.shard
    top = Path(cfg.out)
    check_claimable(top)  # touches nothing: a foreign directory is refused before any write
    out = shard_out(shard, top, log)
    if shard is not None:
        check_claimable(out)
    try:
        if cfg.vad is None:
            stream, chunks, n_logged = _open(cfg, cfg.input, shard, out, log)
            with OutputLock(out, command=cfg.argv, log=log):
                return _run_locked(plan, stream, chunks, out, t0, log, n_logged)
        with OutputLock(out, command=cfg.argv, log=log):
            data, no_segments = _segmented(plan, out, log)
            # the segments are this task's; none at all (an empty share, nothing but silence) is no error
            stream, chunks, n_logged = _open(cfg, str(data), None, out, log, may_be_empty=True)
            if shard is not None:
                log(f"shard {shard.index}/{shard.count}: {stream.n_expected} segments of its recordings -> {out}")
            # a recording without segments (unreadable, or no speech) is an error row: every input is somewhere
            chunks = itertools.chain([Corpus(errors=no_segments)], chunks)
            stream.n_expected += len(no_segments)
            return _run_locked(plan, stream, chunks, out, t0, log, n_logged)
    except OSError as e:
        if e.errno not in WRITE_FAULTS:
            raise
        raise _write_failure(e, out) from e


def _open(cfg: RunConfig, path: str, shard: Optional[Shard], out: Path, log: Log, may_be_empty: bool = False):
    """The corpus stream of this task, its chunks (checked for something usable, unless
    ``may_be_empty``: the segments ``run --vad`` made), and how many of its warnings were logged."""
    stream = open_corpus(path, audio_root=cfg.audio_root, allow_pipes=cfg.allow_pipes,
                         extensions=cfg.extensions.split(",") if cfg.extensions else None, shard=shard,
                         spk_from_folder=cfg.spk_from_folder)
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


def _segmented(plan: RunPlan, out: Path, log: Log) -> Tuple[Path, List[ReadError]]:
    """``run --vad``: this task's recordings cut into speech segments in OUT/vad/ (reused on a
    resume with the same options: the segmentation is deterministic), and an error row (stage
    "vad") for each recording without segments."""
    from .segment import is_complete, no_segments, segment

    cfg, shard = plan.cfg, plan.shard
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
    n = plan.num_decoders() if plan.devices[0].startswith("cuda") else plan.num_decoders("cpu")
    r = segment(cfg.input, vdir, opts=cfg.vad, audio_root=cfg.audio_root, allow_pipes=cfg.allow_pipes,
                num_workers=n, pipe_timeout=cfg.pipe_timeout, shard=shard, progress=cfg.progress,
                progress_every=cfg.progress_every, log=log)
    log(f"vad: {r.n_recordings} recordings ({r.audio_seconds / 3600:.2f} h) -> {r.n_segments} segments "
        f"({r.speech_seconds / 3600:.2f} h of speech) in {r.wall_seconds:.1f} s; {r.n_failed} recordings without "
        f"segments (listed in {vdir / 'segment_errors'})")
    return vdir, no_segments(vdir)


def _open_writer(plan: RunPlan, stream, out: Path, log: Log):
    """The stages (loaded and checked: a model that cannot run this refuses before any write) and
    the writer, which refuses a directory made with other settings."""
    stages = plan.load_stages(plan.devices[0], metadata_only=len(plan.devices) > 1 or plan.cfg.engine == "ray", log=log)
    if plan.cfg.overwrite:  # after every check: the run is known to go ahead
        # vad/: just made; heads/: trained heads are kept (a run may be applying one of them)
        kept = clear_ours(out, keep=((layout.VAD,) if plan.cfg.vad is not None else ()) + (layout.HEADS,))
        if kept:
            log(f"--overwrite: kept what batchser did not write in {out} ({len(kept)}): {', '.join(kept[:10])}"
                + (", ..." if len(kept) > 10 else ""))
    writer_args = plan.writer_args(stages, with_ref=stream.with_ref)
    writer = OutputWriter(out, **writer_args)
    if plan.cfg.retry_errors:
        writer.drop_errors()
    return stages, writer_args, writer


def _reopen(plan: RunPlan, out: Path) -> Iterator[Corpus]:
    """This task's chunks read again (``resume.nothing_left`` consumed some)."""
    c = plan.cfg
    if c.vad is None:
        return _open(c, c.input, plan.shard, out, lambda *_: None)[1]
    return _open(c, str(out / layout.VAD), None, out, lambda *_: None, may_be_empty=True)[1]


def _run_locked(plan: RunPlan, stream, chunks: Iterator[Corpus], out: Path, t0: float, log: Log,
                n_logged: int) -> RunSummary:
    cfg, devices = plan.cfg, plan.devices
    early, chunks = nothing_left(plan, chunks, out, reopen=lambda: _reopen(plan, out))
    if early is not None:
        early.wall_seconds = time.time() - t0
        log(f"nothing left to do: every utterance of {cfg.input} is already in {out} (no model was loaded)")
        return early
    stages, writer_args, writer = _open_writer(plan, stream, out, log)
    models = plan.manifest_args(stages)
    n_before = len(writer.finished_ids)
    if n_before:
        log(f"resuming: {n_before} utterance(s) already finished in {out} (results or errors) are skipped")
    s = RunSummary(out_dir=str(out), shard=plan.shard.name if plan.shard else None)
    live = RunSummary()  # filled batch by batch: what an interrupted run did is still reported
    feeder = ChunkFeeder(stream, chunks, writer, out / layout.CACHE, s, log, n_logged, pipe_timeout=cfg.pipe_timeout,
                         num_decoders=plan.num_decoders(), pipe_max_bytes=int(cfg.pipe_max_mb * (1 << 20)))
    feeder.bar = bar = Progress(max(0, stream.n_expected - n_before), enabled=cfg.progress, every=cfg.progress_every,
                                log=log, errors=lambda: s.n_errors + live.n_errors,
                                file_log=append_to(cfg.log_file) if cfg.log_file else None)
    done = Processed(live, 0, *plan.limits(devices[0]))
    status = "stopped"
    try:
        if cfg.engine == "ray":
            from .ray_engine import run_on_ray

            done = run_on_ray(plan, stages, writer, feeder, with_ref=stream.with_ref, summary=live, progress=bar,
                              log=log)
        elif len(devices) == 1:
            feed = plan.feed(devices[0], min_samples=emotion_stage(stages).backend.min_samples,
                             with_ref=stream.with_ref)
            for todo in feeder:
                nb = done.n_batches
                done = process(stages, writer, todo, feed=feed, summary=live, progress=bar)
                done.n_batches += nb
        else:
            from .devices import run_on_devices

            del stages  # the parent needed the models' metadata only
            done = run_on_devices(plan, out=str(out), chunks=flushed(iter(feeder), writer), writer_args=writer_args,
                                  with_ref=stream.with_ref, on_progress=bar, log=log)
        status = "stopped" if done.failures else "complete"
    except BaseException:  # Ctrl-C, SIGTERM through procs.terminate_as_interrupt, or what the signal caused
        if isinstance(sys.exc_info()[1], KeyboardInterrupt) or received_signal() is not None:
            status = "interrupted"
        raise
    finally:
        with children_quiet():  # the decoders a signal killed must not cut the manifest short
            bar.close()  # before the devices' counts join s: its error count adds both already
            s.add(done.summary)
            s.n_read_warnings = stream.n_warnings
            _report(s, log)
            batches = dict(n_batches=done.n_batches, batch_seconds=done.batch_seconds,
                           max_batch_size=done.max_batch_size, failures=done.failures)
            _finish(plan, out, writer, s, status=status, t0=t0, cached=feeder.cached, log=log, stream=stream,
                    inputs=feeder.inputs.build(), manifest={**models, **batches})
    if done.failures:
        raise RunStopped("device process failed; finished parts are kept, run again to resume:\n"
                         + "\n".join(done.failures))
    return s


def _report(s: RunSummary, log: Log) -> None:
    for w in s.warnings:
        log(f"warning: {w}")
    for ev in s.oom_backoffs:
        log(f"out of memory on a batch of {ev['failed_items']} ({ev['failed_padded_samples'] / TARGET_SR:.1f} s "
            f"padded): batches now hold at most {ev['new_max_padded_samples'] / TARGET_SR:.1f} s padded")


def _finish(plan: RunPlan, out: Path, writer: OutputWriter, s: RunSummary, *, status: str, t0: float,
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
        if "prosody" in plan.feature_sets:
            write_explanations(out, explain=prosody_explanations)
        writer.write_manifest(run_manifest(
            cfg=plan.cfg, summary=s, status=status, corpus=stream, warnings=warnings[:MAX_WARNINGS_KEPT],
            warnings_total=stream.n_warnings + len(s.warnings), totals={"results_total": n_ok, "errors_total": n_err},
            **manifest))
    except OSError as e:
        log(f"error: could not write {out / layout.MANIFEST}: {e}")
