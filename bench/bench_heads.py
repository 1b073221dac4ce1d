"""train-head's cost: cross-validation plus the final head on synthetic embeddings of a
realistic size (``--n`` utterances, ``--dim`` (768: emotion2vec+ base), 9 classes, ``--speakers``
speakers: EmoBox's rule picks the folds), on this machine's CPU (or ``--device cuda``).
Prints the seconds per head kind and the cross-validated UA (the clusters are separable).

    python bench/bench_heads.py --n 10000
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--speakers", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    from batchser.heads import cross_validate

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 0.06, (9, a.dim))  # overlapping classes: UA well below 1
    y = rng.integers(0, 9, a.n)
    x = (centres[y] + rng.normal(0, 1.0, (a.n, a.dim))).astype(np.float32)
    labels = [f"c{i}" for i in y]
    spk = [f"s{i % a.speakers}" for i in range(a.n)]
    for kind in ("linear", "mlp"):
        t = time.perf_counter()
        r = cross_validate(x, labels, spk, kind=kind, folds="auto", seed=0, device=a.device)
        dt = time.perf_counter() - t
        print(f"{kind}: {len(r.folds)} folds + final head on {a.n} x {a.dim}: {dt:.1f} s; "
              f"UA {r.summary['UA']['mean']:.3f} +- {r.summary['UA']['std']:.3f} ({r.fold_rule})")


if __name__ == "__main__":
    main()
