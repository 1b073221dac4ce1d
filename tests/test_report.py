"""`batchser report` (issue 34): one self-contained HTML page, opened in a real headless Chromium
(Debian's package) with no console error and no network request; its figures are the metrics'."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from batchser.cli import main

SHARED = Path(os.environ.get("BATCHSER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def run_cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.output


def open_in_chromium(page: Path, tmp: Path):
    """Load ``page`` in headless Chromium: (screenshot path, console lines, URLs requested)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot, netlog = tmp / "shot.png", tmp / "net.json"
    # nothing may leave this machine: no host resolves, and Chromium's own background traffic is off
    quiet = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--disable-background-networking",
             "--disable-component-update", "--disable-domain-reliability", "--disable-sync", "--no-first-run",
             "--disable-default-apps", "--disable-client-side-phishing-detection", "--no-default-browser-check",
             "--disable-features=OptimizationHints,MediaRouter,Translate,NetworkTimeServiceQuerying"]
    r = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *quiet,
                        "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}", "--window-size=1200,2400",
                        f"--user-data-dir={tmp / 'profile'}", f"--screenshot={shot}", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10000, r.stderr[-2000:]
    console = [l for l in r.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    text = netlog.read_text(encoding="utf-8", errors="replace") if netlog.exists() else ""
    # the browser's own update and clock checks (host resolution refused above: nothing leaves) are not the page's
    own = re.compile(r"^https?://[^/]*(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)/")
    urls = {u for u in re.findall(r'"url":"([^"]+)"', text) if not own.match(u)}
    return shot, console, urls


@pytest.fixture
def evaluated(e2v_dir, tmp_path, make_corpus):
    utts = {f"u{i}": 0.5 + 0.1 * (i % 4) for i in range(8)}
    emo = "".join(f"u{i} {'happy' if i % 2 else 'sad'}\n" for i in range(8))
    spk = "".join(f"u{i} s{i % 3}\n" for i in range(8))
    d = make_corpus(utts, extra={"utt2emo": emo, "utt2spk": spk})
    with open(d / "wav.scp", "a") as f:
        f.write("gone /no/such.wav\n")
    out = tmp_path / "o"
    assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--num-workers", "0", "-q")[0] == 1
    assert run_cli("eval", out)[0] == 0
    return out


def cell(page: str, name: str) -> str:
    m = re.search(r"<td>" + re.escape(name) + r"</td><td class='n'>([^<]*)</td>", page)
    assert m, name
    return m.group(1)


def test_report_opens_offline_in_chromium_and_shows_the_metrics(evaluated, tmp_path):
    code, text = run_cli("report", evaluated)
    page_path = evaluated / "report.html"
    assert code == 0 and str(page_path) in text
    page = page_path.read_text(encoding="utf-8")
    assert "<script" not in page and not re.search(r"""(src|href)=['"]?https?:""", page)
    shot, console, urls = open_in_chromium(page_path, tmp_path)
    assert not console, console
    assert all(u.startswith(("file:", "data:")) for u in urls), urls
    m = json.loads((evaluated / "eval" / "metrics.json").read_text())
    assert cell(page, "UA (mean recall)") == f"{m['UA']:.4f}" and cell(page, "WA (accuracy)") == f"{m['WA']:.4f}"
    assert cell(page, "macro-F1") == f"{m['macro_f1']:.4f}"
    rows = re.findall(r"<tr><td>(\w+)</td>((?:<td class='n'>\d+</td>)+)</tr>", page.split("Confusion matrix")[1])
    got = {r: [int(x) for x in re.findall(r">(\d+)<", cells)] for r, cells in rows[:len(m["confusion"]["rows"])]}
    assert got == dict(zip(m["confusion"]["rows"], m["confusion"]["matrix"]))
    assert "RANDOM-WEIGHT TEST model" in page  # in red at the top
    assert "gone" in page and "decode" in page or "read" in page  # the error row and its stage
    assert "By speaker (3 speakers)" in page


def test_report_of_an_interrupted_run_says_so_at_the_top(evaluated):
    man = json.loads((evaluated / "manifest.json").read_text())
    man["status"] = "interrupted"
    (evaluated / "manifest.json").write_text(json.dumps(man))
    run_cli("report", evaluated, "--out", evaluated / "r.html")
    page = (evaluated / "r.html").read_text()
    assert page.index("This run is interrupted") < page.index("<h2>Run</h2>")


def test_report_without_references_or_features_and_of_a_merged_run(e2v_dir, tmp_path, make_corpus):
    d = make_corpus({f"u{i}": 0.6 for i in range(4)})
    out = tmp_path / "o"
    for i in (0, 1):
        assert run_cli("run", d, "--out", out, "--model", e2v_dir, "--shard", f"{i}/2", "--num-workers", "0",
                       "-q")[0] == 0
    assert run_cli("merge", out)[0] == 0
    assert run_cli("report", out)[0] == 0
    page = (out / "report.html").read_text()
    assert "Shards (2 merged)" in page and "Against the references" not in page
    assert page.count("<tr><td class='n'>") >= 2  # one row per shard


def test_500_speakers_stay_readable(tmp_path):
    from batchser.store import OutputWriter

    labels = ["angry", "happy", "sad"]
    rng = np.random.default_rng(0)
    w = OutputWriter(tmp_path / "o", labels, "m", settings={"labels": labels})
    rows = []
    for i in range(1500):
        p = rng.dirichlet(np.ones(3))
        rows.append({"utt_id": f"u{i}", "rec_id": f"u{i}", "spk": f"spk{i % 500:03d}", "start": 0.0, "end": 1.0,
                     "duration": 1.0, "label": labels[int(p.argmax())], "score": float(p.max()),
                     **{f"score_{l}": float(v) for l, v in zip(labels, p)}})
    w.add(rows, rng.normal(size=(len(rows), 4)).astype(np.float32))
    w.flush()
    w.write_manifest({"status": "complete", "model": {"id": "m", "labels": labels}, "counts": {"input": 1500}})
    assert run_cli("report", tmp_path / "o")[0] == 0
    page = (tmp_path / "o" / "report.html").read_text()
    part = page.split("By speaker (500 speakers")[1].split("</table>")[0]
    assert part.count("<tr>") == 1 + 20 + 1  # header, the largest 20, "other 480 speakers"
    assert "other 480 speakers" in part


@pytest.mark.skipif(not (SHARED / "corpora" / "ravdess").is_dir(), reason="needs ../shared/corpora/ravdess")
def test_report_of_a_ravdess_run_with_eval(e2v_dir, tmp_path):
    c = SHARED / "corpora" / "ravdess"
    out = tmp_path / "o"
    assert run_cli("run", c, "--audio-root", c, "--out", out, "--model", e2v_dir, "--num-workers", "1", "-q")[0] == 0
    assert run_cli("eval", out, "--label-map", "ravdess")[0] == 0
    assert run_cli("report", out)[0] == 0
    page = (out / "report.html").read_text()
    m = json.loads((out / "eval" / "metrics.json").read_text())
    assert cell(page, "UA (mean recall)") == f"{m['UA']:.4f}"
    _, console, urls = open_in_chromium(out / "report.html", tmp_path)
    assert not console and all(u.startswith(("file:", "data:")) for u in urls)
