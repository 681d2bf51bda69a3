"""G5: GoogLeNet's auxiliary classifiers and the gradient they add to the lower layers.

googlenet_small trained twice under identical settings (same seed, data order and
schedule): with the aux losses (main + 0.3 x (aux1 + aux2), Sec. 5) and without
(``aux_weight = 0``; the heads exist in both runs so both start from the same weights).
Then, on the network trained with aux heads, the gradient norm reaching the lower layers
(conv1..3, inception 3a/3b/4a) from the main loss alone and from the combined loss,
from one forward pass. The same at initialisation, with BN and without normalisation.
"""

from __future__ import annotations

import torch

from .common import Progress, claim, errors, get_scale, load_data, pct, probe_batch, train_model

MIN_EXTRA = 1.05  # the aux losses must add at least 5 % to the lower layers' gradient norm


def verdict_g5(m: dict) -> dict:
    """The aux losses must add gradient to the lower layers (mean ratio >= MIN_EXTRA) where the
    main loss's gradient vanishes: the network without normalisation at init, as GoogLeNet was
    in 2014 (no BN). On the trained BN network the same ratio must hold too, but only counts
    once that network has learned (test accuracy >= 2 x chance); otherwise the run was too
    short to say, and the verdict rests on (a) with the trained ratio reported."""
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    none_ratio = mean(m["init_none"]["ratios"])
    trained_ratio = mean(m["trained_with_aux"]["ratios"])
    acc = m["final_test_acc"]
    chance = 1.0 / m["num_classes"]
    learned = acc["with_aux"] >= 2 * chance
    vanishes = m["init_none"]["main_only"][0] < m["init_none"]["main_only"][-1]
    part_a = none_ratio >= MIN_EXTRA
    part_b = trained_ratio >= MIN_EXTRA if learned else None
    ok = part_a and part_b is not False
    layers = m["trained_with_aux"]["layers"]
    rule = (f"(a) no normalisation, at init: main-loss gradient at {layers[0]} "
            f"{m['init_none']['main_only'][0]:.3g} vs {layers[-1]} {m['init_none']['main_only'][-1]:.3g} "
            f"({'vanishes toward the stem' if vanishes else 'does not vanish'}); "
            f"||grad of main + 0.3 (aux1 + aux2)|| / ||grad of main|| over {', '.join(layers)}: "
            f"mean {none_ratio:.4g} (needs >= {MIN_EXTRA:g}: {'yes' if part_a else 'no'}). "
            f"(b) trained googlenet_small (BN): ratios "
            f"{', '.join(f'{n} {v:.3f}' for n, v in zip(layers, m['trained_with_aux']['ratios'], strict=True))} "
            f"(mean {trained_ratio:.3f}); test accuracy {pct(acc['with_aux'])} with aux, "
            f"{pct(acc['without_aux'])} without; "
            + (f"counts (learned: >= 2 x chance {pct(2 * chance)}): "
               f"{'yes' if part_b else 'no'}" if learned else
               f"not counted: below 2 x chance {pct(2 * chance)}, too short a run to judge (full scale trains it)")
            + f". With BN at init the ratio is {mean(m['init_bn']['ratios']):.3f}: BN alone keeps the "
            f"gradient from vanishing.")
    return claim(ok, m, rule)


def run(scale="quick", *, data: str = "digits", seed: int = 0, progress: Progress | None = None,
        data_dir=None, device: str = "auto", **_) -> dict:
    from ..analysis.gradients import lower_layer_gradients
    from ..models import create_model

    sc = get_scale(scale)
    progress = progress or Progress(enabled=False)
    progress.start("aux-heads (G5)")
    ds = load_data(data, data_dir)
    x, y = probe_batch(ds, min(sc.probe_images, 64), split="train")
    length = (f"{sc.aux_iterations} steps" if sc.aux_iterations else f"{sc.aux_epochs} epochs")
    runs = {}
    for label, weight in (("with_aux", 0.3), ("without_aux", 0.0)):
        progress.say(f"training googlenet_small {label.replace('_', ' ')} ({length}, batch "
                     f"{sc.aux_batch_size}) on {data}")
        model, history = train_model("googlenet_small", sc, data=data, seed=seed,
                                     epochs=sc.aux_epochs, iterations=sc.aux_iterations,
                                     batch_size=sc.aux_batch_size, aux_weight=weight,
                                     data_dir=data_dir, device=device)
        runs[label] = {"model": model, "history": history}
        progress.advance(1)
    progress.say("lower-layer gradient norms, main loss vs main + aux")
    trained = lower_layer_gradients(runs["with_aux"]["model"], x, y, seed=seed)

    def fresh(norm):
        torch.manual_seed(seed)
        return create_model("googlenet_small", in_chans=ds.in_chans, num_classes=ds.num_classes, norm=norm)

    init_bn = lower_layer_gradients(fresh("bn"), x, y, seed=seed)
    init_none = lower_layer_gradients(fresh("none"), x, y, seed=seed)
    m = {"trained_with_aux": trained.to_dict(), "init_bn": init_bn.to_dict(),
         "init_none": init_none.to_dict(),
         "num_classes": ds.num_classes,
         "final_test_acc": {k: r["history"][-1]["test_acc"] for k, r in runs.items()},
         "final_train_acc": {k: r["history"][-1]["train_acc"] for k, r in runs.items()},
         "training": length}
    return {"claims": {"G5": verdict_g5(m)},
            "data": {"curves": {k: errors(r["history"]) for k, r in runs.items()}}}
