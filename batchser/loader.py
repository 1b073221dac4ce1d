"""The loader: decoder processes turn utterances into 16 kHz waveforms, batch by batch.

Decoding (and, with ``features``, the prosody features) runs in a torch DataLoader's worker
processes, called *decoders* here, with bounded prefetch, while the model works on the previous
batch. Recordings that several segments share and that cannot be seeked (pipes, ark entries)
are decoded once beforehand into a cache directory.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .audio import PIPE_MAX_BYTES, AudioError, cache_recording, decode_utterance
from .records import AudioSource, Utterance
from .procs import child_init

FEATURE_SETS = ("prosody", "egemaps")  # --features: interpretable columns computed by the decoders


def parse_feature_sets(spec) -> Tuple[str, ...]:
    """``"prosody"``, ``"egemaps"``, ``"prosody,egemaps"`` (or a sequence) -> the sets in
    FEATURE_SETS order; None/"" -> (). Raises ValueError for an unknown set."""
    if not spec:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = {str(i).strip() for i in items if str(i).strip()}
    bad = sorted(names - set(FEATURE_SETS))
    if bad:
        raise ValueError(f"--features {','.join(bad)}: unknown feature set (choose from {', '.join(FEATURE_SETS)}, "
                         "or several joined by ',')")
    return tuple(s for s in FEATURE_SETS if s in names)


def feature_spec(sets: Sequence[str]) -> Optional[str]:
    """The canonical ``--features`` value of ``sets`` (what settings.json records)."""
    return ",".join(parse_feature_sets(list(sets))) or None


def default_decoders(device: str = "cpu", n_devices: int = 1) -> int:
    """Decoder processes per device process when ``--num-workers`` is -1.

    A CPU run shares its cores with the model: cores - 1, at most 8 (decoding WAV runs at
    ~1000x real time per decoder, far ahead of a CPU model). A GPU waits for audio unless every
    core decodes (20,000x real time is ~20 cores at ~1000x each): all cores but one per device
    process, uncapped.
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.startswith("cuda"):
        return max(0, (n - n_devices) // max(1, n_devices))
    return max(0, min(8, n - 1))


def decoder_count(requested: int, device: str = "cpu", n_devices: int = 1) -> int:
    """``--num-workers``: -1 means :func:`default_decoders`; 0 decodes in the main process."""
    return default_decoders(device, n_devices) if requested < 0 else requested


def _message(u: Utterance, e: Exception) -> str:
    return f"{u.utt_id} ({u.where}): {e}" if isinstance(e, AudioError) else f"{u.utt_id} ({u.where}): {type(e).__name__}: {e}"


class Item(NamedTuple):
    """One decoded utterance as a decoder hands it over."""

    index: int  # into the utterance list
    wave: Optional[np.ndarray]  # 16 kHz mono float32, None on error (a torch tensor in shared
    # memory while it crosses from a decoder process; make_loader hands numpy on)
    error: Optional[str] = None  # why it failed (names utterance and file:line)
    features: Optional[Dict[str, float]] = None  # prosody columns, when asked for
    warning: Optional[str] = None  # decoded, but something to tell (a segment cut short)
    cut_short: bool = False  # the segment ended past its recording: its end is the recording's


class DecodeDataset:
    """Map-style dataset: index -> :class:`Item`.

    Never raises for a bad utterance: its error message (naming utterance and file:line) is
    returned instead, so one bad file never stops a run.
    """

    def __init__(self, utts: Sequence[Utterance], *, pipe_timeout: float, min_samples: int,
                 features: Sequence[str] = (),
                 pipe_max_bytes: int = PIPE_MAX_BYTES, shared_memory: bool = False):
        self.utts, self.pipe_timeout, self.min_samples = utts, pipe_timeout, min_samples
        # a feature-set tuple; a bool (the older form) means prosody or nothing
        self.features = ("prosody",) if features is True else tuple(features or ())
        self.pipe_max_bytes = pipe_max_bytes
        self.shared_memory = shared_memory

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> Item:
        u = self.utts[i]
        try:
            d = decode_utterance(u, pipe_timeout=self.pipe_timeout, min_samples=self.min_samples,
                                 pipe_max_bytes=self.pipe_max_bytes)
        except Exception as e:  # a decoder bug must not stop the run either
            return Item(i, None, _message(u, e))
        feats = None
        for name in self.features:
            try:
                if name == "prosody":
                    from .prosody import prosody as compute
                else:
                    from .egemaps import egemaps as compute
                feats = {**(feats or {}), **compute(d.wave)}
            except Exception as e:
                return Item(i, None, f"{u.utt_id} ({u.where}): {name} features failed: {type(e).__name__}: {e}")
        wave = d.wave
        if self.shared_memory:  # torch sends tensors between processes through shared memory, not a pipe
            import torch

            wave = torch.from_numpy(wave)
        return Item(i, wave, None, feats, d.warning, d.cut_short)


def _identity(batch):
    return batch


class _Batches:
    """The DataLoader's batches with waveforms back as numpy arrays (views of the shared memory)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield [it._replace(wave=it.wave.numpy()) if it.wave is not None and not isinstance(it.wave, np.ndarray)
                   else it for it in batch]


def make_loader(utts: Sequence[Utterance], batches: List[List[int]], *, pipe_timeout: float, min_samples: int,
                features: Sequence[str], num_decoders: int, pipe_max_bytes: int = PIPE_MAX_BYTES):
    """An iterable of batches, each a list of :class:`Item`, in ``batches`` order.

    Decoders die with their parent and take their pipe commands with them (``procs.child_init``).
    """
    import torch

    return _Batches(torch.utils.data.DataLoader(
        DecodeDataset(utts, pipe_timeout=pipe_timeout, min_samples=min_samples, features=features,
                      pipe_max_bytes=pipe_max_bytes, shared_memory=num_decoders > 0),
        batch_sampler=batches, num_workers=num_decoders, collate_fn=_identity,
        prefetch_factor=2 if num_decoders > 0 else None, worker_init_fn=child_init if num_decoders > 0 else None,
    ))


def _cache_one(args) -> Tuple[Optional[str], Optional[str]]:
    src, dest, timeout, max_bytes = args
    try:
        return cache_recording(src, dest, timeout, max_bytes), None
    except Exception as e:
        return None, str(e) if isinstance(e, AudioError) else f"{type(e).__name__}: {e}"


def cache_shared_recordings(utts: List[Utterance], cache: Path, *, pipe_timeout: float, num_decoders: int,
                            pipe_max_bytes: int = PIPE_MAX_BYTES) -> Tuple[List[Utterance], List[Tuple[Utterance, str]], bool]:
    """Decode each pipe/ark recording that several segments share once, into ``cache``.

    Returns (the utterances that can go on, their segments' sources switched to the cached file;
    ``(utterance, message)`` for segments whose recording failed to decode; whether ``cache``
    was created and must be removed after the run).
    """
    groups: Dict[AudioSource, List[int]] = {}
    for i, u in enumerate(utts):
        if u.source.kind in ("pipe", "ark", "url") and (u.start or u.end is not None):
            groups.setdefault(u.source, []).append(i)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return list(utts), [], False
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(src, str(cache / f"rec{n:07d}.wav"), pipe_timeout, pipe_max_bytes) for n, src in enumerate(groups)]
    if num_decoders > 0:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(num_decoders, initializer=child_init) as pool:
            done = pool.map(_cache_one, jobs, chunksize=1)
    else:
        done = [_cache_one(j) for j in jobs]
    out = list(utts)
    bad = []
    for (src, *_), (path, err) in zip(jobs, done):
        for i in groups[src]:
            u = utts[i]
            if path is None:
                bad.append((u, f"{u.utt_id} ({u.where}): recording {u.rec_id}: {err}"))
            else:
                out[i] = replace(u, source=AudioSource("file", path, shown=src.name))
    failed = {u.utt_id for u, _ in bad}
    return [u for u in out if u.utt_id not in failed], bad, True
