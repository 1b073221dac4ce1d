"""Writer, resume and open_results: whole parts only, nothing lost, nothing twice."""
from __future__ import annotations

import json

import numpy as np
import pytest

from batchser import open_results
from batchser.store import OutputWriter

LABELS = ["angry", "happy"]


def rows(ids):
    return [{"utt_id": u, "rec_id": u, "spk": None, "start": 0.0, "end": 1.0, "duration": 1.0,
             "label": "happy", "score": 0.7, "score_angry": 0.3, "score_happy": 0.7} for u in ids]


def test_parts_rows_and_embeddings_aligned(tmp_path):
    w = OutputWriter(tmp_path, LABELS, "m", part_size=3)
    ids = [f"u{i}" for i in range(7)]
    emb = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    for i in range(7):
        w.add(rows([ids[i]]), emb[i : i + 1])
    w.add_error("bad1", "decode", "boom")
    w.flush()
    assert len(list((tmp_path / "labels").glob("*.parquet"))) == 3  # 3 + 3 + 1
    r = open_results(tmp_path)
    assert list(r.labels.utt_id) == ids
    np.testing.assert_array_equal(r.embeddings(), emb)
    np.testing.assert_array_equal(r.embeddings(["u5", "u0"]), emb[[5, 0]])
    assert list(r.errors.utt_id) == ["bad1"]
    df = r.labels
    for _, row in df.iterrows():  # emb_file/emb_row point at the right row
        m = np.load(tmp_path / row.emb_file, mmap_mode="r")
        np.testing.assert_array_equal(m[row.emb_row], emb[ids.index(row.utt_id)])
    with pytest.raises(KeyError):
        r.embeddings(["nope"])


def test_float16_embeddings(tmp_path):
    w = OutputWriter(tmp_path, LABELS, "m", emb_dtype="float16")
    w.add(rows(["a"]), np.ones((1, 3), np.float32) / 3)
    w.flush()
    e = open_results(tmp_path).embeddings()
    assert e.dtype == np.float16 and abs(float(e[0, 0]) - 1 / 3) < 1e-3


def test_resume_sees_finished_ids_and_continues_numbering(tmp_path):
    w = OutputWriter(tmp_path, LABELS, "m")
    w.add(rows(["a", "b"]), np.zeros((2, 2), np.float32))
    w.add_error("c", "decode", "x")
    w.flush()
    w2 = OutputWriter(tmp_path, LABELS, "m")
    assert {i for i in "abcdz" if i in w2.finished_ids} == {"a", "b", "c"} and len(w2.finished_ids) == 3
    w2.add(rows(["d"]), np.ones((1, 2), np.float32))
    w2.flush()
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert list(open_results(tmp_path).labels.utt_id) == ["a", "b", "d"]


def test_crash_leftovers_are_cleaned(tmp_path):
    w = OutputWriter(tmp_path, LABELS, "m")
    w.add(rows(["a"]), np.zeros((1, 2), np.float32))
    w.flush()
    # a crash after the .npy rename but before the table rename, and a half-written temp file
    np.save(tmp_path / "embeddings" / "part-00001.npy", np.zeros((5, 2), np.float32))
    (tmp_path / "labels" / ".part-00001.parquet.tmp").write_bytes(b"half")
    w2 = OutputWriter(tmp_path, LABELS, "m")
    assert not (tmp_path / "embeddings" / "part-00001.npy").exists()
    assert not (tmp_path / "labels" / ".part-00001.parquet.tmp").exists()
    assert {i for i in "abc" if i in w2.finished_ids} == {"a"}


def test_refuses_to_mix_different_columns(tmp_path):
    w = OutputWriter(tmp_path, LABELS, "m")
    w.add(rows(["a"]), np.zeros((1, 2), np.float32))
    w.flush()
    with pytest.raises(ValueError, match="other columns"):
        OutputWriter(tmp_path, ["x", "y", "z"], "m")


def test_frames_offsets(tmp_path):
    w = OutputWriter(tmp_path, LABELS, "m", frames=True)
    f = [np.full((3, 2), 1.0, np.float32), np.full((5, 2), 2.0, np.float32)]
    w.add(rows(["a", "b"]), np.zeros((2, 2), np.float32), f)
    w.flush()
    r = open_results(tmp_path)
    np.testing.assert_array_equal(r.frames("b"), f[1])
    np.testing.assert_array_equal(r.frames("a"), f[0])


def test_duckdb_reads_labels(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    w = OutputWriter(tmp_path, LABELS, "m", part_size=1)
    w.add(rows(["a", "b"]), np.zeros((2, 2), np.float32))
    w.flush()
    got = duckdb.connect().execute(f"SELECT count(*), avg(score_angry) FROM '{tmp_path}/labels/*.parquet'").fetchall()[0]
    assert got[0] == 2 and abs(got[1] - 0.3) < 1e-6


def test_manifest_atomic_json(tmp_path):
    w = OutputWriter(tmp_path, LABELS, "m")
    w.write_manifest({"a": 1})
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"a": 1}
    assert not list(tmp_path.glob(".*tmp"))


def test_per_utt_layout_stays_inside_and_never_collides(tmp_path):
    from batchser.store.layout import per_utt_name

    ids = ["plain-id", "../../escape", "a/b", "a_b", "/abs", "..", "ünï"]
    w = OutputWriter(tmp_path / "o", LABELS, "m", npy_layout="per-utt")
    emb = np.arange(len(ids) * 2, dtype=np.float32).reshape(-1, 2)
    w.add(rows(ids), emb)
    w.flush()
    df = open_results(tmp_path / "o").labels
    files = list(df.npy_file)
    assert len(set(files)) == len(ids)
    assert per_utt_name("plain-id") == "plain-id"
    for f, e in zip(files, emb):
        p = (tmp_path / "o" / f).resolve()
        assert p.parent == (tmp_path / "o" / "npy").resolve()
        np.testing.assert_array_equal(np.load(p), e)
    assert not (tmp_path / "escape.npy").exists() and not list(tmp_path.glob("*.npy"))


def test_export_kaldi_tables_and_embeddings_read_by_kaldiio(tmp_path):
    import kaldiio
    from click.testing import CliRunner

    from batchser.cli import main

    w = OutputWriter(tmp_path / "o", LABELS, "m", part_size=2)
    ids = ["u2", "u10", "u1"]
    emb = np.arange(3 * 4, dtype=np.float32).reshape(3, 4) / 7
    w.add(rows(ids), emb)
    w.flush()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "o"), "--kaldi", str(tmp_path / "k")])
    assert r.exit_code == 0, r.output
    k = tmp_path / "k"
    assert (k / "utt2emo_hyp").read_text() == "u1 happy\nu10 happy\nu2 happy\n"  # Kaldi (C locale) order
    assert (k / "classes.txt").read_text() == "angry\nhappy\n"
    assert (k / "utt2score").read_text().splitlines()[0] == "u1 0.3 0.7"
    got = kaldiio.load_scp(str(k / "embeddings.scp"))
    assert sorted(got) == ["u1", "u10", "u2"]
    for i, u in enumerate(ids):
        np.testing.assert_array_equal(got[u], emb[i])
    assert not list(k.glob(".*"))  # no temporaries left
