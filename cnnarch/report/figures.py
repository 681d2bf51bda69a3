"""Figures of the reproduction report (matplotlib, Agg backend, PNG), one per claim.

Each function takes the claim's measurements (and, where it needs them, the experiment's
``data``) and writes one PNG; it returns the path. No figure function computes a verdict.
Trained measurements are drawn with their seed spread: one thin line (or one dot) per seed.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..train.checkpoint import atomic_write_bytes  # noqa: E402

PLAIN, RESNET = "#c0392b", "#2471a3"
COLORS = ["#2471a3", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085"]


def _depth(name: str) -> int:
    return int("".join(ch for ch in name if ch.isdigit()) or 0)


def _label(name: str) -> str:
    return f"{'plain' if name.startswith('plain') else 'ResNet'}-{_depth(name)}"


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, lambda f: f.write(buf.getbuffer()))


# --- GoogLeNet ---------------------------------------------------------------------------------


def cost_bars(g1: dict, data: dict, path: Path) -> Path:
    """G1: GMACs and params of GoogLeNet (bottleneck, naive) and ResNet-18..152."""
    names = ["googlenet", "googlenet\n(naive)"] + [n.replace("resnet", "ResNet-") for n in g1["resnet_macs"]]
    macs = [g1["googlenet"]["macs"], g1["googlenet_naive"]["macs"], *g1["resnet_macs"].values()]
    params = [g1["googlenet"]["params"], g1["googlenet_naive"]["params"], *g1["resnet_params"].values()]
    colors = ["#27ae60", "#95a5a6"] + [RESNET] * len(g1["resnet_macs"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, vals, title in ((axes[0], [m / 1e9 for m in macs], "multiply-adds (G), 224x224"),
                            (axes[1], [p / 1e6 for p in params], "parameters (M)")):
        ax.bar(range(len(vals)), vals, color=colors)
        ax.set_xticks(range(len(vals)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(title)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    return save_figure(fig, path)


def inception_branches(g2: dict, data: dict, path: Path) -> Path:
    """G2: output depth of the four branches of every Inception module (Table 1), stacked."""
    from ..models import TABLE1

    keys = list(TABLE1)
    parts = (("1x1", "n1x1", "#2471a3"), ("3x3", "n3x3", "#27ae60"), ("5x5", "n5x5", "#d35400"),
             ("pool proj", "pool_proj", "#8e44ad"))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    bottom = [0] * len(keys)
    for label, field, col in parts:
        vals = [getattr(TABLE1[k], field) for k in keys]
        ax.bar(keys, vals, bottom=bottom, color=col, label=label)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for i, b in enumerate(bottom):
        ax.text(i, b, str(b), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("output depth (channels)")
    ax.set_title(f"Inception modules: four parallel branches concatenated along depth\n"
                 f"(3a measured: {' + '.join(map(str, g2['branch_depths']))} = {g2['output_shape'][0]})",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=4)
    return save_figure(fig, path)


def naive_module(g3: dict, data: dict, path: Path) -> Path:
    """G3: the naive module's terms on 28x28x256, and depth growth of stacked naive modules."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    terms = g3["naive_terms"]
    axes[0].bar(range(len(terms)), [v / 1e6 for v in terms.values()], color="#95a5a6")
    axes[0].set_xticks(range(len(terms)), list(terms), fontsize=8)
    for i, v in enumerate(terms.values()):
        axes[0].text(i, v / 1e6, f"{v / 1e6:.1f}M", ha="center", va="bottom", fontsize=8)
    axes[0].set_title(f"naive module, 28x28x256 input: {g3['naive_macs']:,} MACs,\n"
                      f"output depth {g3['naive_depth']}", fontsize=10)
    chain = g3["naive_depth_chain"]
    depth = [a for a, _ in chain] + [chain[-1][1]]
    axes[1].plot(range(len(depth)), depth, "o-", color="#7f8c8d", label="naive")
    per = data.get("per_module", [])
    if per:
        axes[1].plot(range(1, len(per) + 1), [r["bottleneck_out"] for r in per], "o-",
                     color="#27ae60", label="bottleneck (reference)")
    axes[1].set_xlabel("module (0 = input of 3a)")
    axes[1].set_ylabel("depth")
    axes[1].set_title("depth after each stacked module", fontsize=10)
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    return save_figure(fig, path)


def bottleneck_modules(g4: dict, data: dict, path: Path) -> Path:
    """G4: naive vs bottleneck MACs: the lecture example (with the slide's number) and every
    GoogLeNet module at 224x224 (log scale)."""
    ex, per = data["example"], data["per_module"]
    trained = g4.get("trained")
    fig, axes = plt.subplots(1, 3 if trained else 2, figsize=(18 if trained else 12, 3.8))
    vals = [ex["naive"]["macs"] / 1e6, ex["bottleneck"]["macs"] / 1e6, ex["slide"]["printed"] / 1e6]
    axes[0].bar([0, 1, 2], vals, color=["#95a5a6", "#27ae60", "#f5b041"])
    axes[0].set_xticks([0, 1, 2], ["naive\n(depth 672)", "bottleneck\n(depth 480)", "slide's\nbottleneck"])
    for i, v in enumerate(vals):
        axes[0].text(i, v, f"{v:.1f}M", ha="center", va="bottom", fontsize=8)
    axes[0].set_title("lecture example, 28x28x256 input: multiply-adds (M)", fontsize=10)
    keys = [r["module"] for r in per]
    x = range(len(keys))
    w = 0.4
    axes[1].bar([i - w / 2 for i in x], [r["naive_macs"] / 1e6 for r in per], w, color="#95a5a6", label="naive")
    axes[1].bar([i + w / 2 for i in x], [r["bottleneck_macs"] / 1e6 for r in per], w, color="#27ae60",
                label="bottleneck")
    axes[1].set_yscale("log")
    axes[1].set_xticks(list(x), keys)
    axes[1].set_title(f"GoogLeNet (224x224): MACs per module (M, log); whole net "
                      f"{g4['network_saving']:.1f}x fewer", fontsize=10)
    axes[1].legend(fontsize=8)
    if trained:
        accuracy_vs_macs(axes[2], trained)
    return save_figure(fig, path)


G4_COLORS = {"bottleneck": "#27ae60", "linear": "#2980b9", "naive": "#95a5a6"}


def accuracy_vs_macs(ax, trained: dict) -> None:
    """G4 trained: test accuracy against multiply-adds per image, one dot per seed and a bar
    from the lowest to the highest seed, per module variant."""
    nudge = {"bottleneck": 0.94, "linear": 1.06}  # same MACs: drawn side by side

    def at(mode: str) -> float:
        return trained["macs"][mode] / 1e6 * nudge.get(mode, 1.0)

    lrs = trained.get("lr", {})
    for mode, accs in trained["test_acc"].items():
        macs = at(mode)
        pts = [100 * a for a in accs]
        lr = f", lr {lrs[mode]:g}" if mode in lrs else ""
        ax.scatter([macs] * len(pts), pts, color=G4_COLORS.get(mode, "k"), s=18, zorder=3,
                   label=f"{mode} ({len(pts)} seeds{lr})")
        ax.vlines(macs, min(pts), max(pts), color=G4_COLORS.get(mode, "k"), lw=2)
    longer = trained.get("longer")
    if longer:  # the same pair at G5's run length: hollow dots
        for mode, accs in longer["test_acc"].items():
            ax.scatter([at(mode)] * len(accs), [100 * a for a in accs], facecolors="none", s=30, zorder=3,
                       edgecolors=G4_COLORS.get(mode, "k"), label=f"{mode}, G5's run length")
    ax.set_xscale("log")
    ax.set(xlabel="multiply-adds per image (M, log; bottleneck and linear cost the same)",
           ylabel="test accuracy (%)")
    title = f"googlenet_small trained {trained.get('run_length', trained['epochs'])} each (equal steps)"
    if longer:
        title += f"\nhollow: bottleneck vs linear, {longer['epochs']} epochs at batch {longer['batch_size']}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def aux_heads(curves: dict, measured: dict, path: Path) -> Path:
    """G5: error curves with and without aux losses; lower-layer gradient with / without."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, col in (("with_aux", "#27ae60"), ("without_aux", "#7f8c8d")):
        c = curves[label]
        ep = range(1, len(c["train_error"]) + 1)
        axes[0].plot(ep, [100 * v for v in c["train_error"]], "--o", color=col, lw=1.3)
        axes[0].plot(ep, [100 * (v if v is not None else float("nan")) for v in c["test_error"]],
                     "-o", color=col, lw=2, label=label.replace("_", " "))
    axes[0].set_title("googlenet_small error (dashed training, solid test)", fontsize=10)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("error (%)")
    axes[0].legend(fontsize=8)
    t = measured["trained_with_aux"]
    x = range(len(t["layers"]))
    w = 0.4
    axes[1].bar([i - w / 2 for i in x], t["main_only"], w, color="#7f8c8d", label="main loss only")
    axes[1].bar([i + w / 2 for i in x], t["with_aux"], w, color="#27ae60", label="main + 0.3 (aux1 + aux2)")
    axes[1].set_xticks(list(x), t["layers"], fontsize=8)
    axes[1].set_title("gradient norm reaching the lower layers (trained net)", fontsize=10)
    axes[1].legend(fontsize=8)
    return save_figure(fig, path)


# --- ResNet ------------------------------------------------------------------------------------


def final_errors(r1: dict, path: Path) -> Path:
    """R1: final training and test error per depth, plain vs ResNet, one dot per seed."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    depths = r1["depths"]
    for ax, key, title in ((axes[0], "final_train_error", "final training error"),
                           (axes[1], "final_test_error", "final test error")):
        for kind, col, off in (("plain", PLAIN, -0.08), ("resnet", RESNET, 0.08)):
            for i, d in enumerate(depths):
                vals = [100 * v for v in r1[key][f"{kind}{d}"]]
                ax.plot([i + off] * len(vals), vals, "o", color=col, alpha=0.8,
                        label=("plain" if kind == "plain" else "ResNet") if i == 0 else None)
                ax.plot([i + off - 0.06, i + off + 0.06], [sum(vals) / len(vals)] * 2, "-", color=col, lw=2)
        ax.set_xticks(range(len(depths)), [f"{d} layers" for d in depths])
        ax.set_title(f"{title} (%, dots: seeds, bar: mean)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def degradation(curves: dict, depths: list[int], path: Path) -> Path:
    """R2 (paper Fig. 6): plain left, ResNet right; dashed training, solid test error; one
    thin line per seed (``curves``: seed -> run name -> errors)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind, title in ((axes[0], "plain", "plain"), (axes[1], "resnet", "ResNet")):
        for i, d in enumerate(depths):
            col = COLORS[i % len(COLORS)]
            for j, per_seed in enumerate(curves.values()):
                c = per_seed[f"{kind}{d}"]
                ep = range(1, len(c["train_error"]) + 1)
                ax.plot(ep, [100 * v for v in c["train_error"]], "--", color=col, lw=0.9, alpha=0.8)
                test = [(e, 100 * v) for e, v in zip(ep, c["test_error"], strict=True) if v is not None]
                ax.plot([e for e, _ in test], [v for _, v in test], "-", color=col, lw=1.2, alpha=0.8,
                        label=f"{title}-{d}" if j == 0 else None)
        ax.set_title(f"{title} nets (dashed: training, solid: test; {len(curves)} seeds)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    return save_figure(fig, path)


def twins(r3: dict, path: Path) -> Path:
    """R3: parameters of each ResNet and its plain twin (option A), and of ResNet-34's
    shortcut options A, B, C."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    depths = list(r3["params_option_a"])
    w = 0.4
    x = range(len(depths))
    axes[0].bar([i - w / 2 for i in x], [r3["params_option_a"][d]["plain"] / 1e6 for d in depths], w,
                color=PLAIN, label="plain twin")
    axes[0].bar([i + w / 2 for i in x], [r3["params_option_a"][d]["resnet"] / 1e6 for d in depths], w,
                color=RESNET, label="ResNet (option A)")
    axes[0].set_xticks(list(x), [f"{d} layers" for d in depths])
    axes[0].set_title("parameters (M): equal bars = twins", fontsize=10)
    axes[0].legend(fontsize=8)
    sc = r3["shortcut_params"]
    axes[1].bar(list(sc), [v / 1e6 for v in sc.values()], color=["#27ae60", "#f5b041", "#d35400"])
    lo = min(sc.values()) / 1e6
    axes[1].set_ylim(lo * 0.98, max(sc.values()) / 1e6 * 1.01)
    axes[1].set_title("ResNet-34 parameters (M) by shortcut option", fontsize=10)
    return save_figure(fig, path)


def responses(profiles: dict, ratio_curves: dict, r4: dict, path: Path) -> Path:
    """R4 (paper Fig. 7): response std per 3x3 layer (first seed); mean ||F(x)||/||x|| per
    epoch (0 = initialisation), one thin line per seed; epochs to the target error."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    for name, p in sorted(profiles.items(), key=lambda kv: (_depth(kv[0]), kv[0])):
        col = PLAIN if name.startswith("plain") else RESNET
        style = "-" if _depth(name) == max(_depth(n) for n in profiles) else ":"
        axes[0].plot(range(1, len(p["stds"]) + 1), p["stds"], style, color=col, label=_label(name), lw=1.3)
    axes[0].set_title("std of 3x3 responses (after BN), layer order", fontsize=10)
    axes[0].set_xlabel("layer index")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    for i, (d, per_seed) in enumerate(sorted(ratio_curves.items(), key=lambda kv: int(kv[0]))):
        for j, vals in enumerate(per_seed.values()):
            axes[1].plot(range(len(vals)), vals, "-", color=COLORS[i % len(COLORS)], lw=1, alpha=0.8,
                         label=f"ResNet-{d}" if j == 0 else None)
    axes[1].set_title("mean ||F(x)|| / ||x|| per epoch (0 = init)", fontsize=10)
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    ep = r4["epochs_to_target"]
    names = sorted(ep, key=lambda n: (_depth(n), n))
    for i, n in enumerate(names):
        vals = [v if v is not None else float("nan") for v in ep[n]]
        axes[2].plot([i] * len(vals), vals, "o", color=PLAIN if n.startswith("plain") else RESNET, alpha=0.8)
        if all(v is None for v in ep[n]):
            axes[2].text(i, 0.5, "never", ha="center", fontsize=8, color=PLAIN)
    axes[2].set_xticks(range(len(names)), [_label(n) for n in names], fontsize=8)
    axes[2].set_ylim(bottom=0)
    axes[2].set_title(f"epochs to {100 * r4['target_error']:.0f} % training error (dots: seeds)", fontsize=10)
    axes[2].grid(alpha=0.3)
    return save_figure(fig, path)


def _profiles(ax, by_size: dict, title: str, native: str) -> None:
    for size, by_name in sorted(by_size.items(), key=lambda kv: int(kv[0])):
        for name, per_seed in sorted(by_name.items()):
            if "zero-init" in name and size != max(by_size, key=int):
                continue
            col = "#27ae60" if "zero-init" in name else (PLAIN if name.startswith("plain") else RESNET)
            style = ":" if size == native and len(by_size) > 1 else "-"
            if _depth(name) != max(_depth(n) for n in by_name):
                continue
            for j, p in enumerate(per_seed):
                label = (f"{_label(name)}{' zero-init F' if 'zero-init' in name else ''}, {size}x{size}"
                         if j == 0 else None)
                ax.plot(range(len(p["norms"])), p["norms"], style, color=col, lw=1, alpha=0.8, label=label)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("stem -> block -> head")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, which="both")


def gradient_flow(r5: dict, path: Path) -> Path:
    """R5, two rows: ||dL/d a|| per block (log) at init with BN and without normalisation
    (every measured input size), after training; block Jacobian singular values."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.4))
    native = str(r5["native_size"])
    _profiles(axes[0][0], r5["init_bn"], "||dL/d activation||: init, with BN", native)
    _profiles(axes[0][1], r5["init_none"], "||dL/d activation||: init, no normalisation", native)
    ax = axes[1][0]
    for name, per_seed in sorted(r5["trained_bn"].items()):
        col = PLAIN if name.startswith("plain") else RESNET
        for j, p in enumerate(per_seed):
            ax.plot(range(len(p["norms"])), p["norms"], "-", color=col, lw=1, alpha=0.8,
                    label=f"{_label(name)}, {native}x{native}" if j == 0 else None)
    ax.set_yscale("log")
    ax.set_title("||dL/d activation||: after training, with BN", fontsize=10)
    ax.set_xlabel("stem -> block -> head")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax = axes[1][1]
    jac = r5["jacobian_trained"][0] if r5["jacobian_trained"] else []
    for j, item in enumerate(jac):
        if item["with_shortcut"] is not None:
            lo, med, hi = item["with_shortcut"]
            ax.plot([j - 0.12] * 2, [max(lo, 1e-12), hi], color=RESNET, lw=3, alpha=0.6)
            ax.plot(j - 0.12, med, "o", color=RESNET, label="I + dF/dx" if j == 0 else None)
        lo, med, hi = item["without_shortcut"]
        ax.plot([j + 0.12] * 2, [max(lo, 1e-12), hi], color=PLAIN, lw=3, alpha=0.6)
        ax.plot(j + 0.12, max(med, 1e-12), "s", color=PLAIN, label="dF/dx (no shortcut)" if j == 0 else None)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(jac)), [j["block"] for j in jac], fontsize=8)
    ax.set_title(f"block Jacobian singular values, trained ResNet-{r5['depth']} (first seed):\n"
                 "min-max bar, median dot", fontsize=10)
    if jac:
        ax.legend(fontsize=8)
    return save_figure(fig, path)
