"""What the first GPU run needs, tested on the CPU: systematic model errors stop the run, the OOM
back-off learns, fp16-saved checkpoints run in float32, device lists are checked in the parent."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def test_non_oom_model_error_stops_the_run_exit_4_and_resumes(e2v_dir, tmp_path, make_corpus, monkeypatch):
    from batchser.models.emotion2vec import Emotion2vecBackend

    d = make_corpus({f"u{i}": 0.5 + 0.1 * i for i in range(8)})
    orig = Emotion2vecBackend.forward
    calls = []

    def broken_later(self, wavs, frames=False):
        calls.append(len(wavs))
        if len(calls) > 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return orig(self, wavs, frames)

    monkeypatch.setattr(Emotion2vecBackend, "forward", broken_later)
    out = tmp_path / "o"
    code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "--max-batch-size", "2",
                        "--part-size", "1")
    assert code == 4 and "illegal memory access" in msg and "Traceback" not in msg
    assert len(calls) == 3  # no splitting into 2n-1 forwards
    r = open_results(out)
    assert len(r.labels) == 4 and len(r.errors) == 0  # two good batches committed, nobody blamed
    assert r.manifest["status"] == "stopped"
    failed = [u for u in (f"u{i}" for i in range(8)) if u not in set(r.labels.utt_id)]
    assert any(u in msg for u in failed)  # the message names the batch
    monkeypatch.undo()
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    assert sorted(open_results(out).labels.utt_id) == [f"u{i}" for i in range(8)]


def test_oom_backoff_in_a_run_loses_nothing_and_is_recorded(e2v_dir, tmp_path, make_corpus, monkeypatch):
    from batchser.models.emotion2vec import Emotion2vecBackend

    d = make_corpus({f"u{i:02d}": 0.5 + 0.05 * (i % 5) for i in range(20)})
    ref = tmp_path / "ref"
    args = ("--num-workers", "0", "--max-batch-size", "8", "--batch-seconds", "100", "-q")
    assert run_cli("run", d, "--out", ref, "--model", e2v_dir, *args)[0] == 0
    orig = Emotion2vecBackend.forward
    ooms = []

    def small_gpu(self, wavs, frames=False):
        if len(wavs) * max(len(w) for w in wavs) > 3 * 16000:
            ooms.append(len(wavs))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return orig(self, wavs, frames)

    monkeypatch.setattr(Emotion2vecBackend, "forward", small_gpu)
    out = tmp_path / "o"
    code, _ = run_cli("run", d, "--out", out, "--model", e2v_dir, *args)
    assert code == 0
    a, b = open_results(out), open_results(ref)
    ids = sorted(b.labels.utt_id)
    assert sorted(a.labels.utt_id) == ids and len(a.labels) == 20  # nothing lost, nothing twice
    np.testing.assert_allclose(a.embeddings(ids), b.embeddings(ids), atol=2e-5)
    backoffs = a.manifest["oom_backoffs"]
    assert backoffs and backoffs[-1]["new_max_padded_samples"] <= 3 * 16000
    assert len(ooms) <= 2  # learned: later batches are cut before they run


def test_fp16_saved_transformers_model_runs_in_float32_on_cpu(tmp_path):
    """transformers 5 loads a checkpoint in its saved dtype; fp16 weights with float32 inputs
    fail on the CPU ("Input type (float) and bias type (c10::Half)")."""
    from transformers import AutoModelForAudioClassification

    from batchser.models.hf import TransformersBackend
    from batchser.testmodels import make_wav2vec2_classifier_dir
    from conftest import speechlike

    d = make_wav2vec2_classifier_dir(tmp_path / "w", attention_mask=True)
    m = AutoModelForAudioClassification.from_pretrained(d)
    m.half().save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "float16"
    be = TransformersBackend(str(d), device="cpu", dtype="float32")
    assert next(be.model.parameters()).dtype == torch.float32
    wavs = [speechlike(12000, 1), speechlike(20000, 2)]
    got = be.forward(wavs)
    ref_model = AutoModelForAudioClassification.from_pretrained(d, dtype=torch.float32).eval()
    for i, w in enumerate(wavs):
        x = be.fe([w], sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
        with torch.no_grad():
            logits = ref_model(x.input_values, attention_mask=x.attention_mask).logits
        np.testing.assert_allclose(got.scores[i], torch.softmax(logits, -1)[0].numpy(), atol=1e-5)


def test_device_lists_are_checked_in_the_parent(monkeypatch):
    from batchser import policy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert policy.parse_devices("cuda") == ["cuda:0"]
    assert policy.parse_devices("cuda:1,cuda:0") == ["cuda:1", "cuda:0"]
    with pytest.raises(ValueError, match="twice"):
        policy.parse_devices("cuda,cuda:0")
    with pytest.raises(ValueError, match="cuda:2.*2 CUDA devices"):
        policy.parse_devices("cuda:0,cuda:2")
    with pytest.raises(ValueError, match="not a device"):
        policy.parse_devices("gpu0")


def test_threads_are_shared_among_device_processes():
    from batchser.policy import threads_per_device

    assert threads_per_device(2, cores=16) == 8
    assert threads_per_device(3, cores=2) == 1


def test_attention_bias_built_once_per_forward_not_per_layer(e2v_backend, monkeypatch):
    """The ALiBi slopes live on the model's device and each query block's bias is built once per
    forward for all layers (one shared scale), not once per layer: same results."""
    from batchser.models import emotion2vec as e2v
    from conftest import speechlike

    wavs = [speechlike(16000, 1), speechlike(23000, 2)]
    ref = e2v_backend.forward(wavs)
    built = []
    orig = e2v.LazyAlibi.block

    def spy(self, q0, q1, n, device):
        built.append((q0, q1))
        return orig(self, q0, q1, n, device)

    monkeypatch.setattr(e2v.LazyAlibi, "block", spy)
    got = e2v_backend.forward(wavs)
    n_layers = len(e2v_backend.model.blocks) + len(e2v_backend.model.modality_encoders["AUDIO"].context_encoder.blocks)
    assert n_layers > 1 and len(built) == len(set(built))  # each block once, whatever the depth
    np.testing.assert_array_equal(got.embeddings, ref.embeddings)
    np.testing.assert_array_equal(got.scores, ref.scores)
    monkeypatch.setattr(e2v, "ALIBI_CACHE_ELEMENTS", 0)  # no cache: rebuilt per layer, same values
    built.clear()
    again = e2v_backend.forward(wavs)
    assert len(built) == n_layers * len(set(built))
    np.testing.assert_array_equal(again.embeddings, ref.embeddings)


def test_decoders_default_to_every_core_on_a_gpu(monkeypatch):
    import os

    from batchser import loader

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert loader.default_decoders("cpu") == 8  # the model shares the cores on a CPU
    assert loader.default_decoders("cuda:0") == 15  # a GPU waits for audio otherwise
    assert loader.default_decoders("cuda:0", n_devices=4) == 3
    assert loader.decoder_count(-1, "cuda:0") == 15 and loader.decoder_count(2, "cuda:0") == 2


def test_decoders_hand_waveforms_over_in_shared_memory(tmp_path, make_corpus):
    from batchser.audio import load_utterance
    from batchser.corpus import read_corpus
    from batchser.loader import DecodeDataset, make_loader

    d = make_corpus({"a": 0.5, "b": 0.3})
    utts = read_corpus(d).utterances
    item = DecodeDataset(utts, pipe_timeout=10, min_samples=400, shared_memory=True)[0]
    assert isinstance(item.wave, torch.Tensor)  # what crosses the process boundary: a tensor
    batches = list(make_loader(utts, [[0, 1]], pipe_timeout=10, min_samples=400, features=False, num_decoders=1))
    got = {utts[it.index].utt_id: it.wave for it in batches[0]}
    for u in utts:  # numpy again on this side, equal to decoding in this process
        assert isinstance(got[u.utt_id], np.ndarray)
        np.testing.assert_array_equal(got[u.utt_id], load_utterance(u))


def test_several_devices_in_a_shard_write_into_the_shards_directory(e2v_dir, tmp_path, make_corpus):
    """The device processes of a --shard run write into OUT/shards/..., not into OUT itself."""
    d = make_corpus({f"u{i}": 0.4 + 0.1 * i for i in range(6)})
    out = tmp_path / "o"
    for i in range(2):
        code, msg = run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/2", "--devices", "cpu,cpu",
                            "--num-workers", "0", "-q")
        assert code == 0, msg
    assert not (out / "labels").exists()
    assert run_cli("merge", out)[0] == 0
    assert sorted(open_results(out).labels.utt_id) == [f"u{i}" for i in range(6)]
