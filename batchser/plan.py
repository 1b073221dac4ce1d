"""One plan per run: the options of a :class:`RunConfig` resolved once (devices, dtype, feature
sets, loaded heads, the shard), and how to build the run's stages on a device.

The runner and every device process use the same :class:`RunPlan` (it is pickled into spawned
device processes); nothing after :func:`make_plan` parses an option again or changes the
caller's config.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Tuple

from .audio import TARGET_SR
from .config import RunConfig
from .loader import decoder_count, feature_spec, parse_feature_sets
from .pipeline import Feed
from .policy import batch_limits, parse_devices, resolve_dtype
from .scoring import (AsrStage, EmotionStage, FeaturesStage, HeadsStage, Stage, TimelineStage, fields_of,
                      settings_of)
from .shards import Shard, parse_shard
from .worker import MemoryBudget

Log = Callable[[str], None]


@dataclass
class RunPlan:
    cfg: RunConfig  # a copy of the caller's, with the canonical --features spelling
    devices: List[str]
    dtype: str  # resolved for devices[0]
    feature_sets: Tuple[str, ...]
    heads: List  # batchser.heads.LoadedHead, loaded once
    shard: Optional[Shard]

    def limits(self, device: str) -> Tuple[float, int]:
        """(padded seconds, utterances) per batch on ``device``."""
        return batch_limits(device, self.cfg.batch_seconds, self.cfg.max_batch_size)

    def num_decoders(self, device: Optional[str] = None) -> int:
        return decoder_count(self.cfg.num_workers, device or self.devices[0], len(self.devices))

    def feed(self, device: str, *, min_samples: int, with_ref: bool) -> Feed:
        """How ``device``'s utterances are decoded and batched."""
        c = self.cfg
        return Feed(*self.limits(device), min_samples=min_samples, features=self.feature_sets,
                    num_decoders=self.num_decoders(device), pipe_timeout=c.pipe_timeout,
                    pipe_max_bytes=int(c.pipe_max_mb * (1 << 20)), with_ref=with_ref)

    def load_stages(self, device: str, *, metadata_only: bool = False, log: Optional[Log] = None) -> List[Stage]:
        """The run's stages with their models loaded on ``device``. ``metadata_only``: the parent
        of a multi-device run, which needs the models' columns and settings only (CPU, float32);
        ``log``: say what is noteworthy (the parent does, once) and check the options against
        the models before anything runs."""
        from .models import load_backend

        c = self.cfg
        backend = load_backend(c.model, device="cpu" if metadata_only else device,
                               dtype="float32" if metadata_only else self.dtype, hub=c.hub, backend=c.backend,
                               fe_options=c.fe_options)
        if log is not None:
            check_backend(self, backend, log)
        budget = MemoryBudget()  # one per device: the emotion model's and its windows' out-of-memory lessons
        stages: List[Stage] = [EmotionStage(backend, frames=c.granularity == "frame", max_seconds=c.max_seconds,
                                            long_audio=c.long_audio, threshold=c.threshold, budget=budget,
                                            dtype=self.dtype, fe_options=c.fe_options)]
        if c.timeline is not None:
            bs, mb = self.limits(device)
            stages.append(TimelineStage(backend, c.timeline, batch_seconds=bs, max_batch=mb, budget=budget,
                                        threshold=c.threshold))
        if c.asr is not None:
            stages.append(AsrStage(load_recogniser(c, [device] * (2 if metadata_only else 1), log), c.asr,
                                   self.devices[0]))
        if self.feature_sets:
            stages.append(FeaturesStage(self.feature_sets))
        if self.heads:
            stages.append(HeadsStage(self.heads))
        return stages

    def settings(self, stages: List[Stage]) -> Dict:
        """What changes results (settings.json): the stages' settings and the run's own. Keys
        added later are left out at their default value, so older directories still resume."""
        c = self.cfg
        return {"timeline": None, **settings_of(stages), "granularity": c.granularity, "emb_dtype": c.emb_dtype,
                "npy_layout": c.npy_layout, "features": c.features,
                "vad": c.vad.to_dict() if c.vad is not None else None}

    def settled_without_models(self, old: Dict) -> bool:
        """Whether ``old`` (an OUT's settings.json) is what this run would write, told without
        loading any model (the weights' checksum from the file): the test a resume with nothing
        left to do passes to finish at once. Runs with --asr or --head always load their models."""
        c = self.cfg
        if c.asr is not None or self.heads or c.overwrite or c.retry_errors:
            return False
        from .models.resolve import locate, weights_sha256

        mid, path, _ = locate(c.model, c.hub)
        want = {"model": weights_sha256(str(path)) or mid, "dtype": self.dtype, "granularity": c.granularity,
                "emb_dtype": c.emb_dtype, "max_seconds": c.max_seconds, "long_audio": c.long_audio,
                "npy_layout": c.npy_layout, "features": c.features, "timeline": None,
                "vad": c.vad.to_dict() if c.vad is not None else None,
                "threshold": c.threshold, "fe_options": dict(sorted(c.fe_options.items())) if c.fe_options else None}
        if c.timeline is not None:
            want["timeline"] = c.timeline.to_list()
        if c.backend != "auto":
            want["backend"] = c.backend
        model_derived = {"labels", "backend", "head_kind"}  # the same weights give the same
        return all(old.get(k) == v for k, v in want.items()) and not set(old) - set(want) - model_derived

    def writer_args(self, stages: List[Stage], *, with_ref: bool) -> Dict:
        """The keywords of ``store.OutputWriter`` for this run (every device's writer the same)."""
        c = self.cfg
        predictions, annotations, windows = fields_of(stages)
        return dict(model_id=emotion_stage(stages).backend.info.id, predictions=predictions, annotations=annotations,
                    window_fields=windows, emb_dtype=c.emb_dtype, frames=c.granularity == "frame", with_ref=with_ref,
                    part_size=c.part_size, settings=self.settings(stages), npy_layout=c.npy_layout)

    def manifest_args(self, stages: List[Stage]) -> Dict:
        """What the manifest says of the models and devices (``store.manifest.run_manifest``;
        the runner adds the batches')."""
        b = emotion_stage(stages).backend
        asr = next((st.engine for st in stages if isinstance(st, AsrStage)), None)
        return dict(info=b.info, labels=b.labels, head_kind=b.head_kind, embed_dim=b.embed_dim, devices=self.devices,
                    dtype=self.dtype, num_decoders=self.num_decoders(), shard=self.shard,
                    asr_info=asr.info if asr is not None else None)


def load_recogniser(cfg: RunConfig, devices: List[str], log: Optional[Log] = None):
    """``--asr``'s engine for ``devices``: with several, the parent's copy for the metadata only,
    on the CPU in the CPU's own dtype (float16 is refused there); each device process loads its own."""
    from .asr import load_asr

    if len(devices) > 1:
        asr = load_asr(replace(cfg.asr, dtype="auto"), device="cpu", hub=cfg.hub)
    else:
        asr = load_asr(cfg.asr, device=devices[0], hub=cfg.hub)
    if log is not None and asr.info.test_model:
        log(f"note: {asr.info.path} is a random-weight TEST speech recogniser; its transcripts mean nothing")
    return asr


def emotion_stage(stages: List[Stage]) -> EmotionStage:
    return next(st for st in stages if isinstance(st, EmotionStage))


def make_plan(cfg: RunConfig) -> RunPlan:
    """Resolve ``cfg`` once. Raises ValueError for an option that cannot work (an unknown feature
    set, eGeMAPS without opensmile, a bad shard or device, a head that cannot be read)."""
    sets = parse_feature_sets(cfg.features)
    if "egemaps" in sets:  # opensmile missing: before anything runs
        from .egemaps import columns

        columns()
    shard = parse_shard(cfg.shard, cfg.num_shards, cfg.shard_index)
    devices = parse_devices(cfg.device)
    heads = []
    if cfg.heads:
        from .heads import load_heads

        heads = load_heads(cfg.heads)
    return RunPlan(cfg=replace(cfg, features=feature_spec(sets)), devices=devices,
                   dtype=resolve_dtype(cfg.dtype, devices[0]), feature_sets=sets, heads=heads, shard=shard)


def check_backend(plan: RunPlan, backend, log: Log) -> None:
    """The options that depend on the model, checked before anything runs."""
    c = plan.cfg
    if backend.info.test_model:
        log(f"note: {backend.info.path} is a random-weight TEST model; its labels mean nothing")
    if int(c.max_seconds * TARGET_SR) < 2 * backend.min_samples:
        raise ValueError(f"--max-seconds {c.max_seconds:g} is too short for this model "
                         f"(windows need at least {backend.min_samples / TARGET_SR:.3f} s)")
    if c.timeline is not None:
        check_timeline(c, backend)
    for h in plan.heads:  # a head trained on another model's embeddings is refused
        h.check(model_sha256=backend.info.sha256, dim=backend.embed_dim, model_id=backend.info.id)
    if c.threshold is not None and backend.head_kind != "multi_label":
        raise ValueError(f"--threshold is for multi-label heads (a sigmoid per class); {backend.info.id} has a "
                         f"{backend.head_kind.replace('_', '-')} head")


def check_timeline(cfg: RunConfig, backend) -> None:
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
