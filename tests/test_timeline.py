"""run --timeline: class scores of windows over time, each equal to the model on that cut alone."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from batchser.timeline import TimelineOptions, parse_timeline, windows
from conftest import speechlike, write_wav

SR = 16000


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def test_window_rule_covers_every_utterance_with_full_windows():
    o = TimelineOptions(2.0, 1.0)
    for n in (1, 400, 2 * SR, 2 * SR + 1, int(5.3 * SR), 10 * SR, int(7.77 * SR)):
        w = windows(n, o)
        assert w[0][0] == 0 and w[-1][1] == n  # the whole utterance is covered
        if n <= 2 * SR:
            assert w == [(0, n)]
            continue
        assert all(b - a == 2 * SR for a, b in w)  # every window WIN long, the tail one too
        starts = [a for a, _ in w]
        assert starts == sorted(set(starts))
        regular = starts[:-1] if (n - 2 * SR) % SR else starts
        assert regular == [k * SR for k in range(len(regular))]  # every HOP
    # hop longer than the window: gaps between windows, the tail window still ends at the end
    w = windows(10 * SR, TimelineOptions(1.0, 3.0))
    assert w == [(0, SR), (3 * SR, 4 * SR), (6 * SR, 7 * SR), (9 * SR, 10 * SR)]
    w = windows(int(10.5 * SR), TimelineOptions(1.0, 3.0))
    assert w[-1] == (int(9.5 * SR), int(10.5 * SR)) and len(w) == 5
    assert parse_timeline("2") == TimelineOptions(2.0, 2.0) and parse_timeline("2,0.5") == TimelineOptions(2.0, 0.5)
    assert parse_timeline((3, 1)) == TimelineOptions(3.0, 1.0)
    for bad in ("0,1", "2,-1", "a", "1,2,3", "nan", "inf,1"):
        with pytest.raises(ValueError):
            parse_timeline(bad)


@pytest.fixture
def segmented(tmp_path):
    """Two recordings, segments of mixed lengths (one shorter than a window), one plain file."""
    recs = {"recA": speechlike(int(14.3 * SR), 7), "recB": speechlike(int(6.1 * SR), 8)}
    d = tmp_path / "data"
    d.mkdir()
    paths = {r: write_wav(tmp_path / "wav" / f"{r}.wav", x) for r, x in recs.items()}
    (d / "wav.scp").write_text("".join(f"{r} {p}\n" for r, p in paths.items()))
    segs = [("recA-a", "recA", 0.50, 5.83), ("recA-b", "recA", 6.0, 7.2), ("recA-c", "recA", 7.5, 14.3),
            ("recB-a", "recB", 0.2, 6.1)]
    (d / "segments").write_text("".join(f"{u} {r} {a} {b}\n" for u, r, a, b in segs))
    (d / "utt2spk").write_text("".join(f"{u} spk_{r}\n" for u, r, _, _ in segs))
    return d, recs, segs


def test_each_window_equals_funasr_on_the_cut_alone(segmented, e2v_dir, funasr_model, tmp_path):
    d, recs, segs = segmented
    out = tmp_path / "o"
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--timeline", "2,1", "--num-workers", 0,
                         "--max-batch-size", 3, "-q")
    assert code == 0, text
    res = open_results(out)
    tl = res.timeline
    labels = res.manifest["model"]["labels"]
    assert res.manifest["timeline"]["win"] == 2.0 and res.manifest["timeline"]["hop"] == 1.0
    assert json.loads((out / "settings.json").read_text())["timeline"] == [2.0, 1.0]
    assert len(tl) == res.manifest["timeline"]["windows_this_run"]
    checked = 0
    for u, r, a, b in segs:
        mine = tl[tl.utt_id == u].sort_values("window")
        n = int(round(b * SR)) - int(round(a * SR))
        spans = windows(n, TimelineOptions(2.0, 1.0))
        assert mine.window.tolist() == list(range(len(spans)))
        assert (mine.rec_id == r).all() and (mine.spk == f"spk_{r}").all()
        np.testing.assert_allclose(mine.start, [a + s / SR for s, _ in spans], atol=1e-9)  # recording time
        np.testing.assert_allclose(mine.end, [a + e / SR for _, e in spans], atol=1e-9)
        seg = recs[r][int(round(a * SR)):int(round(b * SR))]
        for (s, e), (_, row) in zip(spans, mine.iterrows()):
            if row.window % 2 and row.window != len(spans) - 1:
                continue  # every other window and every tail window: enough, and the suite stays fast
            p = write_wav(tmp_path / "cut.wav", seg[s:e])
            ref = np.asarray(funasr_model.generate(str(p), granularity="utterance", extract_embedding=False)[0]["scores"])
            got = row[[f"score_{l}" for l in labels]].to_numpy(dtype=np.float64)
            np.testing.assert_allclose(got, ref, atol=2e-6, rtol=0, err_msg=f"{u} window {row.window}")
            assert row.label == labels[int(np.argmax(got))] and row.score == pytest.approx(got.max(), abs=1e-7)
            checked += 1
    assert checked >= 8
    # batch composition never changes a window: other batch sizes, windows batched differently
    out2 = tmp_path / "o2"
    code, _ = run_cli("run", d, "--out", out2, "--model", e2v_dir, "--timeline", "2,1", "--num-workers", 0,
                      "--batch-seconds", 9, "-q")
    assert code == 0
    a_ = tl.sort_values(["utt_id", "window"]).reset_index(drop=True)
    b_ = open_results(out2).timeline.sort_values(["utt_id", "window"]).reset_index(drop=True)
    cols = [f"score_{l}" for l in labels]
    np.testing.assert_allclose(a_[cols].to_numpy(), b_[cols].to_numpy(), atol=2e-6)
    # a plot of a recording draws the windows
    code, text = run_cli("plot", out, "--rec", "recA", "--png", tmp_path / "a.png")
    assert code == 0, text
    from PIL import Image

    with Image.open(tmp_path / "a.png") as im:
        assert (np.asarray(im.convert("L")) < 250).mean() > 0.05


def test_timeline_resumes_and_merges_without_losing_or_doubling_a_window(segmented, e2v_dir, tmp_path):
    d, _, segs = segmented
    out = tmp_path / "o"
    args = ["--model", e2v_dir, "--timeline", "2,1", "--num-workers", 0, "--part-size", 1, "--max-batch-size", 1, "-q"]
    assert run_cli("run", d, "--out", out, *args)[0] == 0
    full = open_results(out).timeline.sort_values(["utt_id", "window"]).reset_index(drop=True)
    assert sorted(full.utt_id.unique()) == sorted(u for u, *_ in segs)
    assert len(full) == len(full.drop_duplicates(["utt_id", "window"]))
    # a run killed after a timeline part was renamed but before its labels part: that part's
    # timeline (and embeddings) are on disk, its labels not
    parts = sorted((out / "labels").glob("part-*.parquet"))
    victim = parts[-1]
    victim_ids = open_results(out).labels.utt_id.tolist()
    victim.unlink()
    lost = set(victim_ids) - set(open_results(out).labels.utt_id)
    assert len(lost) == 1 and (out / "timeline" / victim.name).exists()
    assert set(open_results(out).timeline.utt_id) == set(victim_ids) - lost  # readers skip the orphan part
    code, text = run_cli("run", d, "--out", out, *args)
    assert code == 0, text
    again = open_results(out).timeline.sort_values(["utt_id", "window"]).reset_index(drop=True)
    assert len(again) == len(full) and len(again.drop_duplicates(["utt_id", "window"])) == len(full)
    cols = [c for c in full.columns if c.startswith("score_")]
    np.testing.assert_allclose(again[cols].to_numpy(), full[cols].to_numpy(), atol=2e-6)
    stems = {p.stem for p in (out / "labels").glob("part-*.parquet")}
    assert {p.stem for p in (out / "timeline").glob("part-*.parquet")} == stems  # the orphan was removed
    # another timeline is another result: a resume with it is refused
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--timeline", "3,1", "--num-workers", 0)
    assert code == 2 and "timeline" in text
    # shards + merge
    sh = tmp_path / "sh"
    for i in range(2):
        code, text = run_cli("run", d, "--out", sh, *args, "--shard", f"{i}/2")
        assert code == 0, text
    assert run_cli("merge", sh)[0] == 0
    merged = open_results(sh).timeline.sort_values(["utt_id", "window"]).reset_index(drop=True)
    assert merged[["utt_id", "window", "start", "end"]].equals(full[["utt_id", "window", "start", "end"]])
    np.testing.assert_allclose(merged[cols].to_numpy(), full[cols].to_numpy(), atol=2e-6)
    # --overwrite removes the timeline batchser wrote, and keeps a user's file there
    (sh / "timeline" / "notes.txt").write_text("mine")
    assert run_cli("run", d, "--out", sh, *args, "--overwrite")[0] == 0
    assert (sh / "timeline" / "notes.txt").read_text() == "mine"


def test_timeline_refusals(segmented, e2v_dir, e2v_nohead_dir, tmp_path):
    d, _, _ = segmented
    code, text = run_cli("run", d, "--out", tmp_path / "a", "--model", e2v_nohead_dir, "--timeline", "2,1")
    assert code == 2 and "no classifier head" in text
    code, text = run_cli("run", d, "--out", tmp_path / "b", "--model", e2v_dir, "--timeline", "20",
                         "--max-seconds", 10)
    assert code == 2 and "longer than this model takes" in text
    code, text = run_cli("run", d, "--out", tmp_path / "c", "--model", e2v_dir, "--timeline", "0,1")
    assert code == 2 and "--timeline" in text
    assert not (tmp_path / "c").exists()
    with pytest.raises(FileNotFoundError):
        open_results(tmp_path / "a")  # nothing was written for a refused run
    # a run without --timeline says so when its timeline is asked for
    code, _ = run_cli("run", d, "--out", tmp_path / "plain", "--model", e2v_dir, "--num-workers", 0, "-q")
    assert code == 0
    with pytest.raises(ValueError, match="--timeline"):
        open_results(tmp_path / "plain").timeline
