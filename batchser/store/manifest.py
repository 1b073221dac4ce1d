"""manifest.json (what ran) of an output directory; settings.json's contents come from the run's
plan and stages (``batchser.plan.RunPlan.settings``)."""
from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional


def versions() -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("batchser", "torch", "funasr", "transformers", "numpy", "pyarrow", "soundfile", "soxr"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def run_manifest(*, cfg, info, labels: List[str], head_kind: str, embed_dim: Optional[int], devices: List[str], dtype: str,
                 summary, status: str, corpus, warnings: List[str], warnings_total: int, totals: Dict[str, int],
                 n_batches: int, batch_seconds, max_batch_size, num_decoders: int, failures: List[str], shard,
                 asr_info=None) -> Dict:
    """The manifest of one run (or one shard's run) into an output directory.

    ``status``: complete | interrupted (a signal) | stopped (a write failed, a device died).
    ``input``: absolute paths of what was read, so ``eval`` finds the references from anywhere.
    """
    s = summary
    v = versions()
    return {
        "batchser_version": v.get("batchser"),
        "status": status,
        "command": cfg.argv,
        "config": asdict(cfg),
        "input": {"path": str(Path(cfg.input).resolve()), "data_dir": str(Path(corpus.data_dir).resolve()),
                  "wav_scp": str(Path(corpus.wav_scp).resolve())},
        "model": {"id": info.id, "path": info.path, "backend": info.backend, "revision": info.revision,
                  "weights_sha256": info.sha256, "test_model": info.test_model,
                  "labels": labels, "head_kind": head_kind, "threshold": getattr(cfg, "threshold", None),
                  "fe_options": getattr(cfg, "fe_options", None) or {},
                  "embedding_dim": embed_dim},
        "versions": v,
        "device": ",".join(devices), "dtype": dtype,
        "device_name": device_name(devices[0]),
        "counts": {"input": s.n_input, "ok_this_run": s.n_ok, "errors_this_run": s.n_errors,
                   "skipped_already_done": s.n_skipped, "input_in_errors": s.n_failed_total, **totals},
        "warnings_total": warnings_total, "warnings": warnings,
        "audio_hours": s.audio_seconds / 3600.0,
        "wall_seconds": s.wall_seconds,
        "x_real_time": s.audio_seconds / s.wall_seconds if s.wall_seconds else None,
        "utterances_per_second": s.n_ok / s.wall_seconds if s.wall_seconds else None,
        "padding_efficiency": s.padding_efficiency,
        "time_split_seconds": {"waiting_for_audio": s.loader_wait_seconds, "model": s.model_seconds,
                               "writing": s.write_seconds, "of_model_asr": s.asr_seconds},
        "asr": ({"id": asr_info.id, "path": asr_info.path, "engine": asr_info.engine, "weights_sha256": asr_info.sha256,
                 "test_model": asr_info.test_model, "multilingual": asr_info.multilingual,
                 "options": asdict(cfg.asr), "dtype": cfg.asr.settings(asr_info.engine, devices[0])["dtype"],
                 "seconds_this_run": s.asr_seconds} if asr_info is not None else None),
        "max_seconds": cfg.max_seconds, "utterances_in_windows": s.n_windowed,
        "timeline": ({"win": cfg.timeline.win, "hop": cfg.timeline.hop, "windows_this_run": s.n_timeline_windows}
                     if getattr(cfg, "timeline", None) is not None else None),
        "num_batches": n_batches, "num_workers": num_decoders,
        "oom_backoffs": s.oom_backoffs,
        "batch_seconds": batch_seconds, "max_batch_size": max_batch_size,
        "device_failures": failures,
        "heads": [str(Path(h).resolve()) for h in getattr(cfg, "heads", None) or []],
        "shard": {"index": shard.index, "count": shard.count} if shard else None,
    }
