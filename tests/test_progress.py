"""Progress where people look: plain lines in a cluster log, a log file, and -q silencing every bar."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from batchser.cli import main
from conftest import REPO


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def test_progress_lines_off_a_terminal_and_in_the_log_file(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 0.4 for i in range(6)})
    with open(d / "wav.scp", "a") as f:
        f.write("gone /no/such.wav\n")
    log = tmp_path / "run.log"
    code, out = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0",
                        "--max-batch-size", "2", "--progress-every", "0.0001", "--log-file", log)
    assert code == 1
    lines = [l for l in out.splitlines() if l.startswith("progress: ")]
    # start, the unreadable line (counted when the reader finds it), 3 batches (the last: the end)
    assert lines[0] == "progress: 0/7 utterances" and len(lines) == 5
    assert lines[-1].startswith("progress: 7/7 utterances (100.0%)")
    assert "x real time" in lines[1] and "ETA" in lines[1] and lines[-1].endswith("1 errors")
    text = log.read_text()
    assert "progress: 7/7" in text and "done: 6 ok, 1 errors" in text
    code, out = run_cli("run", d, "--out", tmp_path / "q", "--model", e2v_dir, "--num-workers", "0",
                        "--progress-every", "0.0001", "-q")
    assert "progress:" not in out and "done:" in out


def test_quiet_silences_third_party_bars(tmp_path):
    from batchser.testmodels import make_whisper_classifier_dir

    m = make_whisper_classifier_dir(tmp_path / "w")
    p = subprocess.run([sys.executable, "-m", "batchser", "run", "sample_scp/wav.scp", "--out", str(tmp_path / "o"),
                        "--model", str(m), "--num-workers", "0", "-q"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "Loading weights" not in p.stderr and "%|" not in p.stderr
    assert [l for l in p.stderr.splitlines() if l.strip()][0].startswith("done: ")


def test_a_short_task_still_logs_its_last_progress_line(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 0.4 for i in range(3)})
    code, out = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0")
    lines = [l for l in out.splitlines() if l.startswith("progress: ")]
    assert code == 0 and lines == ["progress: 0/3 utterances", lines[-1]] and "3/3" in lines[-1]


def test_the_last_progress_line_counts_each_decode_error_once(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 0.4 for i in range(3)})
    (tmp_path / "wav" / "u1.wav").write_bytes(b"not audio at all" * 100)  # a decode error
    code, out = run_cli("run", d, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0")
    lines = [l for l in out.splitlines() if l.startswith("progress: ")]
    assert code == 1 and "done: 2 ok, 1 errors" in out
    assert lines[-1].endswith(", 1 errors"), lines
    err = __import__("pandas").read_parquet(tmp_path / "o" / "errors")
    assert "NoBackendError" not in err.message[0] and "u1" in err.message[0]
