"""Model worker: windows for long utterances, and failure isolation."""
from __future__ import annotations

import numpy as np
import pytest

from batchser.worker import run_items, split_windows
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


def test_failing_window_fails_only_its_utterance(e2v_backend, monkeypatch):
    orig = type(e2v_backend).forward
    bad = 16000 * 2 + 7

    def flaky(self, wavs, frames=False):
        if any(len(w) == bad for w in wavs):
            raise RuntimeError("boom")
        return orig(self, wavs, frames)

    monkeypatch.setattr(type(e2v_backend), "forward", flaky)
    wavs = [speechlike(bad * 2, 1), speechlike(8000, 2)]  # first splits into two windows of `bad`
    res, _, _ = run_items(e2v_backend, wavs, frames=False, max_samples=bad)
    assert res[0].error and "boom" in res[0].error and res[0].windows == 2
    assert res[1].error is None and res[1].embedding is not None


def test_scores_from_embedding_matches_forward(e2v_backend):
    w = speechlike(12000, 3)
    out = e2v_backend.forward([w])
    np.testing.assert_allclose(e2v_backend.scores_from_embedding(out.embeddings), out.scores, atol=1e-6)
