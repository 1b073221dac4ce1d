"""Nothing escapes OUT, nothing damaged is taken as done (issue 36): symlinked folders refused
before anything is touched, truncated parts refused with advice, `batchser verify`, merge's exit
code for shards run with other settings, and messages that name the file."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from batchser.cli import main


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def listing(d: Path) -> dict:
    """Every file under ``d`` (not following links) with its checksum."""
    out = {}
    for root, dirs, files in os.walk(d):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest() if not p.is_symlink() else "link"
    return out


@pytest.fixture
def done_run(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 0.5 + 0.1 * i for i in range(6)})
    out = tmp_path / "o"
    code, _ = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--part-size", "2",
                      "--max-batch-size", "2", "-q")
    assert code == 0 and len(list((out / "labels").glob("part-*.parquet"))) == 3
    return d, out


def other_dir(tmp_path: Path) -> Path:
    o = tmp_path / "elsewhere"
    o.mkdir()
    np.save(o / "part-00050.npy", np.zeros((2, 3), np.float32))
    (o / ".part-00051.npy.tmp").write_bytes(b"x" * 10)
    (o / "part-00099.npy").write_bytes(b"precious")
    (o / "notes.txt").write_text("mine")
    return o


def test_resume_through_a_symlinked_folder_is_refused_and_touches_nothing_outside(done_run, e2v_dir, tmp_path):
    d, out = done_run
    o = other_dir(tmp_path)
    import shutil

    for f in (out / "embeddings").iterdir():  # the real parts move out, beside files named like parts
        shutil.move(str(f), o / f.name)
    (out / "embeddings").rmdir()
    (out / "embeddings").symlink_to(o, target_is_directory=True)
    (out / "labels" / "part-00001.parquet").unlink()
    before = listing(o)
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--part-size", "2",
                         "--max-batch-size", "2", "-q")
    assert code == 2
    assert "embeddings" in text and "symbolic link" in text
    assert listing(o) == before


def test_overwrite_through_symlinked_folders_is_refused(done_run, e2v_dir, tmp_path):
    d, out = done_run
    o = other_dir(tmp_path)
    (out / "npy").symlink_to(o, target_is_directory=True)
    (out / "timeline").symlink_to(o, target_is_directory=True)
    before = listing(o)
    labels_before = listing(out / "labels")
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--overwrite", "-q",
                         "--npy-layout", "per-utt")
    assert code == 2 and "symbolic link" in text
    assert listing(o) == before
    assert listing(out / "labels") == labels_before  # refused before anything was touched


def test_a_link_inside_a_folder_is_refused_too(done_run, e2v_dir, tmp_path):
    d, out = done_run
    o = other_dir(tmp_path)
    (out / "errors" / "part-00007.parquet").symlink_to(o / "part-00099.npy")
    before = listing(o)
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--overwrite", "-q")
    assert code == 2 and "part-00007.parquet" in text
    assert listing(o) == before


def test_truncated_embeddings_part_is_refused_with_advice_and_verify_names_it(done_run, e2v_dir):
    d, out = done_run
    p = out / "embeddings" / "part-00001.npy"
    with open(p, "r+b") as f:
        f.truncate(200)
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 2
    assert "part-00001.npy" in text and "batchser verify" in text
    code, text = run_cli("verify", out)
    assert code == 1 and "embeddings/part-00001.npy" in text
    from batchser import open_results

    with pytest.raises(ValueError, match="part-00001.npy"):
        open_results(out).embeddings()


def test_truncated_labels_part_names_the_file_and_what_to_do(done_run, e2v_dir):
    d, out = done_run
    p = out / "labels" / "part-00000.parquet"
    p.write_bytes(p.read_bytes()[:300])
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 2
    assert "labels/part-00000.parquet" in text and "magic bytes" not in text
    assert run_cli("verify", out)[0] == 1


def test_verify_a_clean_directory(done_run):
    _, out = done_run
    code, text = run_cli("verify", out)
    assert code == 0, text
    assert "3 labels parts" in text


def test_frames_and_timeline_parts_are_verified(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 1.2 for i in range(3)})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q", "--granularity", "frame",
                   "--timeline", "0.5")[0] == 0
    assert run_cli("verify", out)[0] == 0
    f = out / "frames" / "part-00000.npy"
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size - 64)
    code, text = run_cli("verify", out)
    assert code == 1 and "frames/part-00000.npy" in text
    f.unlink()
    code, text = run_cli("verify", out)
    assert code == 1 and "frames/part-00000.npy" in text
    t = out / "timeline" / "part-00000.parquet"
    t.write_bytes(b"PAR1")
    code, text = run_cli("verify", out)
    assert "timeline/part-00000.parquet" in text


def test_merge_of_shards_with_other_settings_exits_2(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 0.6 for i in range(4)})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", "0/2", "--num-workers", "0", "-q")[0] == 0
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", "1/2", "--num-workers", "0", "-q",
                   "--max-seconds", "300")[0] == 0
    code, text = run_cli("merge", out)
    assert code == 2 and "different settings" in text


def test_garbage_settings_json_names_the_file(done_run, e2v_dir):
    d, out = done_run
    (out / "settings.json").write_text("not json")
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 2
    assert "settings.json" in text and "--overwrite" in text


def test_a_directory_as_a_wav_scp_path_says_so(e2v_dir, tmp_path):
    (tmp_path / "adir").mkdir()
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a {tmp_path / 'adir'}\n")
    from batchser.corpus import read_corpus

    c = read_corpus(scp)
    assert c.errors and "is a directory" in c.errors[0].message and "audio file not found" not in c.errors[0].message


def test_an_ark_offset_past_the_end_names_the_entry(tmp_path):
    import kaldiio

    from batchser.audio import AudioError, decode_utterance
    from batchser.records import AudioSource, Utterance

    ark = tmp_path / "a.ark"
    kaldiio.save_ark(str(ark), {"x": (16000, np.zeros(1600, np.int16))})
    u = Utterance(utt_id="x", rec_id="x", source=AudioSource("ark", f"{ark}:99999"), list_file="wav.scp", line=1)
    with pytest.raises(AudioError) as e:
        decode_utterance(u)
    msg = str(e.value)
    assert "99999" in msg and str(ark) in msg and "past the end" in msg and "AssertionError" not in msg


@pytest.mark.parametrize("delay", [0.2, 1.2, 2.5])
def test_sigterm_to_the_process_group_while_decoders_are_busy_is_an_interruption(e2v_dir, tmp_path, delay):
    """A scheduler's SIGTERM reaches the decoders too; their death must not be reported as a
    model failure: exit 143 and manifest "interrupted", whenever it comes."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import speechlike, write_wav

    d = tmp_path / "d"
    d.mkdir()
    lines = []
    for i in range(8):
        w = write_wav(tmp_path / f"w{i}.wav", speechlike(16000 * 20, seed=i))
        lines.append(f"u{i} sleep 0.7; cat {w} |")
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "batchser", "run", str(d), "--out", str(out), "--model", str(e2v_dir),
                          "--num-workers", "2", "--max-batch-size", "2", "-q"], start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while not (out / "settings.json").exists() and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)  # the run has begun: the model is loaded, the decoders start
    time.sleep(delay)
    os.killpg(p.pid, signal.SIGTERM)
    text, _ = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip(f"the run finished before the signal ({delay} s)")
    assert p.returncode == 143, text
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "interrupted"


def test_damaged_tables_made_from_the_labels_are_named_and_redone(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 0.6 + 0.1 * i for i in range(4)})
    out = tmp_path / "o"
    args = ("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--features", "prosody", "-q")
    assert run_cli(*args)[0] == 0
    ex = out / "explanations.parquet"
    ex.write_bytes(ex.read_bytes()[:200])
    code, text = run_cli("verify", out)
    assert code == 1 and "explanations.parquet" in text and "recomputed" in text
    assert run_cli(*args)[0] == 0  # the resume has nothing to run, and writes the table again
    import pyarrow.parquet as pq

    assert pq.read_table(ex).num_rows == 4
    assert run_cli("verify", out)[0] == 0
