"""Array jobs: environment detection, balanced disjoint shards, merge, and a killed shard re-run."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from batchser.shards import Shard, assign, detect_from_env, parse_shard
from conftest import REPO


@pytest.mark.parametrize("env,num,expect", [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "7",
      "SLURM_ARRAY_TASK_COUNT": "8"}, None, Shard(3, 8)),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "8"}, None, Shard(4, 8)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
      "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, None, Shard(2, 4)),
    ({"SGE_TASK_ID": "2", "SGE_TASK_FIRST": "1", "SGE_TASK_LAST": "10", "SGE_TASK_STEPSIZE": "1"}, None, Shard(1, 10)),
    ({"SGE_TASK_ID": "undefined"}, None, None),
    ({"LSB_JOBINDEX": "4", "LSB_JOBINDEX_END": "6"}, None, Shard(3, 6)),
    ({"LSB_JOBINDEX": "0"}, None, None),
    ({"PBS_ARRAY_INDEX": "2"}, 5, Shard(2, 5)),
    ({"PBS_ARRAYID": "0"}, 3, Shard(0, 3)),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "9"}, 10, Shard(9, 10)),
    ({}, None, None),
])
def test_detect_from_env(env, num, expect):
    assert detect_from_env(env, num) == expect


def test_detect_errors_say_what_to_pass():
    with pytest.raises(ValueError, match="--num-shards"):
        detect_from_env({"AWS_BATCH_JOB_ARRAY_INDEX": "1"})
    with pytest.raises(ValueError, match="not a plain range"):
        detect_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "7",
                         "SLURM_ARRAY_TASK_COUNT": "3"})


def test_parse_shard_forms():
    assert parse_shard("2/5") == Shard(2, 5)
    assert parse_shard(None, 4, 1) == Shard(1, 4)
    assert parse_shard(None) is None
    assert parse_shard("auto", env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0",
                                    "SLURM_ARRAY_TASK_MAX": "1"}) == Shard(1, 2)
    for bad in ("5/5", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    with pytest.raises(ValueError, match="no array-job variables"):
        parse_shard("auto", env={})
    with pytest.raises(ValueError, match="go together"):
        parse_shard(None, 4, None)


def test_assign_is_deterministic_disjoint_complete_and_balanced():
    rng = random.Random(0)
    ids = [f"u{i:05d}" for i in range(5000)]
    durs = [rng.choice([rng.uniform(1, 5), rng.uniform(20, 60), None]) for _ in ids]
    a = assign(ids, durs, 7)
    b = assign(list(reversed(ids)), list(reversed(durs)), 7)
    assert a == b  # independent of input order
    assert set(a) == set(ids) and set(a.values()) == set(range(7))
    loads = [sum((d if d is not None else 10.0) for u, d in zip(ids, durs) if a[u] == k) for k in range(7)]
    assert max(loads) - min(loads) <= 60.0  # within one longest utterance
    counts = [list(a.values()).count(k) for k in range(7)]
    assert max(counts) - min(counts) < 0.2 * max(counts)


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def test_shards_merge_equals_single_run(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i:02d}": 0.5 + 0.37 * (i % 9) for i in range(20)})
    with open(d / "wav.scp", "a") as f:
        f.write("gone /no/such.wav\n")
    out = tmp_path / "o"
    for i in range(3):
        code, _ = run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/3", "--num-workers", "0", "-q")
        assert code in (0, 1)  # the shard holding 'gone' exits 1
        if i == 0:
            code, msg = run_cli("merge", out)
            assert code == 1 and "shard 1/3: missing" in msg and "shard 2/3: missing" in msg
    code, msg = run_cli("merge", out)
    assert code == 1 and "missing" not in msg and "1 errors" in msg  # 'gone' is in errors/: 1, as for run
    assert run_cli("merge", out)[0] == 1  # harmless to repeat
    single = tmp_path / "single"
    run_cli("run", d, "--out", single, "--model", e2v_dir, "--num-workers", "0", "-q")
    m, s = open_results(out), open_results(single)
    ids = sorted(s.labels.utt_id)
    assert sorted(m.labels.utt_id) == ids and len(m.labels) == 20
    assert list(m.errors.utt_id) == ["gone"]
    np.testing.assert_allclose(m.embeddings(ids), s.embeddings(ids), atol=2e-5)
    assert m.manifest["counts"] == {"input": 21, "results_total": 20, "errors_total": 1}
    per = [len(open_results(p).labels) + len(open_results(p).errors) for p in sorted((out / "shards").iterdir())]
    assert sum(per) == 21 and max(per) - min(per) <= 3


def test_merge_refuses_unfinished_and_killed_shard_resumes(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i:03d}": 0.5 + (i % 5) * 0.2 for i in range(40)})
    out = tmp_path / "o"
    base = [sys.executable, "-m", "batchser", "run", str(d), "--out", str(out), "--model", str(e2v_dir),
            "--num-workers", "0", "--part-size", "3", "--max-batch-size", "3", "-q"]
    assert subprocess.run(base + ["--shard", "1/2"], cwd=REPO).returncode == 0
    p = subprocess.Popen(base + ["--shard", "0/2"], cwd=REPO)
    shard0 = out / "shards" / "shard-0000-of-0002"
    t = time.time()
    while time.time() - t < 120 and len(list((shard0 / "labels").glob("*.parquet"))) < 2:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    code, msg = run_cli("merge", out)
    assert code == 1 and "shard 0/2" in msg
    assert subprocess.run(base + ["--shard", "0/2"], cwd=REPO).returncode == 0  # resubmitted: resumes
    assert run_cli("merge", out)[0] == 0
    ids = list(open_results(out).labels.utt_id)
    assert sorted(ids) == [f"u{i:03d}" for i in range(40)] and len(set(ids)) == 40


def test_open_results_on_unmerged_dir_says_merge(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(FileNotFoundError, match="batchser merge"):
        open_results(tmp_path)
