"""The report: results.json, report.md and one self-contained report.html.

Both pages iterate the claims of ``results["claims"]`` (the registry's order, written by
``reproduce``): a table of contents linking each claim, then per claim its statement, its
figure with a "what to look for" caption, the verdict with its reason, one row per part of
the rule (verdict, rule and version, reason; for a changed rule the verdict under every
earlier version), the seeds, and the raw measurements folded in ``<details>``. The appendix
lists the negative controls each claim's rules were tested against.

The HTML embeds every figure as a base64 data URI and its style inline: no external
``src`` or ``href`` other than links to its own sections, so it opens from disk, mailed, or
offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from ..train.checkpoint import atomic_write_text

VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "no", "inconclusive": "open"}

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f4f6f8;color:#1c2833}
header{background:#1c2833;color:#fff;padding:28px 40px}header h1{margin:0 0 6px 0;font-size:26px}
header p{margin:2px 0;color:#cfd8dc;font-size:14px}header a{color:#aed6f1}main{max-width:1150px;margin:0 auto;padding:24px}
nav{background:#fff;border-radius:10px;padding:14px 26px;margin-bottom:22px;box-shadow:0 1px 4px rgba(0,0,0,.08)}
nav ol{columns:2;margin:6px 0}nav a{color:#1c2833}
.summary{display:grid;grid-template-columns:repeat(6,1fr);gap:10px;margin-bottom:24px}
.pill{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 3px rgba(0,0,0,.08);font-size:13px;color:#1c2833;text-decoration:none}
.pill b{font-size:16px;display:block}.ok{border-left:6px solid #27ae60}.no{border-left:6px solid #c0392b}
.open{border-left:6px solid #f39c12}.skip{border-left:6px solid #bdc3c7}
section{background:#fff;border-radius:10px;padding:20px 26px;margin-bottom:22px;box-shadow:0 1px 4px rgba(0,0,0,.08)}
section h2{margin-top:0;font-size:20px}.claim{font-size:15px;color:#34495e;font-style:italic}
img{max-width:100%;border:1px solid #e5e8e8;border-radius:6px;margin:8px 0 2px 0}
.caption{font-size:13px;color:#566573;margin:0 0 10px 0}
.verdict{padding:10px 14px;border-radius:6px;margin:12px 0;font-size:14px;line-height:1.45}
.verdict.ok{background:#eafaf1}.verdict.no{background:#fdedec}.verdict.open{background:#fef5e7}.verdict.skip{background:#f2f3f4}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0;width:100%}
td,th{border-bottom:1px solid #eaecee;padding:4px 8px;text-align:left;vertical-align:top}
td.num{text-align:right;font-family:Menlo,Consolas,monospace}details{margin-top:6px}
footer{color:#7f8c8d;font-size:12px;text-align:center;padding:20px}code{background:#f2f3f4;color:#1c2833;padding:1px 4px;border-radius:3px}
"""


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def flatten(measured: dict, prefix: str = "", max_list: int = 12) -> list[tuple[str, str]]:
    """(key path, value) rows for the numbers table; long lists are summarised."""
    rows: list[tuple[str, str]] = []
    for k, v in measured.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += flatten(v, f"{key}.", max_list)
        elif isinstance(v, (list, tuple)):
            if v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                shown = ", ".join(_fmt(x) for x in v[:max_list])
                rows.append((key, shown + (f", ... ({len(v)} values)" if len(v) > max_list else "")))
            elif v and all(isinstance(x, dict) for x in v):
                for i, x in enumerate(v[:max_list]):
                    rows += flatten(x, f"{key}[{i}].", max_list)
            else:
                rows.append((key, _fmt(v)[:200]))
        else:
            rows.append((key, _fmt(v)))
    return rows


def _cls(verdict: str) -> str:
    return VERDICT_CLASS.get(verdict, "skip")


def write_results(results: dict, out: Path) -> Path:
    from ..experiments.claims import VERDICTS, claim_ids

    missing = [c for c in claim_ids() if c not in results["claims"]]
    if missing:
        raise ValueError(f"results lack claims {missing}")
    for cid, c in results["claims"].items():
        if c["verdict"] not in (*VERDICTS, "not run"):
            raise ValueError(f"claim {cid}: verdict {c['verdict']!r}")
    path = out / "results.json"
    return atomic_write_text(path, json.dumps(results, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    return str(o)


def _parts_rows(c: dict) -> list[dict]:
    """One row per part, then one per earlier rule version that was judged."""
    rows = []
    for name, p in c["parts"].items():
        rows.append({"part": name, "verdict": p["verdict"], "rule": f"v{p['version']}: {p['rule']}",
                     "reason": p["reason"]})
        for old in p.get("history", []):
            rows.append({"part": f"{name} (earlier rule)", "verdict": old["verdict"],
                         "rule": f"v{old['version']}: {old['rule']}", "reason": old["reason"]})
    return rows


def _workers(env: dict) -> str:
    """', seeds in N worker processes' when the seeds ran in parallel, else ''."""
    n = (env.get("workers") or {}).get("workers", 1)
    return f", seeds in {n} worker processes" if n > 1 else ""


def _header_lines(results: dict) -> list[str]:
    cfg, env = results["config"], results["environment"]
    seeds = cfg.get("seeds", [])
    return [f"Command: `{results['command']}`  ",
            f"Scale: {cfg['scale']}, data: {cfg['data']}, seeds {', '.join(map(str, seeds))} "
            f"({len(seeds)}), time {results['time_s']:.0f} s"
            + (f", control: {cfg['control']}" if cfg.get("control") else "") + "  ",
            f"Environment: torch {env.get('torch')}, {env.get('device')}, {env.get('threads')} threads"
            f"{_workers(env)}"]


def _counts(results: dict) -> str:
    verdicts = [c["verdict"] for c in results["claims"].values()]
    return ", ".join(f"{verdicts.count(v)} {v}" for v in ("reproduced", "not reproduced", "inconclusive", "not run")
                     if verdicts.count(v))


def write_markdown(results: dict, out: Path) -> Path:
    claims = results["claims"]
    lines = ["# cnnarch: the lecture's claims, measured", "", *_header_lines(results), "",
             f"**{_counts(results)}.**", "", "## Contents", ""]
    lines += [f"{i}. [{cid}: {c['verdict']}](#{cid.lower()}-{c['verdict'].replace(' ', '-')})"
              for i, (cid, c) in enumerate(claims.items(), 1)]
    lines += ["", "| claim | verdict | seeds |", "|---|---|---|"]
    lines += [f"| {cid} | **{c['verdict']}** | {len(c.get('seeds', [])) or '-'} |" for cid, c in claims.items()]
    lines.append("")
    for cid, c in claims.items():
        lines += [f"## {cid}: {c['verdict']}", "", f"*{c['statement']}*", ""]
        if c.get("figure") and (out / c["figure"]).exists():
            lines += [f"![{cid}]({c['figure']})", "", f"*What to look for:* {c['caption']}", ""]
        lines += [f"**Verdict: {c['verdict']}.** {c['reason']}", ""]
        if c.get("seeds"):
            lines += [f"Seeds: {', '.join(map(str, c['seeds']))}.", ""]
        lines += ["| part | verdict | rule | reason |", "|---|---|---|---|"]
        lines += [f"| {r['part']} | {r['verdict']} | {r['rule']} | {r['reason']} |" for r in _parts_rows(c)]
        lines.append("")
        rows = flatten(results.get("measurements", {}).get(cid, {}))
        if rows:
            lines += ["<details><summary>raw measurements</summary>", "", "| measured | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in rows[:200]]
            lines += ["", "</details>", ""]
    lines += ["## Appendix: negative controls", "",
              "A rule that says \"reproduced\" under one of its controls is a bug in the rule; the "
              "test suite runs each control at a tiny scale and asserts it does not.", ""]
    for name, text in results.get("controls", {}).items():
        used = [cid for cid, c in claims.items() if name in c.get("controls", [])]
        lines.append(f"- **{name}** ({text}): {', '.join(used) or 'no claim'}")
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _section_html(cid: str, c: dict, measured: dict, out: Path) -> str:
    esc = html.escape
    cls = _cls(c["verdict"])
    fig = ""
    if c.get("figure") and (out / c["figure"]).exists():
        fig = (f'<img alt="{cid} figure" src="{_data_uri(out / c["figure"])}">'
               f'<p class="caption"><b>What to look for:</b> {esc(c["caption"])}</p>')
    parts = "".join(f'<tr><td>{esc(r["part"])}</td><td class="{_cls(r["verdict"])}">{esc(r["verdict"])}</td>'
                    f'<td>{esc(r["rule"])}</td><td>{esc(r["reason"])}</td></tr>' for r in _parts_rows(c))
    rows = flatten(measured)
    raw = ""
    if rows:
        raw = ("<details><summary>raw measurements</summary><table>"
               + "".join(f'<tr><td>{esc(k)}</td><td class="num">{esc(v)}</td></tr>' for k, v in rows[:400])
               + "</table></details>")
    seeds = f'<p>Seeds: {esc(", ".join(map(str, c["seeds"])))}.</p>' if c.get("seeds") else ""
    controls = (f'<p>Negative controls of its rules: {esc(", ".join(c["controls"]))} '
                f'(<a href="#controls">appendix</a>).</p>' if c.get("controls") else "")
    return (f'<section id="{cid}"><h2>{cid} &mdash; {esc(c["verdict"])}</h2>'
            f'<p class="claim">{esc(c["statement"])}</p>{fig}'
            f'<div class="verdict {cls}"><b>Verdict: {esc(c["verdict"])}.</b> {esc(c["reason"])}</div>'
            f'{seeds}<table><tr><th>part</th><th>verdict</th><th>rule</th><th>reason</th></tr>{parts}</table>'
            f'{controls}{raw}</section>')


def write_html(results: dict, out: Path) -> Path:
    esc = html.escape
    env, cfg, claims = results["environment"], results["config"], results["claims"]
    measurements = results.get("measurements", {})
    control = f", under the negative control {cfg['control']}" if cfg.get("control") else ""
    pills = "".join(f'<a class="pill {_cls(c["verdict"])}" href="#{cid}"><b>{cid}</b>{esc(c["verdict"])}</a>'
                    for cid, c in claims.items())
    toc = "".join(f'<li><a href="#{cid}">{cid}</a>: {esc(c["verdict"])} &mdash; {esc(c["statement"][:90])}'
                  f'{"..." if len(c["statement"]) > 90 else ""}</li>' for cid, c in claims.items())
    sections = "".join(_section_html(cid, c, measurements.get(cid, {}), out) for cid, c in claims.items())
    ctrl = "".join(f'<tr><td>{esc(n)}</td><td>{esc(t)}</td><td>'
                   f'{esc(", ".join(cid for cid, c in claims.items() if n in c.get("controls", [])) or "no claim")}'
                   f'</td></tr>' for n, t in results.get("controls", {}).items())
    seeds = ", ".join(map(str, cfg.get("seeds", [])))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>cnnarch: the lecture's claims, measured</title><style>{CSS}</style></head>
<body><header><h1>GoogLeNet and ResNet: the lecture's claims, measured</h1>
<p>{esc(_counts(results))} at scale <b>{esc(str(cfg['scale']))}</b> on
<b>{esc(str(cfg['data']))}</b> (seeds {esc(seeds)}) in {results['time_s']:.0f} s{esc(control)}.</p>
<p>Command: <code>{esc(results['command'])}</code></p>
<p>torch {esc(str(env.get('torch')))}, {esc(str(env.get('device')))}, {esc(str(env.get('threads')))} threads{esc(_workers(env))},
{esc(str(env.get('cpu', '')))}</p></header>
<main><div class="summary">{pills}</div><nav><b>Contents</b><ol>{toc}<li><a href="#controls">Appendix:
negative controls</a></li></ol></nav>{sections}
<section id="controls"><h2>Appendix: negative controls</h2><p>Under each control a claim's rule
must not say "reproduced"; the test suite runs every control at a tiny scale and asserts it.</p>
<table><tr><th>control</th><th>what it changes</th><th>claims tested against it</th></tr>{ctrl}</table></section></main>
<footer>Every verdict is computed from the measured numbers by the rule printed with it.
Raw numbers: results.json.</footer></body></html>
"""
    return atomic_write_text(out / "report.html", page)
