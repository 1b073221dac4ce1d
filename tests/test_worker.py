"""Model worker: windows for long utterances, and failure isolation."""
from __future__ import annotations

import numpy as np
import pytest

from batchser.worker import MemoryBudget, ModelFailure, run_items, split_windows
from conftest import speechlike


@pytest.mark.parametrize("n,m", [(100, 100), (101, 100), (1000, 300), (16000 * 61, 16000 * 20), (5, 2)])
def test_split_windows_cover_equally(n, m):
    w = split_windows(n, m)
    assert w[0][0] == 0 and w[-1][1] == n
    assert all(a2 == b1 for (_, b1), (a2, _) in zip(w, w[1:]))
    sizes = [b - a for a, b in w]
    assert max(sizes) <= m and max(sizes) - min(sizes) <= len(w)


def test_short_items_are_untouched(e2v_backend):
    wavs = [speechlike(n, i) for i, n in enumerate([8000, 20000])]
    res, real, padded = run_items(e2v_backend, wavs, frames=True, max_samples=10**9)
    ref = e2v_backend.forward(wavs, frames=True)
    for i, r in enumerate(res):
        np.testing.assert_array_equal(r.embedding, ref.embeddings[i])
        np.testing.assert_array_equal(r.scores, ref.scores[i])
        np.testing.assert_array_equal(r.frames, ref.frames[i])
    assert real == 28000 and padded == 40000


def test_long_item_combines_windows_by_frame_weighted_mean(e2v_backend):
    long = speechlike(16000 * 5 + 123, 7)
    short = speechlike(9000, 8)
    res, _, _ = run_items(e2v_backend, [long, short], frames=True, max_samples=16000 * 2)
    r = res[0]
    assert r.windows == 3 and res[1].windows == 1
    wins = [long[a:b] for a, b in split_windows(len(long), 16000 * 2)]
    parts = e2v_backend.forward(wins, frames=True)
    counts = np.array([len(f) for f in parts.frames])
    expect = (parts.embeddings * counts[:, None]).sum(0) / counts.sum()
    np.testing.assert_allclose(r.embedding, expect, atol=1e-6)
    np.testing.assert_allclose(r.frames, np.concatenate(parts.frames), atol=1e-6)
    np.testing.assert_allclose(r.embedding, r.frames.mean(0), atol=1e-5)  # = mean over all frames
    np.testing.assert_allclose(r.scores, e2v_backend.scores_from_embedding(r.embedding[None])[0], atol=1e-7)
    assert abs(r.scores.sum() - 1) < 1e-5
    # the short item beside it is unaffected
    np.testing.assert_allclose(res[1].embedding, e2v_backend.forward([short]).embeddings[0], atol=2e-5)


def test_window_out_of_memory_even_alone_fails_only_its_utterance(e2v_backend, monkeypatch):
    orig = type(e2v_backend).forward
    bad = 16000 * 2 + 7

    def flaky(self, wavs, frames=False):
        if any(len(w) == bad for w in wavs):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return orig(self, wavs, frames)

    monkeypatch.setattr(type(e2v_backend), "forward", flaky)
    wavs = [speechlike(bad * 2, 1), speechlike(8000, 2)]  # first splits into two windows of `bad`
    res, _, _ = run_items(e2v_backend, wavs, frames=False, max_samples=bad)
    assert res[0].error and "out of memory even alone" in res[0].error and res[0].windows == 2
    assert res[1].error is None and res[1].embedding is not None


def test_other_model_errors_are_not_blamed_on_utterances(e2v_backend, monkeypatch):
    """A non-OOM failure (a dtype bug, a sticky CUDA error) raises at once: one call, no splitting."""
    calls = []

    def broken(self, wavs, frames=False):
        calls.append(len(wavs))
        raise RuntimeError("Input type (float) and bias type (c10::Half) should be the same")

    monkeypatch.setattr(type(e2v_backend), "forward", broken)
    with pytest.raises(ModelFailure, match="bias type"):
        run_items(e2v_backend, [speechlike(8000, i) for i in range(8)], frames=False, max_samples=10**9)
    assert calls == [8]


def test_oom_backoff_is_remembered(e2v_backend, monkeypatch):
    """After one OOM the budget is lower for every later batch: batches are cut before they run,
    results equal an unconstrained run."""
    orig = type(e2v_backend).forward
    limit = 3 * 16000  # padded samples the fake device holds
    ooms = []

    def small_gpu(self, wavs, frames=False):
        if len(wavs) * max(len(w) for w in wavs) > limit:
            ooms.append(len(wavs))
            raise RuntimeError("CUDA out of memory")
        return orig(self, wavs, frames)

    batches = [[speechlike(8000 + 50 * i + j, 10 * i + j) for j in range(6)] for i in range(4)]
    ref = [run_items(e2v_backend, b, frames=False, max_samples=10**9)[0] for b in batches]
    monkeypatch.setattr(type(e2v_backend), "forward", small_gpu)
    budget = MemoryBudget()
    got = [run_items(e2v_backend, b, frames=False, max_samples=10**9, budget=budget)[0] for b in batches]
    assert len(ooms) == 1 and len(budget.events) == 1  # learned in the first batch, never hit again
    for rb, gb in zip(ref, got):
        for r, g in zip(rb, gb):
            assert g.error is None
            np.testing.assert_allclose(g.embedding, r.embedding, atol=2e-5)


def test_scores_from_embedding_matches_forward(e2v_backend):
    w = speechlike(12000, 3)
    out = e2v_backend.forward([w])
    np.testing.assert_allclose(e2v_backend.scores_from_embedding(out.embeddings), out.scores, atol=1e-6)
