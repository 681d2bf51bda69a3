"""The `cnnarch train` command line: one flag per TrainConfig field, and the layering of
saved run config < ``--config FILE`` < flags into one validated ``TrainConfig``.

Flags, metavars, defaults and help come from the fields themselves (train/config.py), so
``--help`` shows every default and nothing can drift. ``--print-config`` prints what a
recipe (and a file, and flags) set, as the ``config.toml`` the run would write.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from ..errors import UserError
from ..model_options import INCEPTION_MODES, SHORTCUTS, STRIDE_AT
from .config import FIELD_NAMES, RECIPES, field_specs, read_toml, resolve_config

MODEL_OPTIONS = ("shortcut", "norm", "stride_at", "inception", "aux_logits", "zero_init_residual")
METAVARS = {int: "N", float: "X", str: "TEXT", dict: "JSON", list: "N,N,..."}
DESCRIPTION = ("Train MODEL. Every config field is a flag (--batch-size 64) and a TOML key "
               "(batch_size = 64); --set key=value works for any field. Precedence: defaults < "
               "--recipe < --config FILE < flags. Datasets: digits, cifar10, cifar100, "
               "synthetic[:CxHxW:CLASSES:N], imagefolder:PATH. Recipes: " + ", ".join(RECIPES)
               + " (see one with --recipe NAME --print-config).")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="a registered model name (see `cnnarch models`); optional with --resume")
    p.add_argument("--config", metavar="FILE.toml", help="read config fields from a TOML file")
    p.add_argument("--set", dest="set_values", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field, e.g. --set warmup_epochs=0 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the final result as one JSON object")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (recipe, file and flags applied) as TOML and exit")
    for spec in field_specs():
        if spec.name == "model":
            continue
        name, text = spec.name.replace("_", "-"), spec.help.replace("%", "%%")  # argparse formats help
        if spec.kind is bool:
            p.add_argument(f"--{name}", dest=f"cfg_{spec.name}", action="store_const", const=True,
                           default=None, help=f"{text} (default: {'on' if spec.default else 'off'}; "
                                              f"--no-{name} turns it off)")
            p.add_argument(f"--no-{name}", dest=f"cfg_{spec.name}", action="store_const",
                           const=False, help=argparse.SUPPRESS)
            continue
        metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else METAVARS[spec.kind]
        shown = "unset" if spec.default is None else '""' if spec.default == "" else spec.default
        p.add_argument(f"--{name}", dest=f"cfg_{spec.name}", default=None, metavar=metavar,
                       help=f"{text} (default: {shown})")
    g = p.add_argument_group("model options (shortcuts into --model-kwargs)")
    g.add_argument("--shortcut", choices=SHORTCUTS, help="ResNet shortcut option (Sec. 3.3)")
    g.add_argument("--norm", metavar="{bn,lrn,none}",
                   help="normalisation: bn | none (ResNet); lrn | bn | none (GoogLeNet)")
    g.add_argument("--stride-at", choices=STRIDE_AT, help="bottleneck stride position")
    g.add_argument("--inception", choices=INCEPTION_MODES,
                   help="GoogLeNet module type (linear: no ReLU after the 1x1 reductions)")
    g.add_argument("--aux-logits", dest="aux_logits", action="store_const", const=True,
                   help="GoogLeNet: train with the auxiliary heads")
    g.add_argument("--no-aux-logits", dest="aux_logits", action="store_const", const=False,
                   help="GoogLeNet: no auxiliary heads")
    g.add_argument("--zero-init-residual", dest="zero_init_residual", action="store_const",
                   const=True, help="ResNet: zero the last BN gamma of each block")


def _flag_layer(args) -> dict:
    flags: dict = {}
    for item in args.set_values:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        flags[key.strip().replace("-", "_")] = value.strip()
    for name in FIELD_NAMES:
        value = getattr(args, f"cfg_{name}", None)
        if value is not None:
            flags[name] = value
    return flags


def config_from_args(args):
    """Merge (saved run config) < --config file < flags into a validated TrainConfig."""
    from ..models import get_entry
    from .resume import saved_config

    flags = _flag_layer(args)
    resume = flags.pop("resume", None)
    layers: list[dict] = []
    if resume:
        run, base = saved_config(resume)
        if args.model and args.model != base.get("model"):
            raise UserError(f"cannot resume {run} (a {base.get('model')} run) as {args.model}")
        layers.append(base)
        flags.setdefault("out", str(run))
    if args.config:
        layers.append(read_toml(args.config))
    if args.model:
        flags["model"] = args.model
    layers.append(flags)
    model = next((layer["model"] for layer in reversed(layers) if "model" in layer), None)
    if not model and getattr(args, "print_config", False):
        model = "resnet20"
    if not model:
        raise UserError("give a MODEL (see `cnnarch models`), a --config file that names one, "
                        "or --resume RUN_DIR")
    entry = get_entry(str(model))
    options = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k, None) is not None}
    if options:
        flags["model_kwargs"] = {**_merged_model_kwargs(layers), **options}
    cfg = resolve_config(*layers, source="train")
    own = [o for o in entry.options if o not in ("num_classes", "in_chans")]
    unknown = sorted(set(cfg.model_kwargs) - set(own))
    if {"num_classes", "in_chans"} & set(cfg.model_kwargs):
        raise UserError("num_classes and in_chans come from the dataset; remove them from model_kwargs")
    if unknown:
        raise UserError(f"{cfg.model} has no option {', '.join(map(repr, unknown))}; valid "
                        f"options: {', '.join(own)}")
    if cfg.out is None and not getattr(args, "print_config", False):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg = cfg.replace(out=str(Path("runs") / f"{cfg.model}-{stamp}"))
    if resume:
        cfg = cfg.replace(resume=str(resume))
    return cfg


def _merged_model_kwargs(layers: list[dict]) -> dict:
    kwargs: dict = {}
    for layer in layers:
        mk = layer.get("model_kwargs", {})
        if isinstance(mk, str):
            try:
                mk = json.loads(mk)
            except json.JSONDecodeError:
                raise UserError(f"--model-kwargs expects a JSON object, got {mk!r}") from None
        if isinstance(mk, dict):
            kwargs.update(mk)
    return kwargs
