"""``batchser run --engine ray`` (:func:`run_on_ray`); for users' own Ray Data pipelines see
:class:`batchser.ray.EmotionPredictor`.

``--engine ray`` keeps the run's promises with Ray doing the work: the reader, the resume scan and
the writer stay in the driver (this process), so every part is committed there atomically, once;
each chunk's utterances go out as *blocks* (length-sorted runs of at most ``--part-size``) through
a Ray Dataset: decoded in Ray tasks, scored in an actor pool (each actor loads the run's stages
once, on its GPU when ``--gpus-per-worker`` is set, with the same bucketing, windows and
out-of-memory back-off as a local run: ``scoring.score``). An actor or task killed mid-run is
retried by Ray; the driver writes each block's rows once (a block it has written is never
written again), so a retry duplicates nothing, and a killed driver resumes as any run does.

``ray`` is imported only here and in :mod:`batchser.ray` (``pip install 'batchser[ray]'``).
"""
from __future__ import annotations

import os
import pickle
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

from .batching import make_batches
from .config import RunStopped, RunSummary
from .loader import DecodeDataset
from .pipeline import Processed, count
from .records import Utterance
from .scoring import BatchResult, Scored, StageFailure, score


def _ray():
    try:
        import ray
    except ImportError as e:
        raise ValueError("--engine ray needs Ray: pip install 'batchser[ray]'") from e
    return ray


def connect(address: Optional[str], log: Callable[[str], None], quiet: bool = False) -> None:
    """Join the cluster at ``address`` ("auto": the one ``ray start`` made on this machine), or
    start a local one (no address), unless this process is connected already."""
    ray = _ray()
    if ray.is_initialized():
        return
    if quiet:  # Ray's C++ notes (e.g. on actors restarted with their constructor arguments) only when asked
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             logging_level="ERROR")
    res = ray.cluster_resources()
    log(f"ray: {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs in the cluster"
        + (f" at {address}" if address else " (a local cluster, started for this run)"))


class _BlockScorer:
    """One actor of the pool: the run's stages, loaded once, score decoded blocks."""

    def __init__(self, plan, with_ref: bool, gpus: float):
        import ray
        import torch

        plan = ray.get(plan) if isinstance(plan, ray.ObjectRef) else plan
        self.device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.stages = plan.load_stages(self.device)
        self.with_ref = with_ref

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, list]:
        out = {"block": [], "result": []}
        for block, blob, sizes in zip(batch["block"], batch["items"], batch["sizes"]):
            out["block"].append(int(block))
            out["result"].append(pickle.dumps(self.score_block(pickle.loads(blob), pickle.loads(sizes)), protocol=5))
        return out

    def score_block(self, items, sizes: List[int]) -> Dict:
        """The block's batches, as the driver cut them (the local pipeline's batches: same results)."""
        scored = [Scored(it.utt, it.wave, it.features, it.cut_short, error=("decode", it.error) if it.error else None)
                  for it in items]
        parts: List[BatchResult] = []
        a = 0
        try:
            for n in sizes:
                parts.append(score(self.stages, scored[a:a + n], with_ref=self.with_ref))
                a += n
        except StageFailure as e:
            return {"failure": str(e)}
        return {"results": parts, "warnings": [it.warning for it in items if it.error is None and it.warning]}


class _Decoded:
    """A decoded item with its utterance (the loader's Item names an index into a list)."""

    __slots__ = ("utt", "wave", "error", "features", "warning", "cut_short")

    def __init__(self, utt, item):
        self.utt, self.wave, self.error = utt, item.wave, item.error
        self.features, self.warning, self.cut_short = item.features, item.warning, item.cut_short


def quiet_ray(progress: bool) -> None:
    """Ray Data's progress lines and start-up notes only where batchser's own progress shows."""
    import logging
    import warnings

    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        logging.getLogger("ray").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")


def _decode_block_items(row: Dict, **kw) -> Dict:
    """A Ray task: decode one block's utterances (a bad one carries its message, as in the loader)."""
    utts: List[Utterance] = pickle.loads(row["utts"])
    ds = DecodeDataset(utts, pipe_timeout=kw["pipe_timeout"], min_samples=kw["min_samples"],
                       features=kw["features"], pipe_max_bytes=kw["pipe_max_bytes"])
    return {"block": row["block"], "sizes": row["sizes"],
            "items": pickle.dumps([_Decoded(u, ds[i]) for i, u in enumerate(utts)], protocol=5)}


def blocks_of(todo: List[Utterance], limits, size: int) -> List[List[List[Utterance]]]:
    """The local pipeline's batches of ``todo`` (``make_batches`` on the same durations, so a
    batch holds the same utterances and gives the same numbers), grouped into blocks of about
    ``size`` utterances: a block is one task, one actor call and one committed part."""
    from .audio import probe_duration

    blocks: List[List[List[Utterance]]] = [[]]
    n = 0
    for b in make_batches([probe_duration(u) for u in todo], *limits):
        if n >= size:
            blocks.append([])
            n = 0
        blocks[-1].append([todo[i] for i in b])
        n += len(b)
    return [bl for bl in blocks if bl]


def run_on_ray(plan, stages, writer, chunks: Iterable[List[Utterance]], *, with_ref: bool, summary: RunSummary,
               progress=None, log: Callable[[str], None] = print) -> Processed:
    """Score ``chunks`` on the Ray cluster, committing through ``writer`` (in this process)."""
    ray = _ray()
    c = plan.cfg
    connect(c.ray_address, log, quiet=not c.progress)
    from .plan import emotion_stage

    min_samples = emotion_stage(stages).backend.min_samples
    gpus = float(c.gpus_per_worker or 0)
    res = ray.cluster_resources()
    # default: every GPU busy, or every CPU but one (the decode tasks need somewhere to run)
    workers = c.workers or (max(1, int(res.get("GPU", 0) // gpus)) if gpus else max(1, int(res.get("CPU", 2)) - 1))
    quiet_ray(c.progress)
    plan_ref = ray.put(plan)  # each actor fetches the plan: its constructor's arguments stay small
    limits = plan.limits("cuda" if gpus else "cpu")
    done = Processed(summary, 0, *limits)
    written = set()
    for todo in chunks:
        blocks = blocks_of(todo, limits, c.part_size)
        base = len(written)
        rows = [{"block": base + k, "utts": pickle.dumps([u for b in bl for u in b], protocol=5),
                 "sizes": pickle.dumps([len(b) for b in bl])} for k, bl in enumerate(blocks)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(_decode_block_items, fn_kwargs=dict(pipe_timeout=c.pipe_timeout, min_samples=min_samples,
                                                        features=plan.feature_sets,
                                                        pipe_max_bytes=int(c.pipe_max_mb * (1 << 20))),
                    num_cpus=1)
        ds = ds.map_batches(_BlockScorer, fn_constructor_kwargs=dict(plan=plan_ref, with_ref=with_ref, gpus=gpus),
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus or None,
                            num_cpus=None if gpus else 1)  # Ray Data restarts actors and retries their tasks
        for row in ds.iter_rows():
            k = int(row["block"])
            if k in written:  # a retried block: its rows are committed already
                continue
            payload = pickle.loads(row["result"])
            if "failure" in payload:
                raise RunStopped(f"{payload['failure']}; what was done before is committed: fix the cause and run "
                                 "the same command again to resume")
            summary.warnings += payload["warnings"]
            n = 0
            for res in payload["results"]:
                writer.add_batch(rows=res.rows, errors=res.errors, embeddings=res.embeddings, frames=res.frames,
                                 windows=res.windows)
                count(summary, res)
                n += len(res.rows) + len(res.errors)
                done.n_batches += 1
            writer.flush()  # one block, one commit: a driver killed later loses nothing of it
            written.add(k)
            if progress is not None:
                progress(n, sum(r.audio_seconds for r in payload["results"]))
    return done
