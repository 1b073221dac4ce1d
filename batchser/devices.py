"""Several devices in one run: one spawned process per device, fed shares through queues.

The parent splits each chunk of work into one share per device (about equal audio) and queues
share k for device k (at most two chunks ahead: memory stays bounded). Each process loads its own model and writes its own namespace of parts (``part-d<k>-NNNNN``),
so the processes never touch each other's files; the parent only counts progress.
"""
from __future__ import annotations

import queue
from dataclasses import asdict
from typing import Callable, Dict, Iterable, List, Optional

from .audio import probe_duration
from .config import RunSummary
from .records import Utterance
from .pipeline import Processed
from .policy import threads_per_device
from .shards import split


def _device_main(plan, out: str, device: str, work_q, ns: str, writer_args: Dict, with_ref: bool, counter,
                 result_q) -> None:
    """One device's shares (from ``work_q`` until None), in its own process (spawned: CUDA
    cannot be forked), with the run's plan (``batchser.plan.RunPlan``)."""
    from .procs import set_parent_death_signal, terminate_as_interrupt

    set_parent_death_signal()  # SIGTERM when the parent dies: the share stops, committing what it did
    try:
        import torch

        torch.set_num_threads(threads_per_device(len(plan.devices)))  # the cores shared among the device processes
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))  # kernels and caches on this process's GPU only
        from .pipeline import process
        from .plan import emotion_stage
        from .store import OutputWriter

        stages = plan.load_stages(device)
        feed = plan.feed(device, min_samples=emotion_stage(stages).backend.min_samples, with_ref=with_ref)
        writer = OutputWriter(out, namespace=ns, **writer_args)

        def progress(n, secs):
            with counter.get_lock():
                counter.value += n

        summary, n_batches = RunSummary(), 0
        try:
            with terminate_as_interrupt():
                while (utts := work_q.get()) is not None:
                    n_batches += process(stages, writer, utts, feed=feed, progress=progress, summary=summary).n_batches
        finally:
            try:
                writer.flush()  # commit what this share computed, whatever stopped it
            except OSError:
                pass
        result_q.put((ns, None, asdict(summary), n_batches))
    except BaseException as e:  # report, never hang the parent
        import traceback

        result_q.put((ns, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", None, 0))


def run_on_devices(plan, *, out: str, chunks: Iterable[List[Utterance]], writer_args: Dict, with_ref: bool,
                   on_progress: Optional[Callable[[int], None]] = None,
                   log: Callable[[str], None] = print) -> Processed:
    """Run ``chunks`` (lists of utterances to do) on the plan's devices at once; the returned
    summary adds up the devices' summaries."""
    import multiprocessing as mp

    devices = plan.devices
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    result_q = ctx.Queue()
    work_qs = [ctx.Queue(maxsize=2) for _ in devices]  # the parent reads at most two chunks ahead
    for q in work_qs:  # a killed device never reads its queue: exiting must not wait to hand it shares
        q.cancel_join_thread()
    procs = []
    log(f"running on {len(devices)} devices: {', '.join(devices)}")
    for k, dev in enumerate(devices):
        p = ctx.Process(target=_device_main, args=(plan, out, dev, work_qs[k], f"d{k}", writer_args, with_ref,
                                                   counter, result_q), daemon=False)
        p.start()
        procs.append(p)
    res = Processed(RunSummary(), 0, *plan.limits(devices[0]))
    seen = got = 0

    def report() -> None:
        nonlocal seen
        with counter.get_lock():
            v = counter.value
        if on_progress is not None and v > seen:
            on_progress(v - seen)
        seen = v

    def put(k: int, item) -> None:
        while procs[k].is_alive():  # a dead device's shares are left undone (the run stops, resumable)
            try:
                work_qs[k].put(item, timeout=0.5)
                return
            except queue.Full:
                report()

    for todo in chunks:
        for k, share in enumerate(split(todo, [u.utt_id for u in todo], [probe_duration(u) for u in todo],
                                        len(devices))):
            if share:
                put(k, share)
    for k in range(len(procs)):
        put(k, None)
    while got < len(procs):
        try:
            ns, err, summ, nb = result_q.get(timeout=0.5)
        except queue.Empty:
            report()
            if all(not p.is_alive() for p in procs) and result_q.empty():
                res.failures.append("a device process died without reporting (killed?)")
                break
            continue
        got += 1
        res.n_batches += nb
        if err is not None:
            res.failures.append(f"{ns}: {err}")
        else:
            res.summary.add(RunSummary(**summ))
    for p in procs:
        p.join()
    report()
    return res
