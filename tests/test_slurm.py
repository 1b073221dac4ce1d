"""A real single-node SLURM cluster (slurmctld + slurmd on this machine, munge auth): submit the
recipe's array job over sample_scp, wait, merge, and compare with a single-process run.

Needs root and Debian's slurm-wlm and munge (.ci/run installs them); skipped otherwise.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

TOOLS = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged", "munge", "unmunge"]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in TOOLS),
    reason="needs root and slurm-wlm + munge (installed by .ci/run)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_ok() -> bool:
    p = subprocess.run("munge -n | unmunge", shell=True, capture_output=True)
    return p.returncode == 0


@pytest.fixture
def slurm(tmp_path):
    """Start munged (unless one runs), slurmctld and slurmd with a config written here; stop them after."""
    started_munge = False
    if not _munge_ok():
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
        for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["munged", "--force"], check=True, capture_output=True)
        started_munge = True
        for _ in range(50):
            if _munge_ok():
                break
            time.sleep(0.1)
    d = tmp_path / "slurm"
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir(parents=True)
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=batchsertest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} CPUs={os.cpu_count()} RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    env = dict(os.environ, SLURM_CONF=str(conf))
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env)
    try:
        for _ in range(100):
            p = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env)
            if p.returncode == 0 and p.stdout.strip() in ("idle", "mix", "alloc"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("SLURM node never became idle:\n" + (d / "log" / "slurmctld.log").read_text()[-2000:])
        yield env, d
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            f = d / pid_file
            for _ in range(50):
                if not f.exists():
                    break
                try:
                    os.kill(int(f.read_text().strip()), 0)
                except (OSError, ValueError):
                    break
                time.sleep(0.1)
        if started_munge:
            subprocess.run(["munged", "--stop"], capture_output=True)


def test_array_job_then_merge_equals_single_run(slurm, e2v_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from batchser import open_results
    from batchser.cli import main

    env, d = slurm
    out = tmp_path / "out"
    env = dict(env, DATA=str(REPO / "sample_scp"), OUT=str(out), MODEL=str(e2v_dir),
               BATCHSER=f"{sys.executable} -m batchser")
    p = subprocess.run(["sbatch", "--parsable", "--array=0-2", "--cpus-per-task=1", "--mem=600",
                        f"--chdir={REPO}", f"--output={tmp_path}/task-%A_%a.out",
                        str(REPO / "recipes" / "slurm" / "batchser_array.sbatch")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip().split(";")[0]
    deadline = time.time() + 600
    while time.time() < deadline:
        q = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True, env=env)
        if q.returncode == 0 and not q.stdout.strip():
            break
        time.sleep(1)
    else:
        pytest.fail("array job did not finish in 10 minutes")
    logs = "\n".join(f.read_text() for f in sorted(tmp_path.glob("task-*.out")))
    assert len(list(tmp_path.glob("task-*.out"))) == 3, logs
    for f in tmp_path.glob("task-*.out"):  # each task's log shows its progress (not silenced by the recipe)
        assert "progress: " in f.read_text(), f.read_text()
    r = CliRunner().invoke(main, ["merge", str(out)])
    assert r.exit_code == 0, r.output + logs
    single = tmp_path / "single"
    monkeypatch.chdir(REPO)
    r = CliRunner().invoke(main, ["run", "sample_scp", "--out", str(single), "--model", str(e2v_dir),
                                  "--num-workers", "0", "-q"])
    assert r.exit_code == 0, r.output
    m, s = open_results(out), open_results(single)
    ids = sorted(s.labels.utt_id)
    assert sorted(m.labels.utt_id) == ids and len(ids) == 8
    assert len(list((out / "shards").iterdir())) == 3
    np.testing.assert_allclose(m.embeddings(ids), s.embeddings(ids), atol=2e-5)
    a = m.labels.set_index("utt_id").loc[ids]
    b = s.labels.set_index("utt_id").loc[ids]
    assert list(a.label) == list(b.label)
