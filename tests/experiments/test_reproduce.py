"""Every experiment end to end on tiny settings, and the report they produce."""

import json
import re
from pathlib import Path

import pytest

from cnnarch.experiments.common import Scale
from cnnarch.experiments.reproduce import reproduce, summary_lines
from cnnarch.report.render import CLAIM_IDS

TINY = Scale("tiny", depths=(20,), epochs=1, batch_size=32, lr=0.05, weight_decay=1e-4,
             schedule="cosine", warmup_epochs=0.0, aux_epochs=1, aux_iterations=2, aux_batch_size=16,
             probe_images=16, jacobian_blocks=1, timing_repeats=1)
DATA = "synthetic:1x8x8:4:64"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("report")
    try:
        results = reproduce(TINY, DATA, out, seed=0, device="cpu", command="test")
    finally:
        torch.set_num_threads(threads)  # reproduce picks its own thread count
    return out, results


def test_every_claim_has_a_computed_verdict(report):
    out, results = report
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk["claims"]) == set(CLAIM_IDS)
    for cid in CLAIM_IDS:
        c = on_disk["claims"][cid]
        assert c["verdict"] in ("reproduced", "not reproduced")
        assert c["rule"] and isinstance(c["measured"], dict) and c["measured"]
    for key in ("environment", "config", "command", "time_s"):
        assert key in on_disk
    assert on_disk["environment"]["torch"] and on_disk["config"]["data"] == DATA
    # counting claims do not depend on training: they hold even at the tiny scale
    for cid in ("G1", "G2", "G3", "G4", "R3"):
        assert on_disk["claims"][cid]["verdict"] == "reproduced", on_disk["claims"][cid]["rule"]


def test_report_files_and_summary(report):
    out, results = report
    for name in ("report.md", "report.html", "results.json", "r2_degradation.png", "r5_gradient_flow.png",
                 "r4_responses.png", "g5_aux_heads.png", "g1_cost.png", "g3_g4_inception.png"):
        assert (out / name).stat().st_size > 0, name
    lines = summary_lines(results, out)
    assert str(out / "report.html") in lines[0]
    assert [ln.split(":")[0] for ln in lines[1:11]] == list(CLAIM_IDS)


def test_html_is_self_contained_with_every_figure(report):
    out, _ = report
    page = (out / "report.html").read_text()
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs, "figures are embedded as <img src=data:...>"
    assert all(r.startswith("data:image/png;base64,") for r in refs), [r[:40] for r in refs]
    assert "<link" not in page and "<script" not in page and "@import" not in page
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(refs) >= len(pngs)  # each PNG appears at least once (G3/G4 share one)
    import base64

    embedded = {base64.b64decode(r.split(",", 1)[1]) for r in refs}
    for p in pngs:
        assert (out / p).read_bytes() in embedded, p


def test_html_renders_in_headless_chromium(report, tmp_path):
    """Render the page in headless Chromium: a screenshot, and every embedded figure decoded
    by the browser (a probe script on a copy of the page counts images with a natural size)."""
    import re
    import shutil
    import subprocess

    browser = next((b for b in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(b).exists()),
                   shutil.which("chromium"))
    if not browser:
        pytest.skip("no headless Chromium installed")
    out, _ = report
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,3000",
                    (out / "report.html").as_uri()], check=True, capture_output=True, timeout=90)
    assert shot.stat().st_size > 10_000
    html = (out / "report.html").read_text(encoding="utf-8")
    n_images = html.count("<img")
    probe = ("<script>window.addEventListener('load', () => { const ok = [...document.images]"
             ".filter(i => i.complete && i.naturalWidth > 0).length; "
             "document.body.setAttribute('data-rendered', ok + '/' + document.images.length); });</script>")
    probed = tmp_path / "probe.html"
    probed.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                         check=True, capture_output=True, timeout=90, text=True).stdout
    rendered = re.search(r'data-rendered="(\d+)/(\d+)"', dom)
    assert rendered, "the probe script did not run"
    assert int(rendered.group(2)) == n_images > 0
    assert rendered.group(1) == rendered.group(2), f"figures rendered: {rendered.group(0)}"
