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
    r = m["trained_with_aux"]["ratios"]
    mean_ratio = sum(r) / len(r)
    acc = m["final_test_acc"]
    chance = 1.0 / m["num_classes"]
    learned = acc["with_aux"] >= 2 * chance  # the ratio is only meaningful on a net that learned
    ok = mean_ratio >= MIN_EXTRA and learned
    init_bn = m["init_bn"]["ratios"]
    init_none = m["init_none"]["ratios"]
    rule = (f"trained googlenet_small: ||grad of main + 0.3 (aux1 + aux2)|| / ||grad of main|| over "
            f"the lower layers {', '.join(f'{n} {v:.3f}' for n, v in zip(m['trained_with_aux']['layers'], r, strict=True))}"
            f" (mean {mean_ratio:.3f}; extra gradient needs >= {MIN_EXTRA:g}: "
            f"{'yes' if mean_ratio >= MIN_EXTRA else 'no'}), measured on a net that learned (test "
            f"accuracy {pct(acc['with_aux'])} >= 2 x chance {pct(2 * chance)}: "
            f"{'yes' if learned else 'no'}). Context: at init the mean ratio is "
            f"{sum(init_bn) / len(init_bn):.3f} with BN and {sum(init_none) / len(init_none):.3f} "
            f"without normalisation; final test accuracy with aux {pct(acc['with_aux'])}, "
            f"without {pct(acc['without_aux'])}")
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
