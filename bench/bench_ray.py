#!/usr/bin/env python3
"""The Ray engine against a local run on the same corpus and machine (alternating, so drift hits
both), and Ray's start-up.

    python bench/bench_ray.py [--corpus ../shared/corpora/ravdess] [--model DIR] [--repeat 2]

Prints each run's wall time, the ratio ray / local (the engine's overhead here: one machine,
so Ray adds scheduling and object transfers and gains no GPUs), and the seconds `ray.init` takes
to start a local cluster. The outputs are compared value for value: equal to a local run with
one torch thread (what each CPU actor uses), within float rounding of one with two.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args, out, env=None):
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "batchser", "run", *args, "--out", str(out), "-q"], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def compare(a, b) -> str:
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "compare_outputs.py"), str(a), str(b),
                        "--ignore-paths"], capture_output=True, text=True)
    return r.stdout.strip().splitlines()[-1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[2] / "shared/corpora/ravdess"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = a.model
    if model is None:
        model = str(tmp / "e2v")
        subprocess.run([sys.executable, "-m", "batchser", "make-test-model", model], check=True,
                       stdout=subprocess.DEVNULL)
    base = [a.corpus, "--audio-root", a.corpus, "--model", model]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ray; ray.init(num_cpus=2, include_dashboard=False); ray.shutdown()"],
                   check=True, capture_output=True)
    startup = time.perf_counter() - t0
    local, ray_ = [], []
    for k in range(a.repeat):
        local.append(run(base, tmp / f"local{k}"))
        ray_.append(run(base + ["--engine", "ray"], tmp / f"ray{k}"))
    import os

    run(base, tmp / "local1t", env={**os.environ, "OMP_NUM_THREADS": "1"})  # the actors' one torch thread
    print(f"local runs {[round(x, 1) for x in local]} s, ray engine runs {[round(x, 1) for x in ray_]} s: "
          f"ray / local = {min(ray_) / min(local):.2f}x (best of {a.repeat})")
    print(f"python + ray.init(num_cpus=2) + shutdown: {startup:.1f} s")
    print("ray vs local (2 torch threads):", compare(tmp / "local0", tmp / "ray0"))
    print("ray vs local with 1 torch thread, as each actor:", compare(tmp / "local1t", tmp / "ray0"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
