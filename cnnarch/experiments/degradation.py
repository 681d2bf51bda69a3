"""R1-R3: deep residual nets train; plain twins degrade; twins differ only by the shortcut.

The degradation experiment (ResNet paper Fig. 6): plain-N and ResNet-N (CIFAR family,
option A) for each depth of the scale, trained with identical settings through
``cnnarch.train``; training and test error per epoch. The trained twins are kept (in
memory) for the residual-response and gradient experiments, which then need no training
of their own.
"""

from __future__ import annotations

import torch

from .common import Progress, claim, errors, get_scale, load_data, pct, probe_batch, train_model

MARGIN = 0.02  # 2 percentage points of training error: "worse" / "not worse"
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)


def verdict_r2(m: dict, margin: float = MARGIN) -> dict:
    """Deepest plain's final training error exceeds the shallowest plain's by > margin, while
    the deepest ResNet's is not worse than the shallowest ResNet's by that margin."""
    lo, hi = str(min(m["depths"])), str(max(m["depths"]))
    p_lo, p_hi = m["final_train_error"]["plain"][lo], m["final_train_error"]["plain"][hi]
    r_lo, r_hi = m["final_train_error"]["resnet"][lo], m["final_train_error"]["resnet"][hi]
    plain_degrades = p_hi > p_lo + margin
    resnet_fine = r_hi <= r_lo + margin
    ok = plain_degrades and resnet_fine
    rule = (f"plain-{hi} final training error {pct(p_hi)} {'>' if plain_degrades else '<='} plain-{lo} "
            f"{pct(p_lo)} + {pct(margin)} (degradation {'seen' if plain_degrades else 'not seen'}); "
            f"ResNet-{hi} {pct(r_hi)} {'<=' if resnet_fine else '>'} ResNet-{lo} {pct(r_lo)} + "
            f"{pct(margin)} (residual nets {'do not degrade' if resnet_fine else 'degrade too'})")
    return claim(ok, m, rule)


def verdict_r1(m: dict, margin: float = MARGIN) -> dict:
    """Every ResNet depth builds and runs forward + backward with finite numbers, and the deepest
    trained ResNet ends no worse than the shallowest one and than its plain twin."""
    all_run = all(r["ok"] for r in m["build_and_run"].values())
    lo, hi = str(min(m["depths"])), str(max(m["depths"]))
    r_hi = m["final_train_error"]["resnet"][hi]
    r_lo = m["final_train_error"]["resnet"][lo]
    p_hi = m["final_train_error"]["plain"][hi]
    trains = r_hi <= r_lo + margin and r_hi <= p_hi
    ok = all_run and trains
    failed = [n for n, r in m["build_and_run"].items() if not r["ok"]]
    rule = (f"{len(m['build_and_run']) - len(failed)}/{len(m['build_and_run'])} ResNets "
            f"(ImageNet 18-152, CIFAR 20-1202) build and run forward + backward with finite "
            f"outputs and gradients{' (failed: ' + ', '.join(failed) + ')' if failed else ''}; the "
            f"deepest trained, ResNet-{hi}, ends at {pct(r_hi)} training error, "
            f"{'<=' if r_hi <= r_lo + margin else '>'} ResNet-{lo} {pct(r_lo)} + {pct(margin)} and "
            f"{'<=' if r_hi <= p_hi else '>'} plain-{hi} {pct(p_hi)}")
    return claim(ok, m, rule)


def verdict_r3(m: dict) -> dict:
    same_params = all(v["resnet"] == v["plain"] for v in m["params_option_a"].values())
    sc = m["shortcut_params"]
    ordered = sc["A"] < sc["B"] < sc["C"]
    ok = same_params and m["state_dict_interchangeable"] and m["blocks_differ_only_by_shortcut"] and ordered
    rule = (f"option A: ResNet and plain twin have identical parameter counts at every CIFAR depth "
            f"({same_params}; e.g. 20: {m['params_option_a']['20']['resnet']:,} vs "
            f"{m['params_option_a']['20']['plain']:,}); the plain twin loads the ResNet's weights "
            f"with strict=True ({m['state_dict_interchangeable']}); with the same weights every "
            f"block computes relu(F(x) + shortcut(x)) vs relu(F(x)) "
            f"({m['blocks_differ_only_by_shortcut']}); ResNet-34 shortcut params A {sc['A']:,} < "
            f"B {sc['B']:,} < C {sc['C']:,} ({ordered})")
    return claim(ok, m, rule)


def build_and_run(in_chans: int, size: int) -> dict:
    """Forward + backward of every ResNet depth on a batch of 2 random images."""
    from ..models import create_model

    out = {}
    for name, shape in ([(f"resnet{d}", (3, 32, 32)) for d in IMAGENET_DEPTHS]
                        + [(f"resnet{d}", (in_chans, size, size)) for d in CIFAR_DEPTHS]):
        torch.manual_seed(0)
        model = create_model(name, in_chans=shape[0], num_classes=10)
        x = torch.randn(2, *shape)
        y = model(x)
        y.float().square().mean().backward()
        finite = bool(torch.isfinite(y).all()) and all(
            p.grad is None or bool(torch.isfinite(p.grad).all()) for p in model.parameters())
        out[name] = {"input": list(shape), "params": sum(p.numel() for p in model.parameters()),
                     "blocks": len(model.blocks()), "ok": finite and tuple(y.shape) == (2, 10)}
        del model
    return out


def twin_checks(in_chans: int, size: int) -> dict:
    from ..models import create_model

    params = {}
    for d in (20, 32, 44, 56, 110):
        with torch.device("meta"):
            r, p = create_model(f"resnet{d}"), create_model(f"plain{d}")
        params[str(d)] = {"resnet": sum(t.numel() for t in r.parameters()),
                          "plain": sum(t.numel() for t in p.parameters())}
    shortcut = {}
    for opt in "ABC":
        with torch.device("meta"):
            shortcut[opt] = sum(t.numel() for t in create_model("resnet34", shortcut=opt).parameters())
    torch.manual_seed(0)
    res = create_model("resnet20", in_chans=in_chans).eval()
    plain = create_model("plain20", in_chans=in_chans).eval()
    try:
        plain.load_state_dict(res.state_dict(), strict=True)
        loads = True
    except RuntimeError:
        loads = False
    same = True
    x = torch.randn(4, in_chans, size, size)
    with torch.no_grad():
        h = res.relu(res.bn1(res.conv1(x)))
        for rb, pb in zip(res.blocks(), plain.blocks(), strict=True):
            f = rb.residual(h)
            same &= torch.allclose(rb(h), torch.relu(f + rb.shortcut(h)), atol=1e-6)
            same &= torch.allclose(pb(h), torch.relu(f), atol=1e-6)
            h = rb(h)
    return {"params_option_a": params, "shortcut_params": shortcut,
            "state_dict_interchangeable": loads, "blocks_differ_only_by_shortcut": bool(same)}


def train_twins(scale, *, data: str = "digits", seed: int = 0, progress: Progress | None = None,
                data_dir=None, device: str = "auto", depths=None) -> dict:
    """Train plain-N and ResNet-N for each depth; keep models, curves and per-epoch
    ||F(x)||/||x|| of the ResNets (R4) on a fixed probe batch of test images."""
    from ..analysis.responses import residual_ratios
    from ..models import create_model

    sc = get_scale(scale)
    progress = progress or Progress(enabled=False)
    ds = load_data(data, data_dir)
    probe_x, _ = probe_batch(ds, sc.probe_images, split="test")
    runs = {}
    for depth in depths or sc.depths:
        for kind in ("plain", "resnet"):
            name = f"{kind}{depth}"
            progress.say(f"training {name} ({sc.epochs} epochs, batch {sc.batch_size}) on {data}")
            ratios = []
            if kind == "resnet":
                torch.manual_seed(seed)
                init = create_model(name, in_chans=ds.in_chans, num_classes=ds.num_classes)
                from ..analysis.gradients import calibrate_bn

                ratios.append(residual_ratios(calibrate_bn(init, probe_x), probe_x).ratios)

            def on_epoch_end(model, record, kind=kind, ratios=ratios):
                if kind == "resnet":  # on the training device: the model must stay where it is
                    device = next(model.parameters()).device
                    ratios.append(residual_ratios(model, probe_x.to(device)).ratios)

            model, history = train_model(name, sc, data=data, seed=seed, on_epoch_end=on_epoch_end,
                                         data_dir=data_dir, device=device)
            progress.advance(depth * sc.epochs)
            last = history[-1]
            progress.say(f"  {name}: train error {pct(1 - last['train_acc'])}, test error "
                         f"{pct(1 - last['test_acc'])}")
            runs[name] = {"model": model, "history": history, "ratios": ratios,
                          "depth": depth, "kind": kind}
    return {"runs": runs, "dataset": ds, "data": data, "scale": sc.name}


def run(scale="quick", *, data: str = "digits", seed: int = 0, progress: Progress | None = None,
        trained: dict | None = None, data_dir=None, device: str = "auto", **_) -> dict:
    sc = get_scale(scale)
    progress = progress or Progress(enabled=False)
    progress.start("degradation (R1-R3)")
    trained = trained or train_twins(sc, data=data, seed=seed, progress=progress,
                                     data_dir=data_dir, device=device)
    runs, ds = trained["runs"], trained["dataset"]
    depths = sorted({r["depth"] for r in runs.values()})
    curves = {name: errors(r["history"]) for name, r in runs.items()}
    final_train = {k: {str(d): curves[f"{k}{d}"]["train_error"][-1] for d in depths}
                   for k in ("plain", "resnet")}
    final_test = {k: {str(d): curves[f"{k}{d}"]["test_error"][-1] for d in depths}
                  for k in ("plain", "resnet")}
    base = {"depths": depths, "epochs": len(next(iter(curves.values()))["train_error"]),
            "final_train_error": final_train, "final_test_error": final_test}
    progress.say("R1: building and running every ResNet depth (ImageNet 18-152, CIFAR 20-1202)")
    r1 = dict(base, build_and_run=build_and_run(ds.in_chans, ds.image_size[0]))
    progress.say("R3: plain twins vs ResNets (parameters, weights, block outputs)")
    r3 = twin_checks(ds.in_chans, ds.image_size[0])
    return {"claims": {"R1": verdict_r1(r1), "R2": verdict_r2(base), "R3": verdict_r3(r3)},
            "data": {"curves": curves, "depths": depths}, "trained": trained}
