"""Real recordings from ../shared/corpora (non-commercial; never copied here). Skipped when absent."""
from __future__ import annotations

import pytest

from conftest import RAVDESS

pytestmark = pytest.mark.skipif(not (RAVDESS / "wav.scp").exists(), reason="../shared/corpora/ravdess absent")


def test_ravdess_reads_decodes_and_runs(e2v_dir, tmp_path):
    from batchser import open_results
    from batchser.audio import load_utterance
    from batchser.corpus import read_corpus
    from batchser.runner import RunConfig, run

    c = read_corpus(RAVDESS, audio_root=str(RAVDESS))
    assert len(c.utterances) >= 100 and not c.errors
    assert len({u.spk for u in c.utterances}) == 2 and all(u.ref_label for u in c.utterances)
    y = load_utterance(c.utterances[0])  # 48 kHz -> 16 kHz
    assert 2.0 < len(y) / 16000 < 6.0
    # a small subset through the whole pipeline, with the wav.scp paths relative to the corpus dir
    sub = tmp_path / "sub"
    sub.mkdir()
    lines = (RAVDESS / "wav.scp").read_text().splitlines()[:12]
    (sub / "wav.scp").write_text("\n".join(lines) + "\n")
    s = run(RunConfig(input=str(sub), out=str(tmp_path / "o"), model=str(e2v_dir), audio_root=str(RAVDESS),
                      num_workers=1, progress=False), log=lambda *_: None)
    assert s.n_ok == 12 and s.n_errors == 0
    assert len(open_results(tmp_path / "o").labels) == 12
