"""The report: results.json, report.md and one self-contained report.html.

The HTML embeds every figure as a base64 data URI and its style inline: no external
``src`` or ``href``, so it opens from disk, mailed, or offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

CLAIM_IDS = ("G1", "G2", "G3", "G4", "G5", "R1", "R2", "R3", "R4", "R5")

CLAIMS = {
    "G1": "Deeper networks cost more compute; GoogLeNet goes deep and efficient through the Inception module.",
    "G2": "An Inception module runs 1x1, 3x3, 5x5 convolutions and a 3x3 max-pool in parallel on the same input and concatenates them along depth.",
    "G3": "The naive module keeps the spatial size but its depth only grows (the pool keeps the full input depth); 854M multiply-adds, depth 672 in the lecture's example.",
    "G4": "1x1 bottleneck reductions cut the cost sharply: depth 480, and the slide's 358M is really 271,351,808 (the 3x3 term counted twice).",
    "G5": "Auxiliary classifiers on 4a and 4d inject extra gradient into the lower layers; their losses (weight 0.3) are added in training and dropped at inference.",
    "R1": "Very deep residual networks (the revolution of depth) are trainable.",
    "R2": "Stacking more plain layers makes even the training error worse (degradation), an optimisation problem, not overfitting.",
    "R3": "A residual block adds its input to its output (the layers learn F(x) = H(x) - x); a plain twin differs only by the shortcut.",
    "R4": "With the identity shortcut the residual F(x) is small and shrinks; layer responses are smaller in ResNets and smaller for deeper ones (Fig. 7).",
    "R5": "For y = F(x) + x, dL/dx = dL/dy (dF/dx + 1): the +1 keeps the gradient from vanishing and well-scaled across depth.",
}

FIGURE_OF = {"G1": "g1_cost.png", "G3": "g3_g4_inception.png", "G4": "g3_g4_inception.png",
             "G5": "g5_aux_heads.png", "R1": "r2_degradation.png", "R2": "r2_degradation.png",
             "R4": "r4_responses.png", "R5": "r5_gradient_flow.png"}

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f4f6f8;color:#1c2833}
header{background:#1c2833;color:#fff;padding:28px 40px}header h1{margin:0 0 6px 0;font-size:26px}
header p{margin:2px 0;color:#cfd8dc;font-size:14px}main{max-width:1150px;margin:0 auto;padding:24px}
.summary{display:grid;grid-template-columns:repeat(5,1fr);gap:10px;margin-bottom:24px}
.pill{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 3px rgba(0,0,0,.08);font-size:13px}
.pill b{font-size:16px;display:block}.ok{border-left:6px solid #27ae60}.no{border-left:6px solid #c0392b}
section{background:#fff;border-radius:10px;padding:20px 26px;margin-bottom:22px;box-shadow:0 1px 4px rgba(0,0,0,.08)}
section h2{margin-top:0;font-size:20px}.claim{font-size:15px;color:#34495e;font-style:italic}
img{max-width:100%;border:1px solid #e5e8e8;border-radius:6px;margin:8px 0}
.verdict{padding:10px 14px;border-radius:6px;margin:12px 0;font-size:14px;line-height:1.45}
.verdict.ok{background:#eafaf1}.verdict.no{background:#fdedec}
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


def _ok(c: dict) -> bool:
    return c["verdict"] == "reproduced"


def write_results(results: dict, out: Path) -> Path:
    missing = [c for c in CLAIM_IDS if c not in results["claims"]]
    if missing:
        raise ValueError(f"results lack claims {missing}")
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    return path


def _json_default(o):
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def write_markdown(results: dict, out: Path) -> Path:
    env = results["environment"]
    lines = ["# cnnarch: the lecture's claims, reproduced", "",
             f"Command: `{results['command']}`  ", f"Scale: {results['config']['scale']}, data: "
             f"{results['config']['data']}, seed {results['config']['seed']}, time {results['time_s']:.0f} s  ",
             f"Environment: torch {env.get('torch')}, {env.get('device')}, {env.get('threads')} threads", "",
             "| claim | verdict |", "|---|---|"]
    for cid in CLAIM_IDS:
        c = results["claims"][cid]
        lines.append(f"| {cid} | {'**reproduced**' if _ok(c) else '**not reproduced**'} |")
    lines.append("")
    for cid in CLAIM_IDS:
        c = results["claims"][cid]
        lines += [f"## {cid}: {c['verdict']}", "", f"*{CLAIMS[cid]}*", ""]
        if cid in FIGURE_OF and (out / FIGURE_OF[cid]).exists():
            lines += [f"![{cid}]({FIGURE_OF[cid]})", ""]
        lines += [f"**Rule and numbers:** {c['rule']}", ""]
        if c.get("note"):
            lines += [f"**Note:** {c['note']}", ""]
        lines += ["| measured | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in flatten(c["measured"])[:60]]
        lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def write_html(results: dict, out: Path) -> Path:
    esc = html.escape
    env = results["environment"]
    n_ok = sum(_ok(results["claims"][c]) for c in CLAIM_IDS)
    pills = "".join(
        f'<div class="pill {"ok" if _ok(results["claims"][c]) else "no"}"><b>{c}</b>'
        f'{esc(results["claims"][c]["verdict"])}</div>' for c in CLAIM_IDS)
    sections = []
    for cid in CLAIM_IDS:
        c = results["claims"][cid]
        cls = "ok" if _ok(c) else "no"
        fig = ""
        if cid in FIGURE_OF and (out / FIGURE_OF[cid]).exists():
            fig = f'<img alt="{cid} figure" src="{_data_uri(out / FIGURE_OF[cid])}">'
        rows = flatten(c["measured"])
        table = "".join(f'<tr><td>{esc(k)}</td><td class="num">{esc(v)}</td></tr>' for k, v in rows[:24])
        more = ""
        if len(rows) > 24:
            more = ("<details><summary>all measured numbers</summary><table>"
                    + "".join(f'<tr><td>{esc(k)}</td><td class="num">{esc(v)}</td></tr>' for k, v in rows[24:])
                    + "</table></details>")
        note = f'<p><b>Note:</b> {esc(c["note"])}</p>' if c.get("note") else ""
        sections.append(
            f'<section id="{cid}"><h2>{cid} &mdash; {esc(c["verdict"])}</h2>'
            f'<p class="claim">{esc(CLAIMS[cid])}</p>{fig}'
            f'<div class="verdict {cls}"><b>Verdict: {esc(c["verdict"])}.</b> Rule and numbers: '
            f'{esc(c["rule"])}</div>{note}<table><tr><th>measured</th><th>value</th></tr>{table}</table>'
            f'{more}</section>')
    cfg = results["config"]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>cnnarch: the lecture's claims, reproduced</title><style>{CSS}</style></head>
<body><header><h1>GoogLeNet and ResNet: the lecture's claims, measured</h1>
<p>{n_ok} of {len(CLAIM_IDS)} claims reproduced at scale <b>{esc(str(cfg['scale']))}</b> on
<b>{esc(str(cfg['data']))}</b> (seed {esc(str(cfg['seed']))}) in {results['time_s']:.0f} s.</p>
<p>Command: <code>{esc(results['command'])}</code></p>
<p>torch {esc(str(env.get('torch')))}, {esc(str(env.get('device')))}, {esc(str(env.get('threads')))} threads,
{esc(str(env.get('cpu', '')))}</p></header>
<main><div class="summary">{pills}</div>{''.join(sections)}</main>
<footer>Every verdict is computed from the measured numbers by the rule printed with it.
Raw numbers: results.json.</footer></body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
