"""Every README example marked as working offline (a ``bash`` block right after the line
``<!-- offline example -->``) runs as written, here, without a hub: exit 0 for each line."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- offline example -->"
SHARED = Path(os.environ.get("BATCHSER_SHARED", ROOT.parent / "shared"))


def offline_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(re.escape(MARK) + r"\s*```bash\n(.*?)```", text, re.S)]


def test_the_readme_marks_its_offline_examples():
    blocks = offline_blocks()
    assert len(blocks) >= 3
    assert any("--asr tiny.en-offline" in b for b in blocks)


@pytest.mark.parametrize("k", range(len(offline_blocks())))
def test_offline_readme_example_runs(k, tmp_path):
    block = offline_blocks()[k]
    if "../shared" in block and not (SHARED / "corpora" / "ravdess").is_dir():
        pytest.skip("needs ../shared/corpora/ravdess")
    # the checkout's sample corpus and shared/ beside it, outputs in a fresh folder; /tmp paths kept apart
    work = tmp_path / "repo"
    work.mkdir()
    (work / "sample_scp").symlink_to(ROOT / "sample_scp")
    (tmp_path / "shared").symlink_to(SHARED)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "BATCHSER_OFFLINE": "1"}
    for line in block.splitlines():
        cmd = line.split(" #")[0].strip()
        if not cmd or cmd.startswith("#") or cmd.startswith("pip "):
            continue
        cmd = cmd.replace("/tmp/", f"{tmp_path}/tmp/")
        (tmp_path / "tmp").mkdir(exist_ok=True)
        args = shlex.split(cmd)
        assert args[0] == "batchser", cmd
        r = subprocess.run([sys.executable, "-m", "batchser", *args[1:], "-q"] if args[1] == "run" else
                           [sys.executable, "-m", "batchser", *args[1:]], cwd=work, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
