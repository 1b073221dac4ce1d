"""Trust under faults: one writer per output dir, nothing deleted that is not ours, exit codes a
scheduler can trust, no process left behind, atomic merge, and the input edge cases."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from conftest import REPO, speechlike, write_wav


def run_cli(*args, cwd=None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)
    return r.exit_code, r.output


def cmd(d, out, model, *extra):
    return [sys.executable, "-m", "batchser", "run", str(d), "--out", str(out), "--model", str(model), *map(str, extra)]


def label_ids(out: Path):
    return [u for f in sorted((out / "labels").glob("part-*.parquet"))
            for u in pq.read_table(f, columns=["utt_id"]).column("utt_id").to_pylist()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def descendants(pid: int):
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def ran_with_one_missing_file(make_corpus, model, tmp_path):
    """A corpus of one good utterance and one missing file, run once (exit 1): (data dir, OUT)."""
    d = make_corpus({"a": 0.5})
    with open(d / "wav.scp", "a") as f:
        f.write("gone /no/such.wav\n")
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", model, "--num-workers", "0", "-q")[0] == 1
    return d, out


# -- 1. one writer per output directory --------------------------------------------------------
def test_second_run_into_a_locked_out_is_refused_naming_the_holder(e2v_dir, tmp_path, make_corpus):
    from batchser.store.lock import OutputLock

    d = make_corpus({"a": 0.5, "b": 0.7})
    out = tmp_path / "o"
    with OutputLock(out, command=["batchser", "run", "first"]):
        code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 2 and "in use" in msg and f"pid {os.getpid()}" in msg and os.uname().nodename in msg
    assert not (out / "labels").exists()  # refused before writing anything
    # released: the same command now runs
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0


def test_stale_lock_of_a_dead_process_is_taken_over(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.5})
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".batchser.lock").write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid,
                                                     "started": "yesterday", "command": ["batchser", "run"]}))
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0")
    assert code == 0 and "stale lock" in msg


def test_two_concurrent_runs_never_duplicate_rows(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i:02d}": 0.4 + 0.1 * (i % 5) for i in range(24)})
    out = tmp_path / "o"
    p1 = subprocess.Popen(cmd(d, out, e2v_dir, "--num-workers", "0", "--part-size", "3", "-q"), cwd=REPO,
                          stderr=subprocess.PIPE, text=True)
    p2 = subprocess.Popen(cmd(d, out, e2v_dir, "--num-workers", "0", "--part-size", "5", "-q"), cwd=REPO,
                          stderr=subprocess.PIPE, text=True)
    try:
        e1, e2 = p1.communicate(timeout=300)[1], p2.communicate(timeout=300)[1]
    finally:
        p1.kill(), p2.kill()
    codes = sorted([p1.returncode, p2.returncode])
    assert codes == [0, 2], (e1, e2)
    assert "in use" in (e1 + e2)
    ids = label_ids(out)
    assert sorted(ids) == [f"u{i:02d}" for i in range(24)]  # each once
    assert open_results(out).manifest["counts"]["results_total"] == 24


def test_merge_takes_the_lock_too(e2v_dir, tmp_path, make_corpus):
    from batchser.store.lock import OutputLock

    d = make_corpus({"a": 0.5, "b": 0.6})
    out = tmp_path / "o"
    for i in range(2):
        assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/2", "--num-workers", "0", "-q")[0] == 0
    with OutputLock(out):
        code, msg = run_cli("merge", out)
    assert code == 2 and "in use" in msg
    assert run_cli("merge", out)[0] == 0


# -- 2./3. nothing deleted before the run is known to go ahead, nothing that is not ours -------------
def test_refused_retry_errors_keeps_the_error_rows(e2v_dir, tmp_path, make_corpus):
    from batchser.testmodels import make_emotion2vec_dir

    d, out = ran_with_one_missing_file(make_corpus, e2v_dir, tmp_path)
    other = make_emotion2vec_dir(tmp_path / "other", size="tiny", seed=7)
    code, msg = run_cli("run", d, "--out", out, "--model", other, "--retry-errors", "--num-workers", "0", "-q")
    assert code == 2 and "cannot resume" in msg
    assert list(open_results(out).errors.utt_id) == ["gone"]
    # with the right model the retry runs (and fails again, exit 1), the error row is there once
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--retry-errors", "--num-workers", "0", "-q")[0] == 1
    assert list(open_results(out).errors.utt_id) == ["gone"]


def test_overwrite_refuses_a_directory_batchser_did_not_make(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.5})
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    (out / "data.csv").write_text("1,2\n")
    for extra in ([], ["--overwrite"]):
        code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q", *extra)
        assert code == 2 and "not a batchser output directory" in msg and "chapter1.tex" in msg
    assert sorted(p.name for p in out.iterdir()) == ["chapter1.tex", "data.csv"]


def test_overwrite_removes_only_what_batchser_wrote(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.5, "b": 0.8})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    (out / "my_notes.txt").write_text("keep me")
    (out / "labels" / "my_analysis.csv").write_text("inside one of batchser's folders")
    (out / "eval").mkdir()
    (out / "eval" / "my_table.tex").write_text("mine too")
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--overwrite")
    assert code == 0 and (out / "my_notes.txt").read_text() == "keep me"
    assert (out / "labels" / "my_analysis.csv").exists() and (out / "eval" / "my_table.tex").exists()
    assert "my_notes.txt" in msg and "labels/my_analysis.csv" in msg  # said what it kept
    assert sorted(open_results(out).labels.utt_id) == ["a", "b"]
    assert open_results(out).manifest["counts"]["skipped_already_done"] == 0


# -- 4. exit codes ------------------------------------------------------------------------------
def test_resume_with_nothing_left_but_errors_exits_1(e2v_dir, tmp_path, make_corpus):
    d, out = ran_with_one_missing_file(make_corpus, e2v_dir, tmp_path)
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 1 and "1 in errors" in msg


def fail_writes(monkeypatch, *, after: int, err: int):
    """Make every atomic write after the first ``after`` fail with OSError(err)."""
    from batchser.store import atomic

    orig = atomic.commit
    n = [0]

    def commit(tmp, final):
        n[0] += 1
        if n[0] > after:
            raise OSError(err, os.strerror(err), str(final))
        return orig(tmp, final)

    monkeypatch.setattr(atomic, "commit", commit)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_stops_with_exit_4_and_resumes(e2v_dir, tmp_path, make_corpus, monkeypatch, err):
    d = make_corpus({f"u{i}": 0.5 for i in range(8)})
    out = tmp_path / "o"
    fail_writes(monkeypatch, after=4, err=err)  # settings + a few parts, then the disk is full
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--part-size", "1",
                        "--max-batch-size", "1")
    assert code == 4, msg
    assert "Traceback" not in msg and os.strerror(err) in msg and "run the same command again" in msg
    monkeypatch.undo()
    first = label_ids(out)
    assert 0 < len(first) < 8
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    assert sorted(label_ids(out)) == [f"u{i}" for i in range(8)]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_flushes_writes_manifest_and_exits_128_plus_signal(e2v_dir, tmp_path, make_corpus, sig, code):
    d = make_corpus({f"u{i:02d}": 0.6 for i in range(40)})
    # slow decoding (0.25 s a file) so that the run is still going when the signal comes
    lines = (d / "wav.scp").read_text().splitlines()
    (d / "wav.scp").write_text("".join(f"{u} sleep 0.25; cat {p} |\n" for u, p in (l.split(None, 1) for l in lines)))
    out = tmp_path / "o"
    p = subprocess.Popen(cmd(d, out, e2v_dir, "--num-workers", "1", "--part-size", "1000", "--max-batch-size", "2"),
                         cwd=REPO, stderr=subprocess.PIPE, text=True)
    # wait until some batches ran (none committed yet: the part size is larger than the corpus)
    t = time.time()
    while time.time() - t < 120 and not list(out.glob("settings.json")):
        time.sleep(0.05)
    time.sleep(4)
    p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    assert p.returncode == code, err
    assert "Traceback" not in err and "interrupted" in err
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "interrupted"
    done = label_ids(out)
    assert man["counts"]["results_total"] == len(done) > 0  # the buffered rows were flushed as a part
    assert man["counts"]["ok_this_run"] == len(done) and man["audio_hours"] > 0  # what this run did, reported
    assert f"{len(done)} results" in err
    assert subprocess.run(cmd(d, out, e2v_dir, "--num-workers", "0", "-q"), cwd=REPO).returncode == 0
    assert sorted(label_ids(out)) == [f"u{i:02d}" for i in range(40)]


def test_empty_corpus_exits_2(e2v_dir, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("")
    code, msg = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "-q")
    assert code == 2 and "no utterances" in msg


def test_shard_run_names_its_directory_and_the_merge(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.5, "b": 0.6, "c": 0.7})
    out = tmp_path / "o"
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", "0/2", "--num-workers", "0", "-q")
    assert code == 0 and str(out / "shards" / "shard-0000-of-0002" / "labels") in msg and "batchser merge" in msg
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", "0/3", "--num-workers", "0", "-q")
    assert code == 2 and "split into 2" in msg and not (out / "shards" / "shard-0000-of-0003").exists()


def test_a_run_without_errors_still_has_an_errors_table(e2v_dir, tmp_path, make_corpus):
    import duckdb

    d = make_corpus({"a": 0.5})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    n = duckdb.connect().execute(f"SELECT count(*) FROM '{out}/errors/*.parquet'").fetchall()[0][0]
    assert n == 0
    assert list(open_results(out).errors.columns) == ["utt_id", "stage", "message"]
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0  # resume: one part
    assert len(list((out / "errors").glob("*.parquet"))) == 1


# -- 5. no process left behind, pipes contained -----------------------------------------------
def test_no_process_left_after_kill_9_of_a_run(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i:02d}": 0.5 for i in range(30)})
    with open(d / "wav.scp", "a") as f:  # a pipe that is busy when the run is killed
        f.write(f"slow sleep 60; cat {tmp_path / 'wav' / 'u00.wav'} |\n")
    p = subprocess.Popen(cmd(d, tmp_path / "o", e2v_dir, "--num-workers", "2", "--max-batch-size", "1", "-q"),
                         cwd=REPO)
    t = time.time()
    kids = []
    while time.time() - t < 120:
        kids = descendants(p.pid)
        if len(kids) >= 3 and any("sleep" in Path(f"/proc/{k}/cmdline").read_text() for k in kids
                                  if Path(f"/proc/{k}/cmdline").exists()):
            break
        time.sleep(0.1)
    assert len(kids) >= 3, "decoders and the pipe never started"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    t = time.time()
    while time.time() - t < 5 and any(alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if alive(k)]


def test_pipe_timeout_kills_the_whole_pipeline(tmp_path):
    from batchser.audio import AudioError, load_utterance
    from batchser.corpus import AudioSource, Utterance

    marker = tmp_path / "pid"
    u = Utterance("u", "u", AudioSource("pipe", f"sh -c 'echo $$ > {marker}; exec sleep 30' | cat"))
    with pytest.raises(AudioError, match="timed out"):
        load_utterance(u, pipe_timeout=1.0)
    pid = int(marker.read_text())
    t = time.time()
    while time.time() - t < 3 and alive(pid):
        time.sleep(0.05)
    assert not alive(pid)


def test_pipe_output_is_capped(tmp_path):
    from batchser.audio import AudioError, load_utterance
    from batchser.corpus import AudioSource, Utterance

    u = Utterance("u", "u", AudioSource("pipe", "head -c 5000000 /dev/zero"))
    with pytest.raises(AudioError, match="more than 1 MB"):
        load_utterance(u, pipe_max_bytes=1 << 20)


# -- 6. merge is atomic and counts from the data ------------------------------------------------
def test_interrupted_merge_then_rerun_equals_one_run(e2v_dir, tmp_path, make_corpus, monkeypatch):
    from batchser.store import merging as merge_mod

    d = make_corpus({f"u{i:02d}": 0.4 + 0.1 * (i % 4) for i in range(12)})
    out = tmp_path / "o"
    for i in range(3):
        assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/3", "--num-workers", "0",
                       "--part-size", "1", "-q")[0] == 0
    assert run_cli("merge", out)[0] == 0
    # a second merge dies half way through linking
    orig = merge_mod._link_shard
    calls = [0]

    def dying(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(merge_mod, "_link_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        merge_mod.merge(out)
    monkeypatch.undo()
    # never a partial dataset under a complete manifest: the previous merge is still whole
    r = open_results(out)
    assert sorted(r.labels.utt_id) == [f"u{i:02d}" for i in range(12)]
    assert run_cli("merge", out)[0] == 0
    r = open_results(out)
    assert sorted(r.labels.utt_id) == [f"u{i:02d}" for i in range(12)]
    assert r.manifest["counts"] == {"input": 12, "results_total": 12, "errors_total": 0}
    assert not [p for p in out.iterdir() if p.name.startswith(".merge")]


def test_merge_counts_come_from_the_data(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 1.0 for i in range(6)})
    out = tmp_path / "o"
    for i in range(2):
        run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/2", "--num-workers", "0", "-q")
    # a resumed shard's manifest counts only its last run; the merge must not
    shard = out / "shards" / "shard-0000-of-0002"
    man = json.loads((shard / "manifest.json").read_text())
    man["audio_hours"] = 0.0
    (shard / "manifest.json").write_text(json.dumps(man))
    assert run_cli("merge", out)[0] == 0
    m = open_results(out).manifest
    assert m["audio_hours"] == pytest.approx(6.0 / 3600, rel=1e-6)


# -- 7. input edge cases -----------------------------------------------------------------------
def test_bom_is_stripped(tmp_path):
    from batchser.corpus import read_corpus

    p = write_wav(tmp_path / "a.wav", speechlike(8000, 1))
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_bytes(b"\xef\xbb\xbfa " + str(p).encode() + b"\n")
    (d / "utt2spk").write_bytes(b"\xef\xbb\xbfa spk1\n")
    c = read_corpus(d)
    assert [u.utt_id for u in c.utterances] == ["a"] and c.utterances[0].spk == "spk1"


def test_non_utf8_names_the_line(tmp_path):
    from batchser.corpus import CorpusError, read_corpus

    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_bytes(b"r0 /a.wav\nr1 /b.wav\nr2 \xff\xfe.wav\n")
    with pytest.raises(CorpusError, match=r"wav.scp:3: not valid UTF-8"):
        read_corpus(d)


def test_segment_past_the_end_gets_its_true_end_and_a_warning(e2v_dir, tmp_path):
    p = write_wav(tmp_path / "rec.wav", speechlike(16000 * 2, 3))
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"rec {p}\n")
    (d / "segments").write_text("s1 rec 0.0 1.0\ns2 rec 1.0 3.5\n")
    code, msg = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0")
    assert code == 0 and "s2" in msg and "past the end" in msg
    r = open_results(tmp_path / "o")
    row = r.labels.set_index("utt_id").loc["s2"]
    assert row.end == pytest.approx(2.0) and row.duration == pytest.approx(1.0)
    assert r.manifest["warnings_total"] == 1 and "s2" in r.manifest["warnings"][0]


def test_warnings_are_kept_in_the_manifest_under_quiet(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.5, "b": 0.5}, extra={"utt2spk": "a spk1\n"})
    with open(d / "wav.scp", "a") as f:
        f.write(f"a {tmp_path / 'wav' / 'a.wav'}\n")  # duplicate of a processed id
    code, msg = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 0 and "2 warnings" in msg
    m = open_results(tmp_path / "o").manifest
    assert m["warnings_total"] == 2
    text = " ".join(m["warnings"])
    assert "duplicate" in text and "utt2spk" in text and "b" in text


def test_eval_finds_references_from_another_directory(e2v_dir, tmp_path, make_corpus, monkeypatch):
    d = make_corpus({"a": 0.5, "b": 0.6}, extra={"utt2emo": "a happy\nb sad\nc angry\n"})
    with open(d / "wav.scp", "a") as f:
        f.write("c /no/such.wav\n")
    rel = os.path.relpath(d, tmp_path)
    code, _ = run_cli("run", rel, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0", "-q",
                      cwd=tmp_path)
    assert code == 1
    code, out = run_cli("eval", tmp_path / "o", "--json", "--no-plot", cwd=REPO)
    m = json.loads(out)
    assert m["n"] == 3 and m["missing_predictions"]["in_errors"] == 1


def test_decoder_messages_name_the_users_source(tmp_path):
    from batchser.audio import AudioError, load_utterance
    from batchser.corpus import AudioSource, Utterance

    junk = tmp_path / "junk.wav"
    junk.write_bytes(os.urandom(3000))
    with pytest.raises(AudioError) as e:
        load_utterance(Utterance("u", "u", AudioSource("file", str(junk))))
    assert "fallback decoder: " not in str(e.value) or not str(e.value).endswith("fallback decoder: ")
    assert str(junk) in str(e.value)
    with pytest.raises(AudioError) as e:
        load_utterance(Utterance("u", "u", AudioSource("pipe", "echo hello")))
    assert "BytesIO" not in str(e.value) and "echo hello" in str(e.value)


def test_cached_pipe_recording_errors_name_the_pipe(e2v_dir, tmp_path):
    src = write_wav(tmp_path / "rec.wav", speechlike(16000, 4))
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"rec cat {src} |\n")
    (d / "segments").write_text("s1 rec 0.0 0.5\ns2 rec 5.0 6.0\n")  # s2 starts past the end
    code, _ = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 1
    e = open_results(tmp_path / "o").errors.set_index("utt_id")
    assert ".cache" not in e.loc["s2", "message"] and f"cat {src}" in e.loc["s2", "message"]


def test_a_corpus_with_nothing_usable_stops_before_loading_the_model(tmp_path, monkeypatch):
    import batchser.models as models

    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("a wav/a.wav\nb wav/b.wav\n")  # paths relative to somewhere else
    loaded = []
    monkeypatch.setattr(models, "load_backend", lambda *a, **k: loaded.append(1))
    code, msg = run_cli("run", d, "--out", tmp_path / "o", "--model", "emotion2vec_plus_base", "-q")
    assert code == 2 and "no utterance" in msg and "wav.scp:1" in msg and "batchser info" in msg
    assert not loaded and not (tmp_path / "o").exists()
