"""--features egemaps: openSMILE's 88 eGeMAPSv02 functionals beside each prediction."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner

from batchser import open_results
from batchser.cli import main
from conftest import speechlike, write_wav

opensmile = pytest.importorskip("opensmile")
SR = 16000


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def _reference(path) -> pd.Series:
    s = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
    return s.process_file(str(path)).iloc[0]


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    files = {f"u{i}": write_wav(tmp_path / "wav" / f"u{i}.wav", speechlike(int(s * SR), seed=70 + i))
             for i, s in enumerate([2.5, 1.1, 4.0])}
    if shutil.which("espeak-ng"):  # real voicing too
        p = tmp_path / "es.wav"
        subprocess.run(["espeak-ng", "-w", str(p), "Good morning, how are you today?"], check=True)
        import soxr

        x, sr = sf.read(p, dtype="float32")
        files["speech"] = write_wav(tmp_path / "wav" / "speech.wav", soxr.resample(x, sr, SR).astype(np.float32))
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in files.items()))
    (d / "utt2spk").write_text("".join(f"{u} spk\n" for u in files))
    return d, files


def test_run_adds_the_88_functionals_equal_to_opensmile_process_file(data, e2v_dir, tmp_path):
    d, files = data
    out = tmp_path / "o"
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--features", "egemaps", "--num-workers", 1, "-q")
    assert code == 0, text
    df = open_results(out).labels.set_index("utt_id")
    cols = [c for c in df.columns if c.startswith("egemaps_")]
    assert len(cols) == 88
    assert "egemaps_F0semitoneFrom27_5Hz_sma3nz_amean" in cols and "egemaps_loudness_sma3_amean" in cols
    assert not any(c.startswith("f0_") for c in df.columns)  # prosody was not asked for
    for u, p in files.items():
        ref = _reference(p)
        assert len(ref) == 88
        np.testing.assert_allclose(df.loc[u, cols].to_numpy(dtype=np.float64), ref.to_numpy(dtype=np.float64),
                                   rtol=1e-6, atol=1e-7, err_msg=u)
    assert json.loads((out / "settings.json").read_text())["features"] == "egemaps"
    # a resume asking for other features is refused: other columns
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--features", "prosody,egemaps")
    assert code == 2 and "features" in text


def test_both_sets_in_a_run_and_in_batchser_features(data, e2v_dir, tmp_path):
    d, files = data
    out = tmp_path / "o"
    code, text = run_cli("run", d, "--out", out, "--model", e2v_dir, "--features", "egemaps,prosody",
                         "--num-workers", 0, "-q")
    assert code == 0, text
    res = open_results(out)
    df = res.labels.set_index("utt_id")
    assert json.loads((out / "settings.json").read_text())["features"] == "prosody,egemaps"  # one spelling
    assert (out / "explanations.parquet").exists()  # prosody's explanations still come with it
    if "speech" in files:  # where both measure the same thing they agree (docs/performance.md: how closely)
        st100 = df.loc["speech", "egemaps_F0semitoneFrom27_5Hz_sma3nz_amean"] - 12 * np.log2(100 / 27.5)
        assert abs(st100 - df.loc["speech", "f0_mean_st"]) < 2.5  # espeak-ng: 1.6 st; RAVDESS: median 0.3 st
    fo = tmp_path / "f"
    code, text = run_cli("features", d, "--out", fo, "--set", "egemaps", "--num-workers", 0)
    assert code == 0, text
    ft = pd.concat([pd.read_parquet(p) for p in sorted((fo / "features").glob("part-*.parquet"))]).set_index("utt_id")
    cols = [c for c in ft.columns if c.startswith("egemaps_")]
    assert len(cols) == 88 and not (fo / "explanations.parquet").exists()
    np.testing.assert_allclose(ft.loc[list(files), cols].to_numpy(), df.loc[list(files), cols].to_numpy(), rtol=1e-9)
    code, text = run_cli("features", d, "--out", tmp_path / "g", "--set", "mfcc")
    assert code == 2 and "unknown feature set" in text
