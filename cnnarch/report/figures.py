"""Figures of the reproduction report (matplotlib, Agg backend, PNG).

Each function takes the ``data`` / ``measured`` dicts an experiment returned and writes one
PNG; it returns the path. No figure function computes a verdict.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLAIN, RESNET = "#c0392b", "#2471a3"
COLORS = ["#2471a3", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085"]


def _depth(name: str) -> int:
    return int("".join(ch for ch in name if ch.isdigit()) or 0)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_bars(g1: dict, path: Path) -> Path:
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
    return _save(fig, path)


def inception_modules(per_module: list[dict], example: dict, path: Path) -> Path:
    """G3/G4: the lecture example, per-module MACs and the depth growth of naive modules."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    vals = [example["naive"]["macs"] / 1e6, example["bottleneck"]["macs"] / 1e6,
            example["slide"]["printed"] / 1e6]
    ax.bar([0, 1, 2], vals, color=["#95a5a6", "#27ae60", "#f5b041"])
    ax.set_xticks([0, 1, 2], ["naive\n(depth 672)", "bottleneck\n(depth 480)", "slide's\nbottleneck"])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.1f}M", ha="center", va="bottom", fontsize=8)
    ax.set_title("lecture example, 28x28x256 input\nmultiply-adds (M)", fontsize=10)
    keys = [r["module"] for r in per_module]
    x = range(len(keys))
    ax = axes[1]
    w = 0.4
    ax.bar([i - w / 2 for i in x], [r["naive_macs"] / 1e6 for r in per_module], w, color="#95a5a6", label="naive")
    ax.bar([i + w / 2 for i in x], [r["bottleneck_macs"] / 1e6 for r in per_module], w, color="#27ae60", label="bottleneck")
    ax.set_yscale("log")
    ax.set_xticks(list(x), keys)
    ax.set_title("GoogLeNet (224x224): MACs per module (M, log)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(keys, [r["naive_out"] for r in per_module], "o-", color="#7f8c8d", label="naive")
    ax.plot(keys, [r["bottleneck_out"] for r in per_module], "o-", color="#27ae60", label="bottleneck")
    ax.set_title("output depth per module", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def degradation(curves: dict, depths: list[int], path: Path) -> Path:
    """R2 (paper Fig. 6): plain left, ResNet right; dashed training, solid test error."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind, title in ((axes[0], "plain", "plain"), (axes[1], "resnet", "ResNet")):
        for i, d in enumerate(depths):
            c = curves[f"{kind}{d}"]
            ep = range(1, len(c["train_error"]) + 1)
            col = COLORS[i % len(COLORS)]
            ax.plot(ep, [100 * v for v in c["train_error"]], "--", color=col, lw=1.4)
            test = [(e, 100 * v) for e, v in zip(ep, c["test_error"], strict=True) if v is not None]
            ax.plot([e for e, _ in test], [v for _, v in test], "-", color=col, lw=2,
                    label=f"{title}-{d}")
        ax.set_title(f"{title} nets (dashed: training, solid: test)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    return _save(fig, path)


def responses(profiles: dict, ratios_per_epoch: dict, path: Path) -> Path:
    """R4 (paper Fig. 7): response std per 3x3 layer in layer order and sorted; and the mean
    ||F(x)||/||x|| of the ResNets per epoch (0 = initialisation)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for i, (name, p) in enumerate(sorted(profiles.items())):
        col = PLAIN if name.startswith("plain") else RESNET
        style = "-" if i % 2 else "--"
        depth = name.replace("plain", "").replace("resnet", "")
        label = f"{'plain' if name.startswith('plain') else 'ResNet'}-{depth}"
        axes[0].plot(range(1, len(p["stds"]) + 1), p["stds"], style, color=col, label=label, lw=1.3)
        axes[1].plot(range(1, len(p["stds"]) + 1), p["sorted_desc"], style, color=col, label=label, lw=1.3)
    axes[0].set_title("std of 3x3 responses (after BN), layer order", fontsize=10)
    axes[1].set_title("the same, sorted by magnitude", fontsize=10)
    for ax in axes[:2]:
        ax.set_xlabel("layer index")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for i, (d, vals) in enumerate(sorted(ratios_per_epoch.items(), key=lambda kv: int(kv[0]))):
        axes[2].plot(range(len(vals)), vals, "o-", color=COLORS[i % len(COLORS)], label=f"ResNet-{d}")
    axes[2].set_title("mean ||F(x)|| / ||x|| per epoch (0 = init)", fontsize=10)
    axes[2].set_xlabel("epoch")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    return _save(fig, path)


def gradient_flow(measured: dict, path: Path) -> Path:
    """R5: ||dL/d a|| per block (log), stem left, head right, three regimes; and the block
    Jacobian singular values (min / median / max) with and without the shortcut."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    titles = {"init_bn": "init, with BN", "init_none": "init, no normalisation",
              "trained_bn": "after training, with BN"}
    for ax, key in zip(axes[:3], ("init_bn", "init_none", "trained_bn"), strict=True):
        deepest = max((_depth(n) for n in measured[key]), default=0)
        for name, p in sorted(measured[key].items()):
            col = PLAIN if name.startswith("plain") else RESNET
            deep = _depth(name) == deepest
            ax.plot(range(len(p["norms"])), p["norms"], "-" if deep else ":",
                    color=col, label=f"{name} ({p['stem_over_head']:.3g}x)", lw=1.5)
        ax.set_yscale("log")
        ax.set_title(f"||dL/d activation||: {titles[key]}", fontsize=9)
        ax.set_xlabel("stem -> block -> head")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    ax = axes[3]
    jac = measured["jacobian_trained"]
    for j, item in enumerate(jac):
        lo, med, hi = item["with_shortcut"]
        ax.plot([j - 0.12] * 2, [max(lo, 1e-12), hi], color=RESNET, lw=3, alpha=0.6)
        ax.plot(j - 0.12, med, "o", color=RESNET, label="I + dF/dx" if j == 0 else None)
        lo, med, hi = item["without_shortcut"]
        ax.plot([j + 0.12] * 2, [max(lo, 1e-12), hi], color=PLAIN, lw=3, alpha=0.6)
        ax.plot(j + 0.12, max(med, 1e-12), "s", color=PLAIN, label="dF/dx (no shortcut)" if j == 0 else None)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(jac)), [j["block"] for j in jac], fontsize=7, rotation=30)
    ax.set_title(f"block Jacobian singular values\n(trained ResNet-{measured['depth']}: min, median, max)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


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
    return _save(fig, path)
