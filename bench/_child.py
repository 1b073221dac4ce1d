"""Shared by the bench scripts: run one tool in a fresh process (so peak RSS is its own)."""
from __future__ import annotations

import json
import subprocess
import sys
import time


def run_child(script: str, argv: list) -> dict:
    """``python script *argv``; the child prints one JSON line last. Adds ``wall_s``."""
    t = time.time()
    p = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["wall_s"] = time.time() - t
    return r
