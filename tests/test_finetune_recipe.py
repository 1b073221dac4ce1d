"""recipes/finetune: Trainer fine-tuning driven by a Kaldi data dir; batchser runs the result unchanged."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from conftest import REPO, speechlike, write_wav

pytest.importorskip("accelerate")  # transformers' Trainer needs it


def test_a_few_steps_on_cpu_then_batchser_run_equals_the_pipeline(tmp_path):
    from transformers import pipeline

    from batchser.testmodels import make_wav2vec2_classifier_dir

    base = make_wav2vec2_classifier_dir(tmp_path / "base", seed=9)  # 4 classes; the data has 3 others
    d = tmp_path / "data"
    d.mkdir()
    emos = ["calm", "angry", "sad"]
    files = {}
    for s in range(4):
        for j in range(3):
            u = f"spk{s}-{j}"
            files[u] = write_wav(tmp_path / "wav" / f"{u}.wav", speechlike(6000 + 2500 * j + 900 * s, seed=200 + 7 * s + j))
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in files.items()))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in files))
    (d / "utt2emo").write_text("".join(f"{u} {emos[int(u[-1])]}\n" for u in files))
    ft = tmp_path / "ft"
    r = subprocess.run([sys.executable, str(REPO / "recipes" / "finetune" / "finetune.py"), str(d), "--model", str(base),
                        "--out", str(ft), "--max-steps", "3", "--batch-size", "4", "--max-seconds", "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    info = json.loads((ft / "finetune.json").read_text())
    assert info["classes"] == ["angry", "calm", "sad"] and info["held_out_speakers"]
    held = set(info["held_out_speakers"])
    assert info["held_out"] == 3 * len(held)  # whole speakers held out
    cfg = json.loads((ft / "config.json").read_text())
    assert [cfg["id2label"][str(i)] for i in range(3)] == ["angry", "calm", "sad"]
    assert (ft / "BATCHSER_TEST_MODEL").exists()
    # the weights moved: the head is new (3 classes) and the encoder was trained for 3 steps
    from safetensors.numpy import load_file

    a, b = load_file(str(base / "model.safetensors")), load_file(str(ft / "model.safetensors"))
    moved = [k for k in a if k in b and a[k].shape == b[k].shape and not np.allclose(a[k], b[k])]
    assert any(k.startswith("wav2vec2.encoder") for k in moved)
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["run", str(d), "--out", str(out), "--model", str(ft), "--num-workers", "0", "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    df = open_results(out).labels.set_index("utt_id")
    clf = pipeline("audio-classification", model=str(ft), device="cpu")
    for u, p in files.items():
        x, sr = sf.read(p, dtype="float32")
        ref = {o["label"]: o["score"] for o in clf({"raw": x, "sampling_rate": sr}, top_k=None)}
        got = {c: df.loc[u, f"score_{c}"] for c in ("angry", "calm", "sad")}
        np.testing.assert_allclose([got[c] for c in sorted(ref)], [ref[c] for c in sorted(ref)], atol=2e-5, err_msg=u)
    res = CliRunner().invoke(main, ["eval", str(out), "--no-plot"], catch_exceptions=False)
    assert res.exit_code == 0 and "TEST model" in res.output and "calm" in res.output
