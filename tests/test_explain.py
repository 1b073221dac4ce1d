"""`batchser explain` (issue 35): prompts from each row's label and features against its speaker,
batched greedy generation equal to one prompt at a time, an explanations/ table through the
store that a rerun after kill -9 completes, failures as error rows, a clear error without
features. Uses the random-weight Llama of `make-test-model --kind causal-lm` (a real tokenizer
and chat template): offline."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from batchser.cli import main


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    from batchser.testmodels import make_causal_lm_dir

    return make_causal_lm_dir(tmp_path_factory.mktemp("llm") / "clm")


@pytest.fixture
def featured(e2v_dir, tmp_path, make_corpus):
    utts = {f"u{i}": 0.6 + 0.15 * (i % 4) for i in range(10)}
    spk = "".join(f"u{i} {'a' if i < 5 else 'b'}\n" for i in range(10))
    d = make_corpus(utts, extra={"utt2spk": spk})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--features", "prosody", "--num-workers", "0",
                   "-q")[0] == 0
    return out


def texts(out):
    return pd.read_parquet(out / "explanations").set_index("utt_id").sort_index()


def test_batched_generation_equals_one_prompt_at_a_time(featured, llm, tmp_path):
    from batchser import open_results

    labels_before = open_results(featured).labels
    other = tmp_path / "copy"
    shutil.copytree(featured, other)
    assert run_cli("explain", featured, "--llm", llm, "--batch-size", "4", "--max-new-tokens", "24", "-q")[0] == 0
    assert run_cli("explain", other, "--llm", llm, "--batch-size", "1", "--max-new-tokens", "24", "-q")[0] == 0
    a, b = texts(featured), texts(other)
    assert len(a) == 10 and list(a.index) == list(b.index)
    assert a.text.tolist() == b.text.tolist()
    assert sum(bool(t) for t in a.text) >= 5  # the test model writes something: the comparison means something
    assert a.error.isna().all()
    assert labels_before.equals(open_results(featured).labels)  # explain never touches labels or scores


def test_prompts_carry_the_rows_label_scores_and_features_against_the_speaker(featured):
    from batchser import open_results
    from batchser.llm import DEFAULT_PROMPT, prompts_of

    df = open_results(featured).labels
    prompts = prompts_of(df, DEFAULT_PROMPT.read_text())
    med = df[df.spk == "a"].f0_median_st.median()
    for p, r in zip(prompts, df.itertuples()):
        assert f'"{r.label}"' in p and f"{r.score:.2f}" in p
        assert f"{r.f0_median_st:.2f} st" in p and f"{r.loud_mean_dbfs:.2f} dB" in p
        assert "speaker median" in p
        if r.spk == "a":
            assert f"median {med:.2f} st, {r.f0_median_st - med:+.2f}" in p
    assert not (featured / "explanations").exists()  # building prompts writes nothing


def test_a_killed_explain_resumes_with_every_row_once(featured, llm):
    cmd = [sys.executable, "-m", "batchser", "explain", str(featured), "--llm", str(llm), "--batch-size", "1",
           "--part-size", "1", "--max-new-tokens", "200", "-q"]
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and len(list((featured / "explanations").glob("part-*.parquet"))) < 2:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    n = len(list((featured / "explanations").glob("part-*.parquet")))
    assert 2 <= n < 10
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    t = pd.read_parquet(featured / "explanations")
    assert sorted(t.utt_id) == sorted(f"u{i}" for i in range(10))  # every row once


def test_without_features_is_a_clear_error(e2v_dir, tmp_path, make_corpus, llm):
    d = make_corpus({"a": 0.6})
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 0
    code, text = run_cli("explain", out, "--llm", llm)
    assert code == 2 and "--features prosody" in text


def test_a_failing_generation_is_an_error_row_and_a_broken_model_stops(featured):
    from batchser.llm import ExplainFailure, explain

    class Picky:
        def __call__(self, prompts):
            if any("u3" in p for p in prompts):
                raise RuntimeError("cannot")
            return [f"ok {len(p)}" for p in prompts]

    r = explain(str(featured), llm="picky", generator=Picky(), batch_size=4, log=lambda *_: None)
    assert r.written == 9 and r.failed == 1
    t = texts(featured)
    assert pd.isna(t.loc["u3", "text"]) and "cannot" in t.loc["u3", "error"]
    assert t.drop("u3").error.isna().all() and t.drop("u3").text.str.startswith("ok ").all()

    class Broken:
        def __call__(self, prompts):
            raise RuntimeError("no device")

    shutil.rmtree(featured / "explanations")
    with pytest.raises(ExplainFailure):
        explain(str(featured), llm="broken", generator=Broken(), batch_size=4, log=lambda *_: None)


def test_a_damaged_part_is_named_and_a_rerun_with_nothing_left_loads_no_model(featured, llm, monkeypatch):
    assert run_cli("explain", featured, "--llm", llm, "--max-new-tokens", "8", "-q")[0] == 0
    import batchser.llm as mod

    def no(*a, **k):
        raise AssertionError("the language model was loaded")

    monkeypatch.setattr(mod, "load_generator", no)
    code, text = run_cli("explain", featured, "--llm", llm, "--max-new-tokens", "8", "-q")
    assert code == 0 and "10 already done" in text
    code, text = run_cli("explain", featured, "--llm", llm, "--max-new-tokens", "9", "-q")
    assert code == 2 and "max_new_tokens" in text  # other settings: refused before loading anything
    part = sorted((featured / "explanations").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    code, text = run_cli("verify", featured)
    assert code == 1 and f"explanations/{part.name}" in text and "batchser explain" in text
    code, text = run_cli("explain", featured, "--llm", llm, "--max-new-tokens", "8", "-q")
    assert code == 2 and part.name in text and "batchser explain" in text
