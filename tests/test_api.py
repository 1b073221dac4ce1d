"""The Python API: batchser.run and EmotionRecognizer.predict equal a CLI run on the same audio."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import batchser
from conftest import speechlike, write_wav


def test_predict_equals_run_on_the_same_files(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({"a": 0.7, "b": 2.3, "c": 1.1, "d": 0.5}, sr=22050)
    s = batchser.run(d, out=tmp_path / "o", model=str(e2v_dir), num_workers=0)
    assert s.n_ok == 4 and s.n_failed_total == 0
    ref = batchser.open_results(tmp_path / "o")
    files = [tmp_path / "wav" / f"{u}.wav" for u in "abcd"]
    rec = batchser.EmotionRecognizer(model=str(e2v_dir), device="cpu")
    pred = rec.predict(files)
    assert list(pred.labels.utt_id) == ["a", "b", "c", "d"]  # input order, ids from the file names
    r = ref.labels.set_index("utt_id").loc[["a", "b", "c", "d"]]
    score_cols = [c for c in r.columns if c.startswith("score_")]
    np.testing.assert_allclose(pred.labels[score_cols].to_numpy(), r[score_cols].to_numpy(), atol=1e-5)
    assert list(pred.labels.label) == list(r.label)
    np.testing.assert_allclose(pred.embeddings, ref.embeddings(list("abcd")), atol=2e-5)
    np.testing.assert_allclose(pred.labels.duration.to_numpy(), r.duration.to_numpy())


def test_predict_takes_arrays_with_their_rate(e2v_dir, tmp_path):
    x = speechlike(8000 * 2, 5, sr=8000)
    p = write_wav(tmp_path / "x.wav", x, 8000)
    rec = batchser.EmotionRecognizer(model=str(e2v_dir), device="cpu")
    from_file = rec.predict(str(p))
    from_array = rec.predict([x], sampling_rate=8000, ids=["x"])
    np.testing.assert_allclose(from_array.embeddings, from_file.embeddings, atol=1e-6)
    stereo = np.stack([x, x], axis=1)
    np.testing.assert_allclose(rec.predict(stereo, sampling_rate=8000).embeddings, from_file.embeddings, atol=1e-6)
    np.testing.assert_allclose(rec.predict(stereo.T, sampling_rate=8000).embeddings, from_file.embeddings,
                               atol=1e-6)  # channels first, as torchaudio loads
    empty = rec.predict([])
    assert len(empty.labels) == 0 and "score" in empty.labels.columns and empty.embeddings.shape == (0, rec.backend.embed_dim)
    with pytest.raises(ValueError, match="sampling_rate"):
        rec.predict([x])
    bad = x.copy()
    bad[3] = np.nan
    from batchser.audio import AudioError

    with pytest.raises(AudioError, match="input 1.*NaN"):
        rec.predict([x, bad], sampling_rate=8000)
