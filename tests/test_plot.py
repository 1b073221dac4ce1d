"""batchser plot: one recording's emotion over time."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner
from PIL import Image

from batchser.cli import main
from batchser.plot import _bins, clock, tick_step

LABELS = ["angry", "happy", "neutral", "sad"]


def _out(tmp_path, seconds: float, n: int):
    out = tmp_path / f"o{n}"
    (out / "labels").mkdir(parents=True)
    rng = np.random.default_rng(n)
    starts = np.sort(rng.uniform(0, seconds - 10, n))
    rows = []
    for i, s in enumerate(starts):
        sc = rng.dirichlet(np.ones(len(LABELS)))
        rows.append({"utt_id": f"r-{i}", "rec_id": "r", "spk": "r", "start": s, "end": s + 3.0, "duration": 3.0,
                     "label": LABELS[sc.argmax()], "score": sc.max(), **{f"score_{l}": v for l, v in zip(LABELS, sc)}})
    rows.append({**rows[0], "utt_id": "other-0", "rec_id": "other"})
    pd.DataFrame(rows).to_parquet(out / "labels" / "part-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"model": {"labels": LABELS}}))
    return out


def test_plot_one_size_for_a_minute_and_two_hours(tmp_path):
    sizes = []
    for seconds, n in ((60, 8), (7200, 2000)):
        out = _out(tmp_path, seconds, n)
        r = CliRunner().invoke(main, ["plot", str(out), "--rec", "r"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        png = out / "plots" / "r.png"
        with Image.open(png) as im:
            sizes.append(im.size)
            px = np.asarray(im.convert("L"))
        assert (px < 250).mean() > 0.1  # something is drawn
    assert sizes[0] == sizes[1] and sizes[0][0] < 2000  # one figure size, whatever the length
    r = CliRunner().invoke(main, ["plot", str(out), "--rec", "nope"])
    assert r.exit_code == 2 and "other" in r.output and "r" in r.output


def test_time_axis_and_bins():
    assert clock(65) == "1:05" and clock(3725) == "1:02:05" and clock(0) == "0:00"
    assert tick_step(60) == 10 and tick_step(7200) == 900 and tick_step(5) == 1
    sc = np.array([[1.0, 0.0], [0.0, 1.0]])
    a, b, m, w = _bins(np.array([0.0, 1.0]), np.array([1.0, 4.0]), sc, total=4.0, n=2)
    assert a.tolist() == [0.0, 2.0] and w == 2.0
    np.testing.assert_allclose(m, [[0.5, 0.5], [0.0, 1.0]])  # the first bin: half one, half the other
