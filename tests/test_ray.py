"""The Ray engine (issue 33) on a real local Ray cluster (``ray.init(num_cpus=2)``, one for the
whole module): equal to a local run, an actor killed mid-run loses and duplicates nothing, a
killed driver resumes, and EmotionPredictor in a user's map_batches pipeline equals the run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")

from batchser import open_results  # noqa: E402
from batchser.cli import main  # noqa: E402


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def corpus(make_corpus):
    return make_corpus({f"u{i:02d}": 0.5 + 0.15 * (i % 5) for i in range(14)}) 


def equal_runs(a: Path, b: Path):
    ra, rb = open_results(a), open_results(b)
    ids = sorted(ra.labels.utt_id)
    assert sorted(rb.labels.utt_id) == ids and len(set(rb.labels.utt_id)) == len(ids)
    la, lb = ra.labels.set_index("utt_id").loc[ids], rb.labels.set_index("utt_id").loc[ids]
    assert la.label.equals(lb.label) and la.duration.equals(lb.duration)
    sc = [c for c in la.columns if c.startswith("score")]
    np.testing.assert_allclose(la[sc].to_numpy(), lb[sc].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(ra.embeddings(ids), rb.embeddings(ids), atol=1e-5)


def test_ray_engine_equals_a_local_run(cluster, corpus, e2v_dir, tmp_path):
    assert run_cli("run", corpus, "--out", tmp_path / "local", "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    code, text = run_cli("run", corpus, "--out", tmp_path / "ray", "--model", e2v_dir, "--engine", "ray",
                         "--part-size", "4", "-q")
    assert code == 0, text
    equal_runs(tmp_path / "local", tmp_path / "ray")
    m = open_results(tmp_path / "ray").manifest
    assert m["status"] == "complete" and m["counts"]["results_total"] == 14
    # one commit per block: whole batches of the local run, about --part-size utterances
    parts = sorted((tmp_path / "ray" / "labels").glob("part-*.parquet"))
    assert len(parts) >= 2 and all(pq.ParquetFile(p).metadata.num_rows <= 4 + 8 - 1 for p in parts)


def scorer_pids():
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "_BlockScorer" in cmd or "MapWorker(MapBatches" in cmd:
                out.append(int(p.name))
    return out


def test_an_actor_killed_mid_run_loses_and_duplicates_nothing(cluster, corpus, e2v_dir, tmp_path):
    killed = []

    def killer():
        t0 = time.time()
        while time.time() - t0 < 60 and not killed:
            pids = scorer_pids()
            if pids and (tmp_path / "o" / "labels").is_dir() and list((tmp_path / "o" / "labels").glob("part-*")):
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(pids)
            time.sleep(0.05)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    code, text = run_cli("run", corpus, "--out", tmp_path / "o", "--model", e2v_dir, "--engine", "ray",
                         "--part-size", "2", "-q")
    th.join(timeout=5)
    assert code == 0, text
    assert killed, "no scoring actor was found to kill"
    r = open_results(tmp_path / "o")
    assert sorted(r.labels.utt_id) == sorted(f"u{i:02d}" for i in range(14))
    assert r.errors.empty


def test_a_killed_driver_resumes(corpus, e2v_dir, tmp_path):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "batchser", "run", str(corpus), "--out", str(out), "--model", str(e2v_dir),
           "--engine", "ray", "--part-size", "2", "-q"]
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and len(list((out / "labels").glob("part-*.parquet"))) < 2 and p.poll() is None:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # the driver and the local cluster it started
    p.wait()
    n_before = len(list((out / "labels").glob("part-*.parquet")))
    assert n_before >= 1
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = open_results(out)
    assert sorted(res.labels.utt_id) == sorted(f"u{i:02d}" for i in range(14))
    assert res.manifest["counts"]["skipped_already_done"] >= 2


def test_emotion_predictor_in_a_user_pipeline_equals_the_run(cluster, corpus, e2v_dir, tmp_path):
    from batchser.ray import EmotionPredictor

    assert run_cli("run", corpus, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    run = open_results(tmp_path / "o")
    scp = [l.split() for l in (corpus / "wav.scp").read_text().splitlines()]
    ds = ray.data.from_items([{"utt": u, "path": p} for u, p in scp])
    ds = ds.map_batches(EmotionPredictor, fn_constructor_kwargs={"model": str(e2v_dir), "device": "cpu",
                                                                  "id_column": "utt"},
                        concurrency=1, batch_size=None)
    got = ds.to_pandas().set_index("utt_id").sort_index()
    want = run.labels.set_index("utt_id").sort_index()
    assert list(got.index) == list(want.index) and list(got.label) == list(want.label)
    sc = [c for c in want.columns if c.startswith("score")]
    np.testing.assert_allclose(got[sc].to_numpy(dtype=float), want[sc].to_numpy(dtype=float), atol=1e-6)
    emb = np.stack(got.embedding.to_numpy())
    np.testing.assert_allclose(emb, run.embeddings(list(want.index)), atol=1e-5)
