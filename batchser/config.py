"""What a run is asked to do (:class:`RunConfig`) and what it did (:class:`RunSummary`)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional


@dataclass
class RunConfig:
    """The options of ``batchser run`` (the CLI builds one; ``batchser.runner.run`` takes it)."""

    input: str
    out: str
    model: str = "emotion2vec_plus_base"
    hub: str = "auto"
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    batch_seconds: Optional[float] = None  # None: per device (policy.DEFAULT_BATCH)
    max_batch_size: Optional[int] = None
    num_workers: int = -1  # decoder processes (-1: loader.default_decoders())
    granularity: str = "utterance"
    emb_dtype: str = "float32"
    npy_layout: str = "parts"
    audio_root: Optional[str] = None
    extensions: Optional[str] = None  # a folder input: "wav,flac" (default: inputs.AUDIO_EXTENSIONS)
    spk_from_folder: bool = False  # a folder input: the first-level subfolder is the speaker
    allow_pipes: bool = True
    pipe_timeout: float = 300.0
    pipe_max_mb: float = 2048.0  # a pipe command writing more is killed (its output is held in memory)
    max_seconds: float = 600.0
    long_audio: str = "window"  # or "truncate"
    features: Optional[str] = None  # "prosody": interpretable columns beside each prediction
    part_size: int = 2000
    vad: Optional[object] = None  # batchser.vad.VadOptions: segment recordings first (run --vad)
    fe_options: Optional[Dict[str, Any]] = None  # --fe-option: keywords for every feature-extractor call
    heads: List[str] = field(default_factory=list)  # --head DIR: trained heads applied to each embedding
    threshold: Optional[float] = None  # multi-label heads: the classes scoring at least this are the label
    timeline: Optional[object] = None  # batchser.timeline.TimelineOptions: scores of windows over time
    asr: Optional[object] = None  # batchser.asr.AsrOptions: a transcript beside every prediction (--asr)
    chunk_size: int = 100_000  # utterances read, sorted by length and bucketed together (memory ~1 KB each)
    shard: Optional[str] = None  # "I/N" or "auto" (array-job environment)
    num_shards: Optional[int] = None
    shard_index: Optional[int] = None
    engine: str = "local"  # or "ray": decode in Ray tasks, score in a Ray actor pool (batchser.ray)
    ray_address: Optional[str] = None  # --ray-address: "auto", HOST:PORT, or None (a local cluster)
    workers: Optional[int] = None  # --workers: scoring actors (default: one per GPU, or the CPUs less one)
    gpus_per_worker: float = 0.0  # --gpus-per-worker
    overwrite: bool = False
    retry_errors: bool = False
    progress: bool = True
    progress_every: float = 30.0  # seconds between progress lines when stderr is not a terminal (0: none)
    log_file: Optional[str] = None  # --log-file: progress lines go there too while a terminal shows the bar
    argv: List[str] = field(default_factory=list)


class RunStopped(RuntimeError):
    """The run stopped unfinished (disk full, read-only output, the model failing on a batch, a
    device process dying); what was committed is kept and the same command resumes it (exit 4)."""


@dataclass
class RunSummary:
    n_input: int = 0
    n_ok: int = 0
    n_errors: int = 0
    n_skipped: int = 0  # committed by an earlier run
    n_windowed: int = 0  # longer than max_seconds: run in windows
    n_timeline_windows: int = 0  # --timeline: window rows written
    audio_seconds: float = 0.0
    padded_seconds: float = 0.0
    wall_seconds: float = 0.0
    # where the processing loop's time went (summed over devices): waiting for decoded audio (a
    # loader too slow for the model shows here), the model (host-to-device copy, forward, results
    # back on the host) and writing outputs
    loader_wait_seconds: float = 0.0
    model_seconds: float = 0.0
    write_seconds: float = 0.0
    asr_seconds: float = 0.0  # --asr: the part of model_seconds spent transcribing
    warnings: List[str] = field(default_factory=list)  # found while decoding (the reader's are the corpus's)
    n_failed_total: int = 0  # input utterances in errors/ after the run, this run's and earlier runs'
    n_read_warnings: int = 0  # the reader's warnings (bad side-table lines, ignored duplicates, ...)
    oom_backoffs: List[dict] = field(default_factory=list)  # each time out-of-memory lowered the batch budget
    out_dir: Optional[str] = None  # where this run wrote (a shard's own directory with --shard)
    shard: Optional[str] = None  # shard-IIII-of-NNNN, or None

    @property
    def padding_efficiency(self) -> Optional[float]:
        return self.audio_seconds / self.padded_seconds if self.padded_seconds else None

    def add(self, other: "RunSummary") -> None:
        """Add the counts and times of ``other`` (one device's share) to these."""
        for f in fields(self):
            if f.name not in ("n_input", "n_skipped", "wall_seconds", "n_failed_total", "n_read_warnings", "out_dir", "shard"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
