"""Start-up: a run imports only the parts of funasr emotion2vec needs, and funasr stays whole
for any other code in the process."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO


def test_loading_emotion2vec_imports_only_its_funasr_modules_and_funasr_stays_usable(e2v_dir):
    code = textwrap.dedent(f"""
        import sys
        from batchser.models import load_backend
        b = load_backend({str(e2v_dir)!r}, device="cpu", dtype="float32", hub="auto", backend="auto")
        n = len([m for m in sys.modules if m.startswith("funasr.")])
        assert "funasr.models.paraformer.model" not in sys.modules, "all of funasr was imported"
        print("lean", n)
        import funasr
        from funasr import AutoModel  # the rest of funasr on first use
        assert "funasr.models.paraformer.model" in sys.modules and callable(funasr.get_import_errors)
        am = AutoModel(model={str(e2v_dir)!r}, device="cpu", disable_update=True, disable_pbar=True)
        assert type(am.model) is type(b.model)
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ok" in p.stdout and int(p.stdout.split("lean")[1].split()[0]) < 60


def test_speaker_clustering_is_imported_only_when_used(e2v_dir):
    """funasr's auto_model imports its clustering back-end (and scikit-learn, ~1.9 s) at import:
    a run loads a stand-in instead; funasr's ClusterBackend still works when called, and an
    import of that module afterwards gets the real one."""
    code = textwrap.dedent(f"""
        import sys
        from batchser.models import load_backend
        load_backend({str(e2v_dir)!r}, device="cpu", dtype="float32", hub="auto", backend="auto")
        assert "sklearn" not in sys.modules, "scikit-learn was imported by a run"
        import funasr.auto.auto_model as am
        cb = am.ClusterBackend()
        from funasr.models.campplus.cluster_backend import ClusterBackend
        assert type(cb) is ClusterBackend and "sklearn" in sys.modules
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ok" in p.stdout
