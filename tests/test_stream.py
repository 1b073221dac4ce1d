"""Scale: the reader streams the corpus in chunks, memory does not grow with it, and shard tasks
never look at another share's audio."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from batchser.idtable import IdTable, SideTable
from batchser.kaldi import KaldiStream
from batchser.shards import Shard, contiguous
from conftest import speechlike, write_wav


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


# -- compact id tables -------------------------------------------------------------------
def test_id_table_membership_values_and_first_of_duplicates():
    ids = [f"utt{i}" for i in range(5000)] + ["utt7"]
    t = IdTable.of(ids)
    assert len(t) == 5000 and t.n_duplicates == 1
    probe = ["utt0", "utt4999", "utt5000", "", "utt7 "]
    assert t.contains(probe).tolist() == [True, True, False, False, False]
    from batchser.idtable import hashes

    h1, h2 = hashes(["a", "b", "a"])
    vt = IdTable(h1, h2, np.array([10, 20, 30]))
    assert vt.get(["a", "b", "c"]) == [10, 20, None]  # the first line of "a" wins


def test_id_table_tells_apart_ids_whose_first_hashes_collide():
    """A 64-bit twin (same first hash) must not answer for another id: the second hash decides."""
    h1 = np.array([5, 5, 5, 9], dtype=np.int64)
    h2 = np.array([1, 2, 3, 4], dtype=np.int64)
    t = IdTable(h1, h2, np.array([100, 200, 300, 400]))
    import batchser.idtable as idt

    real = idt.hashes
    fake = {"x": (5, 3), "y": (5, 7), "z": (9, 4), "w": (5, 1)}
    idt.hashes = lambda ids: (np.array([fake[i][0] for i in ids]), np.array([fake[i][1] for i in ids]))
    try:
        assert t.get(["x", "y", "z", "w"]) == [300, None, 400, 100]
    finally:
        idt.hashes = real


def test_side_table_keeps_first_line_and_names_bad_ones(tmp_path):
    p = tmp_path / "utt2spk"
    p.write_text("a s1\nb s2\nbad\na s3\n")
    warnings = []
    from batchser.corpus import table_lines

    t = SideTable(p, kind="str", warn=lambda u, m: warnings.append(m), lines=table_lines)
    assert t.get(["a", "b", "c"]) == ["s1", "s2", None]
    assert any("utt2spk:3: malformed" in w for w in warnings) and any("utt2spk:4: duplicate id 'a'" in w for w in warnings)


# -- shares ---------------------------------------------------------------------------
def test_contiguous_shares_are_runs_of_about_equal_audio():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 20, 1000)
    for n in (1, 3, 7, 100):
        s = contiguous(d, n)
        assert (np.diff(s) >= 0).all() and s.min() == 0 and s.max() == n - 1  # contiguous, all used
        per = np.bincount(s, weights=d, minlength=n)
        assert np.abs(per - d.sum() / n).max() <= d.max()  # within one unit of equal
    assert contiguous(np.zeros(5), 2).tolist() == [0, 0, 0, 1, 1]  # nothing known: by count
    assert contiguous(np.ones(2), 5).tolist() in ([0, 2], [1, 3], [0, 3], [1, 4])  # more shares than units


# -- streaming reader ---------------------------------------------------------------------
def _big_segments_dir(tmp, n_segments: int, n_recs: int = 50):
    """Half the recordings exist (their segments are utterances), half do not (error rows)."""
    d = tmp / "big"
    d.mkdir(parents=True)
    real = write_wav(tmp / "one.wav", speechlike(1600, 0))
    (d / "wav.scp").write_text("".join(f"rec{r:04d} {real if r % 2 else '/nonexistent/x.wav'}\n" for r in range(n_recs)))
    per = n_segments // n_recs
    with open(d / "segments", "w") as f, open(d / "utt2spk", "w") as g:
        for r in range(n_recs):
            for k in range(per):
                uid = f"rec{r:04d}-{k * 100:07d}-{k * 100 + 90:07d}"
                f.write(f"{uid} rec{r:04d} {k:.2f} {k + 0.9:.2f}\n")
                g.write(f"{uid} spk{r % 7}\n")
    return d


def _stream_peak(d, size: int):
    tracemalloc.start()
    st = KaldiStream(d)
    seen = {"utterances": 0, "errors": 0}
    biggest = 0
    for c in st.chunks(size):
        seen["utterances"] += len(c.utterances)
        seen["errors"] += len(c.errors)
        biggest = max(biggest, len(c.utterances) + len(c.errors))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, seen, biggest


def test_reader_memory_does_not_grow_with_the_corpus(tmp_path):
    """Streaming in chunks holds about a chunk of utterances, not the corpus: five times the
    segments cost under 40 more bytes per extra segment at the peak (ids screened for duplicates,
    the compact utt2spk); the whole-corpus reader held ~600 bytes per segment."""
    peaks = {}
    for n in (40_000, 200_000):
        d = _big_segments_dir(tmp_path / str(n), n)
        peak, seen, biggest = _stream_peak(d, 5000)
        assert seen == {"utterances": n // 2, "errors": n // 2} and biggest <= 2 * 5000
        peaks[n] = peak
    growth = (peaks[200_000] - peaks[40_000]) / 160_000
    assert growth < 40, f"{growth:.0f} bytes per extra segment (peaks {peaks})"


def test_chunked_run_equals_a_run_in_one_chunk(e2v_dir, tmp_path):
    """Chunks of 3 utterances: the same rows, embeddings and error rows as one chunk, each input
    id in exactly one table, duplicates decided by their first line."""
    d = tmp_path / "d"
    d.mkdir()
    lines, segs = [], []
    for r in range(4):
        p = write_wav(tmp_path / f"r{r}.wav", speechlike(int(16000 * (2 + r * 0.7)), r))
        lines.append(f"r{r} {p}\n")
        for k in range(3):
            segs.append(f"r{r}-{k} r{r} {k * 0.6:.2f} {k * 0.6 + 0.5 + 0.05 * r:.2f}\n")
    lines.append("gone /no/such/file.wav\n")
    segs += ["r0-1 r1 0.0 0.5\n",  # a duplicate id: ignored, the first line decides
             "bad r0 0.9 0.2\n", "orphan gone 0 1\n", "nowhere rX 0 1\n", "short r2 0\n"]
    (d / "wav.scp").write_text("".join(lines))
    (d / "segments").write_text("".join(segs))
    outs = {}
    for size in (3, 1000):
        out = tmp_path / f"o{size}"
        code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--chunk-size", size, "--num-workers", "0")
        assert code == 1, msg
        assert "duplicate utterance id 'r0-1'" in msg
        outs[size] = open_results(out)
    a, b = outs[3], outs[1000]
    la, lb = a.labels.sort_values("utt_id"), b.labels.sort_values("utt_id")
    assert la.utt_id.tolist() == lb.utt_id.tolist() and len(la) == 12
    assert la[la.utt_id == "r0-1"].rec_id.item() == "r0"
    ea, eb = a.embeddings(la.utt_id.tolist()), b.embeddings(la.utt_id.tolist())
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-5)
    assert sorted(a.errors.utt_id) == sorted(b.errors.utt_id) == ["bad", "nowhere", "orphan", "short"]
    assert not set(a.errors.utt_id) & set(a.labels.utt_id)


def test_each_id_in_exactly_one_shard_with_bad_lines_and_duplicates(e2v_dir, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    lines = []
    for i in range(9):
        p = write_wav(tmp_path / f"u{i}.wav", speechlike(int(16000 * (0.4 + 0.1 * i)), i))
        lines.append(f"u{i} {p}\n")
    lines += [f"u3 {tmp_path / 'u4.wav'}\n",  # duplicate recording id: the first line decides
              "lonely\n", "missing /no/such.wav\n", "outpipe | cat\n"]
    (d / "wav.scp").write_text("".join(lines))
    (d / "utt2dur").write_text("".join(f"u{i} {0.4 + 0.1 * i:.2f}\n" for i in range(9)))
    out = tmp_path / "o"
    ok, err = [], []
    for i in range(3):
        code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/3", "--num-workers", "0")
        assert code in (0, 1), msg
        r = open_results(out / "shards" / f"shard-{i:04d}-of-0003")
        ok += list(r.labels.utt_id)
        err += list(r.errors.utt_id)
    assert sorted(ok) == [f"u{i}" for i in range(9)]
    assert sorted(err) == ["lonely", "missing", "outpipe"]
    assert run_cli("merge", out)[0] == 1  # as run: errors in the merged table

    m = open_results(out)
    assert len(m.labels) == 9 and len(m.errors) == 3


def test_a_shard_task_succeeds_when_other_shares_files_are_gone(e2v_dir, tmp_path, make_corpus):
    """Other shards' audio unreadable (deleted): a task neither opens nor even looks them up, so
    it finishes with its own share and no error rows."""
    lens = {f"u{i:02d}": 0.3 + 0.1 * (i % 5) for i in range(15)}
    d = make_corpus(lens)
    assert run_cli("prepare", d, "--nj", "1")[0] == 0
    st = KaldiStream(d, shard=Shard(1, 3))
    mine = {u.utt_id for c in st.chunks() for u in c.utterances}
    assert 3 <= len(mine) <= 7
    for uid in set(lens) - mine:
        (d.parent / "wav" / f"{uid}.wav").unlink()
    out = tmp_path / "o"
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", "1/3", "--num-workers", "0")
    assert code == 0, msg
    r = open_results(out / "shards" / "shard-0001-of-0003")
    assert set(r.labels.utt_id) == mine and len(r.errors) == 0


def test_durations_read_in_step_or_out_of_order_give_the_same_shares(tmp_path):
    """utt2dur sorted like wav.scp is read in step (no table); shuffled, with a gap and a bad line,
    it falls back to a table: the same durations and the same split either way."""
    real = write_wav(tmp_path / "one.wav", speechlike(1600, 0))
    ids = [f"u{i:04d}" for i in range(300)]
    durs = {u: 0.5 + (i * 7919 % 97) / 10 for i, u in enumerate(ids)}
    got = {}
    for order in ("same", "shuffled"):
        d = tmp_path / order
        d.mkdir()
        (d / "wav.scp").write_text("".join(f"{u} {real}\n" for u in ids))
        keys = [u for u in ids if u != "u0100"]  # one utterance without a duration
        if order == "shuffled":
            keys = keys[::-1]
        (d / "utt2dur").write_text("".join(f"{u} {durs[u]:.2f}\n" for u in keys) + "junk\n")
        shares = {}
        for k in range(3):
            st = KaldiStream(d, shard=Shard(k, 3))
            for c in st.chunks(50):
                shares.update({u.utt_id: (k, u.duration) for u in c.utterances})
        got[order] = shares
        assert shares["u0100"][1] is None and shares["u0000"][1] == pytest.approx(durs["u0000"], abs=1e-3)
        assert any("utt2dur:300: malformed" in w.message for w in st.warnings)
    assert got["same"] == got["shuffled"] and len(got["same"]) == 300
