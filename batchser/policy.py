"""Device, dtype and batch-size policy: the defaults per device and what each back-end refuses.

One place for the rules, so the CLI, the runner and the back-ends cannot disagree.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

# (batch_seconds, max_batch_size) per device type. On a GPU big batches keep it busy; on a CPU
# batching gains no arithmetic speed, and big batches only cost memory bandwidth (measured on 2
# cores with emotion2vec+ base: batches of 16 x 4 s ran 25% slower than batches of 1-8).
DEFAULT_BATCH = {"cuda": (200.0, 64), "cpu": (32.0, 8)}

DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_device(device: str) -> str:
    """'auto' -> cuda:0 when available, else cpu; 'cuda' -> 'cuda:0'; a device this machine does
    not have is refused here, in the parent, with a message (not inside a device process)."""
    import torch

    device = device.strip()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not m:
        raise ValueError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N, or a comma-separated list")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    index = int(m.group(1) or 0)
    n = torch.cuda.device_count()
    if index >= n:
        raise ValueError(f"--device cuda:{index}: this machine has {n} CUDA devices (cuda:0..cuda:{n - 1})")
    return f"cuda:{index}"


def parse_devices(spec: str) -> List[str]:
    """'auto' | 'cpu' | 'cuda' | 'cuda:0,cuda:1' -> resolved device list (each GPU at most once)."""
    devs = [resolve_device(d) for d in spec.split(",") if d.strip()]
    if not devs:
        raise ValueError("--device: no device given")
    gpus = [d for d in devs if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"--device lists a device twice: {spec} (cuda means cuda:0)")
    return devs


def threads_per_device(n_devices: int, cores: Optional[int] = None) -> int:
    """CPU threads for each of ``n_devices`` device processes: the cores shared, at least one."""
    import os

    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, n_devices))


def check_dtype(dtype: str, device: str, backend: Optional[str] = None) -> None:
    """Refuse a dtype the device (or the back-end, when known) cannot run."""
    on_cpu = device.startswith("cpu")
    if dtype == "float16" and on_cpu:
        raise ValueError("--dtype float16 needs a GPU; use float32 or bfloat16 on the CPU")
    if dtype == "int8":
        if not on_cpu:
            raise ValueError("--dtype int8 runs on the CPU only; on a GPU use bfloat16")
        if backend not in (None, "emotion2vec"):
            raise ValueError("--dtype int8 is implemented for emotion2vec models only; use float32 on the CPU")


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' -> bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU; aliases spelt out."""
    import torch

    dtype = DTYPE_ALIASES.get(dtype, dtype)
    if dtype != "auto":
        check_dtype(dtype, device)
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def batch_limits(device: str, batch_seconds: Optional[float], max_batch_size: Optional[int]) -> Tuple[float, int]:
    """(padded seconds per batch, utterances per batch): the user's values, else the device's defaults."""
    dflt = DEFAULT_BATCH["cuda" if device.startswith("cuda") else "cpu"]
    return batch_seconds or dflt[0], max_batch_size or dflt[1]
