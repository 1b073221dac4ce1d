"""Audio from object storage (issue 33): wav.scp entries and path lists naming s3:// objects, read
through a real S3 API server on localhost (moto in server mode, started here), equal to the same
audio from files; a missing object and a server stopped mid-run are error rows naming the URL;
credentials never reach the outputs."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from batchser import open_results  # noqa: E402
from batchser.cli import main  # noqa: E402
from conftest import speechlike, write_wav  # noqa: E402

SECRET = "s3cr3t-do-not-log-me"


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """A bucket on a local S3 server holding five utterances, and the same files on disk."""
    port = free_port()
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(k, v)
    import boto3
    import fsspec

    fsspec.config.conf.clear()
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()
    client = boto3.client("s3")
    client.create_bucket(Bucket="corpus")
    files = {}
    for i in range(5):
        f = write_wav(tmp_path / "local" / f"u{i}.wav", speechlike(int(16000 * (0.6 + 0.2 * i)), seed=i), sr=16000)
        client.put_object(Bucket="corpus", Key=f"audio/u{i}.wav", Body=f.read_bytes())
        files[f"u{i}"] = f
    yield srv, files
    srv.stop()
    S3FileSystem.clear_instance_cache()


def test_s3_entries_equal_local_files_and_a_missing_object_is_an_error_row(s3, e2v_dir, tmp_path):
    srv, files = s3
    local, remote = tmp_path / "local.scp", tmp_path / "remote.scp"
    local.write_text("".join(f"{u} {p}\n" for u, p in files.items()))
    remote.write_text("".join(f"{u} s3://corpus/audio/{u}.wav\n" for u in files) + "gone s3://corpus/audio/nope.wav\n")
    assert run_cli("run", local, "--out", tmp_path / "a", "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    code, text = run_cli("run", remote, "--out", tmp_path / "b", "--model", e2v_dir, "--num-workers", "1", "-q")
    assert code == 1, text
    a, b = open_results(tmp_path / "a"), open_results(tmp_path / "b")
    ids = sorted(files)
    assert sorted(b.labels.utt_id) == ids
    pa, pb = (r.labels.set_index("utt_id").loc[ids] for r in (a, b))
    assert pa.label.equals(pb.label) and pa.duration.equals(pb.duration)
    scores = [c for c in pa.columns if c.startswith("score")]
    # durations of objects are unknown before decoding, so the batches differ: padding never changes a
    # result beyond float rounding
    np.testing.assert_allclose(pa[scores].to_numpy(), pb[scores].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(a.embeddings(ids), b.embeddings(ids), atol=1e-5)
    err = b.errors.set_index("utt_id")
    assert list(err.index) == ["gone"] and "s3://corpus/audio/nope.wav" in err.loc["gone", "message"]
    assert "no such object" in err.loc["gone", "message"]
    for f in (tmp_path / "b").rglob("*"):  # credentials never reach the outputs
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_a_list_of_urls_is_read_with_ids_from_the_object_names(s3, e2v_dir, tmp_path):
    _, files = s3
    lst = tmp_path / "urls.txt"
    lst.write_text("# objects\n" + "".join(f"s3://corpus/audio/{u}.wav\n" for u in files))
    code, _ = run_cli("run", lst, "--out", tmp_path / "o", "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 0
    assert sorted(open_results(tmp_path / "o").labels.utt_id) == sorted(files)


def test_a_server_stopped_mid_run_gives_error_rows_and_a_resume_finishes(s3, e2v_dir, tmp_path, monkeypatch):
    srv, files = s3
    import batchser.audio as audio

    calls = []
    real = audio.read_url

    def stops_after_two(url, *a, **k):
        calls.append(url)
        if len(calls) == 3:
            srv.stop()  # the real server goes away: connections are refused from now on
        return real(url, *a, **k)

    monkeypatch.setattr(audio, "read_url", stops_after_two)
    scp = tmp_path / "remote.scp"
    scp.write_text("".join(f"{u} s3://corpus/audio/{u}.wav\n" for u in files))
    out = tmp_path / "o"
    code, text = run_cli("run", scp, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--max-batch-size", "1",
                         "-q")
    assert code == 1, text
    r = open_results(out)
    ok, bad = set(r.labels.utt_id), set(r.errors.utt_id)
    assert len(ok) == 2 and len(bad) == 3 and ok | bad == set(files) and not ok & bad
    assert all("unreachable after 3 tries" in m and "s3://corpus/audio/" in m for m in r.errors.message)
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"]["input_in_errors"] == 3
