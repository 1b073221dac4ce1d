"""One run: reader -> loader (worker processes) -> model worker -> writer.

Every input utterance ends up in exactly one of the labels table or the errors table; a
resumed run skips what a previous run committed.
"""
from __future__ import annotations

import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .audio import AudioError, load_utterance, probe_duration
from .batching import make_batches
from .corpus import Corpus, Utterance, read_corpus
from .outputs import OutputWriter, score_column
from .worker import run_items


@dataclass
class RunConfig:
    input: str
    out: str
    model: str = "emotion2vec_plus_base"
    hub: str = "auto"
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    batch_seconds: Optional[float] = None  # None: per device (DEFAULT_BATCH)
    max_batch_size: Optional[int] = None
    num_workers: int = -1
    granularity: str = "utterance"
    emb_dtype: str = "float32"
    npy_layout: str = "parts"
    audio_root: Optional[str] = None
    allow_pipes: bool = True
    pipe_timeout: float = 300.0
    max_seconds: float = 600.0
    long_audio: str = "window"  # or "truncate"
    features: Optional[str] = None  # "prosody": interpretable columns beside each prediction
    part_size: int = 2000
    shard: Optional[str] = None  # "I/N" or "auto" (array-job environment)
    num_shards: Optional[int] = None
    shard_index: Optional[int] = None
    overwrite: bool = False
    retry_errors: bool = False
    progress: bool = True
    argv: List[str] = field(default_factory=list)


@dataclass
class RunSummary:
    n_input: int = 0
    n_ok: int = 0
    n_errors: int = 0
    n_skipped: int = 0  # committed by an earlier run
    n_windowed: int = 0  # longer than max_seconds: run in windows
    audio_seconds: float = 0.0
    padded_seconds: float = 0.0
    wall_seconds: float = 0.0
    # where the processing loop's time went (summed over devices): waiting for decoded audio (a
    # loader too slow for the model shows here), the model (host-to-device copy, forward, results
    # back on the host) and writing outputs
    loader_wait_seconds: float = 0.0
    model_seconds: float = 0.0
    write_seconds: float = 0.0

    @property
    def padding_efficiency(self) -> Optional[float]:
        return self.audio_seconds / self.padded_seconds if self.padded_seconds else None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return device


# (batch_seconds, max_batch_size) per device type. On a GPU big batches keep it busy; on a CPU
# batching gains no arithmetic speed, and big batches only cost memory bandwidth (measured on 2
# cores with emotion2vec+ base: batches of 16 x 4 s ran 25% slower than batches of 1-8).
DEFAULT_BATCH = {"cuda": (200.0, 64), "cpu": (32.0, 8)}


DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_dtype(dtype: str, device: str) -> str:
    import torch

    dtype = DTYPE_ALIASES.get(dtype, dtype)
    if dtype != "auto":
        if device == "cpu" and dtype == "float16":
            raise ValueError("--dtype float16 needs a GPU; use float32 or bfloat16 on the CPU")
        if device != "cpu" and dtype == "int8":
            raise ValueError("--dtype int8 runs on the CPU only; on a GPU use bfloat16")
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def default_workers() -> int:
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, n - 1))


def nw_for(cfg: "RunConfig") -> int:
    return default_workers() if cfg.num_workers < 0 else cfg.num_workers


def _cache_one(args):
    from .audio import cache_recording

    src, dest, timeout = args
    try:
        return cache_recording(src, dest, timeout), None
    except Exception as e:
        return None, f"{type(e).__name__}: {e}" if not isinstance(e, AudioError) else str(e)


def _cache_shared_recordings(utts: List[Utterance], out: Path, timeout: float, workers: int):
    """Decode each pipe/ark recording that several segments share once, into OUT/.cache.

    The segments' sources are switched to the cached file in place. Returns the cache dir (or
    None) and ``(utterance, message)`` for segments whose recording failed to decode.
    """
    from dataclasses import replace as _replace

    from .corpus import AudioSource

    groups: Dict[AudioSource, List[int]] = {}
    for i, u in enumerate(utts):
        if u.source.kind in ("pipe", "ark") and (u.start or u.end is not None):
            groups.setdefault(u.source, []).append(i)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return None, []
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(src, str(cache / f"rec{n:07d}.wav"), timeout) for n, src in enumerate(groups)]
    if workers > 0:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            done = pool.map(_cache_one, jobs, chunksize=1)
    else:
        done = [_cache_one(j) for j in jobs]
    bad = []
    for (src, _dest, _t), (path, err) in zip(jobs, done):
        for i in groups[src]:
            u = utts[i]
            if path is None:
                bad.append((u, f"{u.utt_id} ({u.where}): recording {u.rec_id}: {err}"))
            else:
                utts[i] = _replace(u, source=AudioSource("file", path))
    return cache, bad


class _DecodeDataset:
    """Map-style dataset: index -> (index, waveform or None, error or None, features or None).

    Runs in the loader's worker processes: decoding and (with ``features``) the prosody
    features happen there, on the CPU, while the model works on the previous batch.
    """

    def __init__(self, utts: List[Utterance], pipe_timeout: float, min_samples: int, features: bool = False):
        self.utts, self.pipe_timeout, self.min_samples = utts, pipe_timeout, min_samples
        self.features = features

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int):
        u = self.utts[i]
        try:
            w = load_utterance(u, self.pipe_timeout, self.min_samples)
        except AudioError as e:
            return i, None, f"{u.utt_id} ({u.where}): {e}", None
        except Exception as e:  # a decoder bug must not stop the run either
            return i, None, f"{u.utt_id} ({u.where}): {type(e).__name__}: {e}", None
        feats = None
        if self.features:
            from .prosody import prosody

            try:
                feats = prosody(w)
            except Exception as e:
                return i, None, f"{u.utt_id} ({u.where}): prosody features failed: {type(e).__name__}: {e}", None
        return i, w, None, feats


def _identity(batch):
    return batch


def _row(u: Utterance, dur: float, labels: List[str], scores: Optional[np.ndarray], with_ref: bool) -> Dict:
    r = {"utt_id": u.utt_id, "rec_id": u.rec_id, "spk": u.spk, "start": u.start or 0.0,
         "end": u.end if u.end is not None else (u.start or 0.0) + dur, "duration": dur}
    if scores is not None and len(labels):
        k = int(np.argmax(scores))
        r["label"], r["score"] = labels[k], float(scores[k])
        for l, s in zip(labels, scores):
            r[score_column(l)] = float(s)
    else:
        r["label"], r["score"] = None, None
    if with_ref:
        r["ref_label"] = u.ref_label
    return r


def _versions() -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("batchser", "torch", "funasr", "transformers", "numpy", "pyarrow", "soundfile", "soxr"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _process(backend, writer: OutputWriter, todo: List[Utterance], cfg: "RunConfig", device: str,
             with_ref: bool, s: RunSummary, progress=None) -> Tuple[int, float, int]:
    """Decode, batch and run ``todo`` on one device, writing through ``writer``.

    Updates ``s``; calls ``progress(n_utterances, audio_seconds)`` after each batch.
    Returns (number of batches, batch_seconds, max_batch_size) for the manifest.
    """
    import torch

    frames = cfg.granularity == "frame"
    durations = [probe_duration(u) for u in todo]
    dflt = DEFAULT_BATCH["cuda" if device.startswith("cuda") else "cpu"]
    batch_seconds = cfg.batch_seconds or dflt[0]
    max_batch = cfg.max_batch_size or dflt[1]
    batches = make_batches(durations, batch_seconds, max_batch)
    max_samples = int(cfg.max_seconds * 16000)
    nw = nw_for(cfg)
    loader = torch.utils.data.DataLoader(
        _DecodeDataset(todo, cfg.pipe_timeout, backend.min_samples, cfg.features == "prosody"),
        batch_sampler=batches,
        num_workers=nw, collate_fn=_identity, prefetch_factor=2 if nw > 0 else None,
    )
    clock = time.perf_counter
    t_wait = clock()
    for items in loader:
        t_got = clock()
        s.loader_wait_seconds += t_got - t_wait
        dt_model = 0.0
        good = [(i, w) for i, w, err, _ in items if err is None]
        feats = {i: f for i, _, _, f in items}
        for i, w, err, _ in items:
            if err is not None:
                writer.add_error(todo[i].utt_id, "decode", err)
                s.n_errors += 1
        audio_before = s.audio_seconds
        if good:
            t_model = clock()
            results, real, padded = run_items(backend, [w for _, w in good], frames, max_samples,
                                              cfg.long_audio)
            dt_model = clock() - t_model
            s.model_seconds += dt_model
            s.padded_seconds += padded / 16000.0
            rows, embs, frs = [], [], []
            for (i, w), r in zip(good, results):
                if r.error is not None:
                    writer.add_error(todo[i].utt_id, "model", f"{todo[i].utt_id}: {r.error}")
                    s.n_errors += 1
                    continue
                dur = len(w) / 16000.0
                rows.append(_row(todo[i], dur, backend.labels, r.scores, with_ref))
                if feats[i] is not None:
                    rows[-1].update(feats[i])
                embs.append(r.embedding)
                frs.append(r.frames)
                s.audio_seconds += dur
                s.n_windowed += r.windows > 1
            if rows:
                writer.add(rows, np.stack(embs), frs if frames else None)
                s.n_ok += len(rows)
        if progress is not None:
            progress(len(items), s.audio_seconds - audio_before)
        t_wait = clock()
        s.write_seconds += t_wait - t_got - dt_model  # rows, tables, .npy parts
    writer.flush()
    s.write_seconds += clock() - t_wait
    return len(batches), batch_seconds, max_batch


def parse_devices(spec: str) -> List[str]:
    """'auto' | 'cpu' | 'cuda' | 'cuda:0,cuda:1' -> resolved device list."""
    devs = [resolve_device(d.strip()) for d in spec.split(",") if d.strip()]
    if not devs:
        raise ValueError("--device: no device given")
    if len(set(devs)) != len(devs) and any(d != "cpu" for d in devs):
        raise ValueError(f"--device lists a device twice: {spec}")
    return devs


def split_by_duration(utts: List[Utterance], n: int) -> List[List[Utterance]]:
    """n shares of about equal audio (greedy, longest first); deterministic."""
    durs = [probe_duration(u) or 10.0 for u in utts]
    order = sorted(range(len(utts)), key=lambda i: (-durs[i], utts[i].utt_id))
    loads = [0.0] * n
    shares: List[List[Utterance]] = [[] for _ in range(n)]
    for i in order:
        k = min(range(n), key=lambda j: (loads[j], j))
        shares[k].append(utts[i])
        loads[k] += durs[i]
    return shares


def _device_main(cfg: "RunConfig", device: str, dtype: str, utts: List[Utterance], ns: str,
                 writer_args: Dict, with_ref: bool, counter, result_q) -> None:
    """One device's share, in its own process (spawned: CUDA cannot be forked)."""
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        from .models import load_backend

        backend = load_backend(cfg.model, device=device, dtype=dtype, hub=cfg.hub, backend=cfg.backend)
        writer = OutputWriter(cfg.out, namespace=ns, **writer_args)
        s = RunSummary()

        def progress(n, secs):
            with counter.get_lock():
                counter.value += n

        nb, _, _ = _process(backend, writer, utts, cfg, device, with_ref, s, progress)
        result_q.put((ns, None, asdict(s), nb))
    except BaseException as e:  # report, never hang the parent
        import traceback

        result_q.put((ns, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", None, 0))


def run(cfg: RunConfig, log=print) -> RunSummary:
    """Process ``cfg.input`` into ``cfg.out``. Raises CorpusError / ModelNotAvailable on setup failure."""
    import torch

    from .models import load_backend

    t0 = time.time()
    corpus: Corpus = read_corpus(cfg.input, audio_root=cfg.audio_root, allow_pipes=cfg.allow_pipes)
    for w in corpus.warnings:
        log(f"warning: {w.message}")
    from .shards import assign, parse_shard

    shard = parse_shard(cfg.shard, cfg.num_shards, cfg.shard_index)
    out = Path(cfg.out)
    if shard is not None:
        # the split is computed on the whole corpus, so a resubmitted task gets the same share
        for u in corpus.utterances:
            if u.duration is None:
                u.duration = probe_duration(u)
        ids = [u.utt_id for u in corpus.utterances] + [e.utt_id for e in corpus.errors]
        share = assign(ids, [u.duration for u in corpus.utterances] + [0.0] * len(corpus.errors), shard.count)
        corpus.utterances = [u for u in corpus.utterances if share[u.utt_id] == shard.index]
        corpus.errors = [e for e in corpus.errors if share[e.utt_id] == shard.index]
        out = out / "shards" / shard.name
        log(f"shard {shard.index}/{shard.count}: {corpus.n_input} utterances -> {out}")
    devices = parse_devices(cfg.device)
    dtype = resolve_dtype(cfg.dtype, devices[0])
    multi = len(devices) > 1
    # with several devices, the parent only needs the model's metadata: load it on the CPU
    backend = load_backend(cfg.model, device="cpu" if multi else devices[0],
                           dtype="float32" if multi else dtype, hub=cfg.hub, backend=cfg.backend)
    if backend.info.test_model:
        log(f"note: {backend.info.path} is a random-weight TEST model; its labels mean nothing")
    if int(cfg.max_seconds * 16000) < 2 * backend.min_samples:
        raise ValueError(f"--max-seconds {cfg.max_seconds:g} is too short for this model "
                         f"(windows need at least {backend.min_samples / 16000:.3f} s)")

    if cfg.overwrite and out.exists():
        shutil.rmtree(out)
    if cfg.retry_errors:
        from .outputs import drop_errors

        drop_errors(out)
    with_ref = any(u.ref_label is not None for u in corpus.utterances)
    info = backend.info
    settings = {  # what changes results: resuming with anything else is refused
        "model": info.sha256 or info.id, "backend": info.backend, "labels": backend.labels,
        "dtype": dtype, "granularity": cfg.granularity, "emb_dtype": cfg.emb_dtype,
        "max_seconds": cfg.max_seconds, "long_audio": cfg.long_audio, "npy_layout": cfg.npy_layout,
        "features": cfg.features,
    }
    writer_args = dict(labels=backend.labels, model_id=info.id, emb_dtype=cfg.emb_dtype,
                       frames=cfg.granularity == "frame", with_ref=with_ref, part_size=cfg.part_size,
                       settings=settings, npy_layout=cfg.npy_layout, prosody=cfg.features == "prosody")
    writer = OutputWriter(out, **writer_args)
    done = writer.finished_ids
    s = RunSummary(n_input=corpus.n_input)

    for e in corpus.errors:
        if e.utt_id in done:
            s.n_skipped += 1
        else:
            writer.add_error(e.utt_id, e.stage, e.message)
            s.n_errors += 1
    todo = [u for u in corpus.utterances if u.utt_id not in done]
    s.n_skipped += len(corpus.utterances) - len(todo)
    if s.n_skipped:
        log(f"resuming: {s.n_skipped} utterance(s) already done in {out}, {len(todo)} to go")

    cache_dir, bad = _cache_shared_recordings(todo, out, cfg.pipe_timeout, nw_for(cfg))
    for u, msg in bad:
        writer.add_error(u.utt_id, "decode", msg)
        s.n_errors += 1
    failed = {u.utt_id for u, _ in bad}
    todo = [u for u in todo if u.utt_id not in failed]

    bar = None
    t_start = time.time()
    if cfg.progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="utt", desc="batchser")
    audio_done = [0.0]

    def progress(n: int, secs: float) -> None:
        audio_done[0] += secs
        if bar is not None:
            el = max(time.time() - t_start, 1e-9)
            bar.set_postfix_str(f"{audio_done[0] / el:.1f}x real time, "
                                f"{audio_done[0] / 3600 / el:.4f} audio h/s", refresh=False)
            bar.update(n)

    n_batches, batch_seconds, max_batch = 0, cfg.batch_seconds, cfg.max_batch_size
    failures: List[str] = []
    try:
        if not multi:
            n_batches, batch_seconds, max_batch = _process(backend, writer, todo, cfg, devices[0], with_ref, s,
                                                           progress)
        else:
            writer.flush()  # read errors committed before the device processes start
            del backend
            n_batches = _run_devices(cfg, devices, dtype, todo, writer_args, with_ref, s, bar, failures, log)
    finally:
        writer.flush()
        if cache_dir is not None:
            shutil.rmtree(cache_dir, ignore_errors=True)
        if bar is not None:
            bar.close()
        s.wall_seconds = time.time() - t0
        final = OutputWriter(out, **writer_args)  # rescan: totals over every namespace
        if cfg.features == "prosody":
            from .prosody import write_explanations

            write_explanations(out)
        d0 = devices[0]
        writer.write_manifest({
            "batchser_version": _versions().get("batchser"),
            "command": cfg.argv,
            "config": asdict(cfg),
            "model": {"id": info.id, "path": info.path, "backend": info.backend, "revision": info.revision,
                      "weights_sha256": info.sha256, "test_model": info.test_model,
                      "labels": writer_args["labels"], "embedding_dim": getattr(backend, "embed_dim", None)
                      if not multi else None},
            "versions": _versions(),
            "device": ",".join(devices), "dtype": dtype,
            "device_name": torch.cuda.get_device_name(torch.device(d0)) if d0.startswith("cuda")
            else platform.processor() or platform.machine(),
            "counts": {"input": s.n_input, "ok_this_run": s.n_ok, "errors_this_run": s.n_errors,
                       "skipped_already_done": s.n_skipped,
                       "results_total": len(final.done_ids), "errors_total": len(final.error_ids)},
            "audio_hours": s.audio_seconds / 3600.0,
            "wall_seconds": s.wall_seconds,
            "x_real_time": s.audio_seconds / s.wall_seconds if s.wall_seconds else None,
            "utterances_per_second": s.n_ok / s.wall_seconds if s.wall_seconds else None,
            "padding_efficiency": s.padding_efficiency,
            "time_split_seconds": {"waiting_for_audio": s.loader_wait_seconds, "model": s.model_seconds,
                                   "writing": s.write_seconds},
            "max_seconds": cfg.max_seconds, "utterances_in_windows": s.n_windowed,
            "num_batches": n_batches, "num_workers": nw_for(cfg),
            "batch_seconds": batch_seconds, "max_batch_size": max_batch,
            "device_failures": failures,
            "shard": {"index": shard.index, "count": shard.count} if shard else None,
        })
    if failures:
        raise RuntimeError("device process failed; finished parts are kept, run again to resume:\n"
                           + "\n".join(failures))
    return s


def _run_devices(cfg, devices, dtype, todo, writer_args, with_ref, s: RunSummary, bar, failures, log) -> int:
    """One spawned process per device, each on a share of about equal audio."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    result_q = ctx.Queue()
    shares = split_by_duration(todo, len(devices))
    procs = []
    log(f"running on {len(devices)} devices: {', '.join(devices)}")
    for k, (dev, share) in enumerate(zip(devices, shares)):
        p = ctx.Process(target=_device_main, args=(cfg, dev, dtype, share, f"d{k}", writer_args, with_ref,
                                                   counter, result_q), daemon=False)
        p.start()
        procs.append(p)
    seen = 0
    got = 0
    n_batches = 0
    import queue

    while got < len(procs):
        try:
            ns, err, summ, nb = result_q.get(timeout=0.5)
        except queue.Empty:
            if bar is not None:
                with counter.get_lock():
                    v = counter.value
                bar.update(v - seen)
                seen = v
            if all(not p.is_alive() for p in procs) and result_q.empty():
                failures.append("a device process died without reporting (killed?)")
                break
            continue
        got += 1
        n_batches += nb
        if err is not None:
            failures.append(f"{ns}: {err}")
            continue
        for f in ("n_ok", "n_errors", "n_windowed", "audio_seconds", "padded_seconds", "loader_wait_seconds",
                  "model_seconds", "write_seconds"):
            setattr(s, f, getattr(s, f) + summ[f])
    for p in procs:
        p.join()
    if bar is not None:
        bar.update(counter.value - seen)
    return n_batches


def run_features(input_path: str, out_dir: str, audio_root: Optional[str] = None, allow_pipes: bool = True,
                 num_workers: int = -1, pipe_timeout: float = 300.0, part_size: int = 2000, log=print) -> RunSummary:
    """``batchser features``: prosody columns only, no model. Writes OUT/features/part-*.parquet,
    OUT/errors/ and OUT/explanations.parquet; a re-run skips utterances already written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from .outputs import ERROR_SCHEMA, _save_parquet
    from .prosody import COLUMNS

    t0 = time.time()
    corpus = read_corpus(input_path, audio_root=audio_root, allow_pipes=allow_pipes)
    for w in corpus.warnings:
        log(f"warning: {w.message}")
    out = Path(out_dir)
    (out / "features").mkdir(parents=True, exist_ok=True)
    (out / "errors").mkdir(parents=True, exist_ok=True)
    done = set()
    nums = [-1]
    for sub in ("features", "errors"):
        for f in (out / sub).glob("part-*.parquet"):
            done.update(pq.read_table(f, columns=["utt_id"]).column("utt_id").to_pylist())
            nums.append(int(f.stem.split("-")[-1]))
    nxt = [max(nums) + 1]
    schema = pa.schema([("utt_id", pa.string()), ("rec_id", pa.string()), ("spk", pa.string()),
                        ("start", pa.float64()), ("end", pa.float64()), ("duration", pa.float64())]
                       + [(c, pa.float64()) for c in COLUMNS] + ([("ref_label", pa.string())]
                                                                 if any(u.ref_label for u in corpus.utterances) else []))
    s = RunSummary(n_input=corpus.n_input)
    rows: List[Dict] = []
    errs: List[Dict] = [{"utt_id": e.utt_id, "stage": e.stage, "message": e.message}
                        for e in corpus.errors if e.utt_id not in done]

    def flush():
        if rows:
            _save_parquet(out / "features" / f"part-{nxt[0]:05d}.parquet", pa.Table.from_pylist(rows, schema=schema))
        if errs:
            _save_parquet(out / "errors" / f"part-{nxt[0]:05d}.parquet", pa.Table.from_pylist(errs, schema=ERROR_SCHEMA))
        if rows or errs:
            nxt[0] += 1
        s.n_ok += len(rows)
        s.n_errors += len(errs)
        rows.clear()
        errs.clear()

    todo = [u for u in corpus.utterances if u.utt_id not in done]
    s.n_skipped = len(corpus.utterances) - len(todo) + len(corpus.errors) - len([e for e in corpus.errors if e.utt_id not in done])
    batches = make_batches([probe_duration(u) for u in todo], 60.0, 16)
    nw = default_workers() if num_workers < 0 else num_workers
    loader = torch.utils.data.DataLoader(_DecodeDataset(todo, pipe_timeout, 400, features=True),
                                         batch_sampler=batches, num_workers=nw, collate_fn=_identity,
                                         prefetch_factor=2 if nw else None)
    try:
        for items in loader:
            for i, w, err, feats in items:
                u = todo[i]
                if err is not None:
                    errs.append({"utt_id": u.utt_id, "stage": "decode", "message": err})
                    continue
                dur = len(w) / 16000.0
                r = {"utt_id": u.utt_id, "rec_id": u.rec_id, "spk": u.spk, "start": u.start or 0.0,
                     "end": u.end if u.end is not None else (u.start or 0.0) + dur, "duration": dur, **feats}
                if "ref_label" in schema.names:
                    r["ref_label"] = u.ref_label
                rows.append(r)
                s.audio_seconds += dur
            if len(rows) + len(errs) >= part_size:
                flush()
    finally:
        flush()
    import pandas as pd

    parts = sorted((out / "features").glob("part-*.parquet"))
    if parts:
        df = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
        if not df.empty:
            from .prosody import explanations

            _save_parquet(out / "explanations.parquet",
                          pa.Table.from_pandas(explanations(df), preserve_index=False))
    s.wall_seconds = time.time() - t0
    return s
