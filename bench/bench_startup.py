"""Start-up: seconds from process start until decoding begins, with a local emotion2vec model.

"Decoding begins" = the run's first progress line ("progress: 0/N"), printed once the model is
loaded and the loader is about to start. Compared, alternately, with the same command in a
process that imported all of funasr first (``import funasr``, what batchser did before it imported
only the modules emotion2vec needs). Median of ``--repeat`` runs each.

    python bench/bench_startup.py [--model DIR] [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(model: Path, out: Path, full_funasr: bool) -> float:
    args = ["run", str(REPO / "sample_scp" / "wav.scp"), "--out", str(out), "--model", str(model),
            "--num-workers", "0", "--progress-every", "0.001", "--overwrite"]
    pre = "import funasr; " if full_funasr else ""
    code = f"import sys; {pre}from batchser.cli import main; sys.argv = ['batchser'] + {args!r}; main()"
    t0 = time.time()
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         text=True)
    got = None
    for line in p.stderr:
        if line.startswith("progress: 0/"):
            got = time.time() - t0
    p.wait()
    if got is None or p.returncode not in (0, 1):
        raise SystemExit(f"run failed (exit {p.returncode})")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="a local emotion2vec dir (default: a tiny test model)")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            from batchser.testmodels import make_emotion2vec_dir

            model = make_emotion2vec_dir(tmp / "e2v", size="tiny", seed=1)
        lean, full = [], []
        for _ in range(a.repeat):  # alternate: this machine's speed drifts
            lean.append(one(model, tmp / "o1", False))
            full.append(one(model, tmp / "o2", True))
        ml, mf = statistics.median(lean), statistics.median(full)
        print(f"until decoding begins, median of {a.repeat}: {ml:.2f} s (only emotion2vec's funasr modules) vs "
              f"{mf:.2f} s (all of funasr imported): {mf / ml:.2f}x; runs: lean {[round(x, 2) for x in lean]}, "
              f"full {[round(x, 2) for x in full]}")


if __name__ == "__main__":
    main()
