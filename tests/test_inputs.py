"""Inputs beyond Kaldi data dirs: one file, a list of paths, a folder, lhotse manifests."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from batchser.corpus import CorpusError, read_corpus
from conftest import speechlike, write_wav


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "audio"
    write_wav(root / "call1" / "agent.wav", speechlike(8000, 1))
    write_wav(root / "call1" / "client side.wav", speechlike(9000, 2))
    write_wav(root / "solo.wav", speechlike(7000, 3))
    import soundfile as sf

    sf.write(str(root / "solo.flac"), speechlike(7000, 4), 16000)  # same stem as solo.wav
    (root / "notes.txt").write_text("not audio")
    return root


def test_folder_is_searched_recursively_with_deterministic_ids(tree):
    c = read_corpus(tree)
    # sorted paths: solo.flac comes first and takes "solo"; solo.wav keeps its extension
    assert [u.utt_id for u in c.utterances] == ["call1/agent", "call1/client_side", "solo", "solo.wav"]
    assert sorted(u.utt_id for u in read_corpus(tree, extensions=["flac"]).utterances) == ["solo"]
    with pytest.raises(CorpusError, match="without audio files"):
        read_corpus(tree, extensions=["mp3"])


def test_one_file_a_list_and_a_folder_run_like_a_wav_scp(e2v_dir, tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tree / "call1" / "agent.wav"
    code, _ = run_cli("run", f, "--out", tmp_path / "one", "--model", e2v_dir, "--num-workers", "0", "-q")
    assert code == 0 and list(open_results(tmp_path / "one").labels.utt_id) == ["agent"]
    lst = tmp_path / "files.txt"
    lst.write_text(f"audio/call1/agent.wav\n{tree / 'solo.wav'}\naudio/missing.wav\n# a comment line\n")
    code, _ = run_cli("run", lst, "--out", tmp_path / "lst", "--model", e2v_dir, "--num-workers", "0", "-q")
    r = open_results(tmp_path / "lst")
    assert code == 1 and sorted(r.labels.utt_id) == ["call1/agent", "solo"]
    assert len(r.errors) == 1 and "files.txt:3" in r.errors.message[0]  # the comment line is no error
    code, _ = run_cli("run", tree, "--out", tmp_path / "dir", "--model", e2v_dir, "--num-workers", "0", "-q",
                      "--ext", "wav")
    d = open_results(tmp_path / "dir")
    assert code == 0 and sorted(d.labels.utt_id) == ["call1/agent", "call1/client_side", "solo"]
    # the same audio gives the same numbers whichever way it came in
    np.testing.assert_allclose(d.embeddings(["call1/agent"]), open_results(tmp_path / "one").embeddings(["agent"]),
                               atol=1e-6)


def test_lhotse_cutset_supervisions_become_utterances(e2v_dir, tmp_path):
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

    p = write_wav(tmp_path / "rec.wav", speechlike(16000 * 4, 5))
    rec = Recording.from_file(p, recording_id="rec")
    sups = SupervisionSet.from_segments([
        SupervisionSegment("s1", "rec", start=0.5, duration=1.0, speaker="A", custom={"emotion": "happy"}),
        SupervisionSegment("s2", "rec", start=2.0, duration=1.5, speaker="B")])
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings([rec]), supervisions=sups)
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    RecordingSet.from_recordings([rec]).to_file(tmp_path / "recs.jsonl.gz")
    c = read_corpus(tmp_path / "cuts.jsonl.gz")
    got = {u.utt_id: (u.rec_id, u.start, u.end, u.spk, u.ref_label) for u in c.utterances}
    assert got == {"s1": ("rec", 0.5, 1.5, "A", "happy"), "s2": ("rec", 2.0, 3.5, "B", None)}
    assert [u.utt_id for u in read_corpus(tmp_path / "recs.jsonl.gz").utterances] == ["rec"]
    code, _ = run_cli("run", tmp_path / "cuts.jsonl.gz", "--out", tmp_path / "o", "--model", e2v_dir,
                      "--num-workers", "0", "-q")
    lab = open_results(tmp_path / "o").labels.set_index("utt_id")
    assert code == 0 and lab.loc["s2", "duration"] == pytest.approx(1.5) and lab.loc["s1", "spk"] == "A"
    assert lab.loc["s1", "ref_label"] == "happy"
