"""Every experiment end to end on tiny settings, and the report they produce."""

import base64
import json
import re
from pathlib import Path

import pytest

from cnnarch.experiments.claims import VERDICTS, claim_ids, claims
from cnnarch.experiments.reproduce import summary_lines


def test_results_json_layout(tiny_report):
    out, _ = tiny_report
    on_disk = json.loads((out / "results.json").read_text())
    assert list(on_disk["claims"]) == list(claim_ids())
    for c in claims():
        got = on_disk["claims"][c.id]
        assert got["verdict"] in VERDICTS, (c.id, got["verdict"])
        assert got["reason"] and got["statement"] == c.statement
        assert set(got["parts"]) == {p.name for p in c.parts}
        for name, part in got["parts"].items():
            assert {"verdict", "rule", "measured", "reason", "version"} <= set(part), (c.id, name)
        if any(p.trained and got["parts"][p.name]["verdict"] in VERDICTS for p in c.parts):
            assert got["seeds"] == [0, 1], c.id  # every trained part that was judged ran per seed
    for key in ("environment", "config", "command", "time_s", "controls", "measurements"):
        assert key in on_disk
    assert on_disk["config"]["data"].startswith("synthetic:") and on_disk["config"]["seeds"] == [0, 1]
    # counted parts do not depend on training: they hold even at the tiny scale
    for cid, part in (("G1", "cost"), ("G2", "structure"), ("G3", "counting"), ("G4", "counting"),
                      ("R1", "builds"), ("R3", "twins")):
        got = on_disk["claims"][cid]["parts"][part]
        assert got["verdict"] == "reproduced", (cid, got["reason"])


def test_changed_rules_show_their_earlier_verdict(tiny_report):
    _, results = tiny_report
    r5 = results["claims"]["R5"]["parts"]["no-norm-init"]
    assert r5["version"] == 2 and r5["history"][0]["version"] == 1
    assert r5["history"][0]["verdict"] in VERDICTS


def test_one_figure_per_claim_and_summary(tiny_report):
    out, results = tiny_report
    figs = [c["figure"] for c in results["claims"].values()]
    assert all(figs) and len(set(figs)) == len(figs)
    for name in ("report.md", "report.html", "results.json", *figs):
        assert (out / name).stat().st_size > 0, name
    lines = summary_lines(results, out)
    assert str(out / "report.html") in lines[0]
    assert [ln.split(":")[0] for ln in lines[1:-1]] == list(claim_ids())
    assert "[2 seeds]" in next(ln for ln in lines if ln.startswith("R2:"))


def test_markdown_has_contents_captions_details_and_controls(tiny_report):
    out, results = tiny_report
    md = (out / "report.md").read_text()
    assert "## Contents" in md and "What to look for" in md and "<details>" in md
    assert "## Appendix: negative controls" in md and "random-labels" in md
    assert "earlier rule" in md  # a changed rule's old version is shown


def test_html_is_self_contained_with_every_figure(tiny_report):
    out, results = tiny_report
    page = (out / "report.html").read_text()
    srcs = re.findall(r'src\s*=\s*"([^"]*)"', page)
    hrefs = re.findall(r'href\s*=\s*"([^"]*)"', page)
    assert srcs and all(r.startswith("data:image/png;base64,") for r in srcs), [r[:40] for r in srcs]
    assert hrefs and all(h.startswith("#") for h in hrefs), "links only to the page's own sections"
    ids = set(re.findall(r'id="([^"]+)"', page))
    assert {h[1:] for h in hrefs} <= ids and set(claim_ids()) <= ids
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert page.count("<details>") >= len(claim_ids()) - 1
    embedded = {base64.b64decode(r.split(",", 1)[1]) for r in srcs}
    for c in results["claims"].values():
        assert (out / c["figure"]).read_bytes() in embedded, c["figure"]


def test_html_renders_in_headless_chromium(tiny_report, tmp_path):
    """Render the page in headless Chromium: a screenshot, and every embedded figure decoded
    by the browser (a probe script on a copy of the page counts images with a natural size)."""
    import shutil
    import subprocess

    browser = next((b for b in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(b).exists()),
                   shutil.which("chromium"))
    if not browser:
        pytest.skip("no headless Chromium installed")
    out, _ = tiny_report
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


def test_report_files_are_written_atomically(tiny_report, tmp_path, monkeypatch):
    """A write that fails midway (disk full) leaves the earlier report whole and no temp file."""
    import errno
    import shutil

    from cnnarch.report import render
    from cnnarch.train.checkpoint import StorageError

    out, results = tiny_report
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    before = {n: (copy / n).read_bytes() for n in ("report.html", "report.md", "results.json")}
    real_fdopen = render.atomic_write_text.__globals__["os"].fdopen

    class FullDisk:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(render.atomic_write_text.__globals__["os"], "fdopen", FullDisk)
    for write in (render.write_html, render.write_markdown, render.write_results):
        with pytest.raises(StorageError, match=r"cannot write .*: No space left"):
            write(results, copy)
    monkeypatch.undo()
    assert {n: (copy / n).read_bytes() for n in before} == before
    assert not [p.name for p in copy.iterdir() if p.name.endswith(".tmp")]
