"""One flat training config (``TrainConfig``), its recipes, validation, and TOML in/out.

Each field declares its type (the annotation), default, help text, choices and bounds
(``field(metadata=...)``, made by ``_f``); validation, the CLI's flags and ``--help``, and
the comments of ``config.toml`` all read them from there. The CLI (``--set key=value``
and per-field flags) and a TOML file (``--config``) set the same fields, so
``config.toml`` saved in a run folder reloads as is. Precedence: defaults < ``recipe`` <
TOML file < flags.

Recipes (``--recipe``):

- ``paper-cifar`` (He et al. 2015, Sec. 4.2): SGD lr 0.1, momentum 0.9, weight decay
  1e-4, batch 128, lr / 10 at 32k and 48k iterations, stop at 64k. ResNet/plain-110 and
  deeper: lr 0.01 until the training error is below 80 %, then 0.1.
- ``paper-imagenet`` (torchvision's V1 recipe): SGD lr 0.1, momentum 0.9, wd 1e-4,
  batch 256, lr x 0.1 every 30 epochs, 90 epochs.
- ``cosine``: SGD with Nesterov momentum, wd 5e-4, linear warm-up for 5 epochs then
  cosine decay to 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..data.imagefolder import MAX_IMAGE_SIZE  # px: the largest image_size, checked there too
from ..errors import UserError
from ..precision import TRAIN_PRECISIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
MILESTONE_UNITS = ("epoch", "iteration")
SWITCHES = ("auto", "on", "off")
MAX_COUNT = 10**9  # epochs, iterations, batch size, ...: larger is a typo, not a plan
FLOAT32_MAX = 3.4e38


def _f(default, help: str, *, choices: tuple = (), low=None, high=None, above: bool = False,
       below: bool = False, factory=None):
    """A TrainConfig field: its default, help text and bounds (``low <= v``, ``low < v`` with
    ``above``; ``v <= high``, ``v < high`` with ``below``), read by validation, the CLI and
    ``to_toml``."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "above": above,
            "below": below}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # --- what to train, on what
    model: str = _f("resnet20", "registry name (`cnnarch models`)")
    model_kwargs: dict = _f(None, "model options, e.g. {shortcut = \"B\"}", factory=dict)
    data: str = _f("digits", "digits | cifar10 | cifar100 | synthetic[:CxHxW:K:N] | imagefolder:PATH")
    data_dir: str | None = _f(None, "folder/archive for CIFAR (unset = $CNNARCH_DATA or ~/.cache)")
    download: bool = _f(False, "fetch CIFAR (MD5-verified) when it is missing")
    val_split: bool = _f(True, "evaluate (and pick best.pt) on a part held out of train "
                               "(CIFAR 45k/5k, others 10 %) instead of the test split")
    image_size: int = _f(0, "px; image-folder size (0 = the images' native size)",
                         low=0, high=MAX_IMAGE_SIZE)
    workers: int = _f(4, "DataLoader worker processes (image folders only)", low=0, high=256)
    # --- how long
    epochs: int = _f(15, "passes over the training split (ignored when iterations > 0)",
                     low=1, high=MAX_COUNT)
    iterations: int = _f(0, "optimizer steps to run; > 0 overrides epochs (paper-cifar: 64000)",
                         low=0, high=MAX_COUNT)
    batch_size: int = _f(128, "images per optimizer step, over all processes", low=1, high=MAX_COUNT)
    # --- optimizer and schedule
    optimizer: str = _f("sgd", "sgd | adamw", choices=OPTIMIZERS)
    lr: float = _f(0.1, "peak learning rate", low=0.0, above=True)
    momentum: float = _f(0.9, "SGD momentum (AdamW beta1), in [0, 1)", low=0.0, high=1.0, below=True)
    nesterov: bool = _f(False, "Nesterov momentum (SGD only)")
    weight_decay: float = _f(5e-4, "L2 penalty on all weights (paper: 1e-4)", low=0.0)
    schedule: str = _f("cosine", "cosine | step | constant (after the warm-up)", choices=SCHEDULES)
    milestones: list = _f(None, "step schedule: lr *= gamma at each one", factory=list)
    milestone_unit: str = _f("epoch", "epoch | iteration (unit of milestones)", choices=MILESTONE_UNITS)
    gamma: float = _f(0.1, "step schedule: factor at each milestone", low=0.0, above=True)
    warmup_epochs: float = _f(1.0, "epochs of linear warm-up from ~0 to lr (0 = none)", low=0.0)
    warmup_until_error: float = _f(0.0, "fraction; lr x 0.1 until train error < this (paper R-110: 0.8)",
                                   low=0.0, high=1.0)
    label_smoothing: float = _f(0.0, "cross-entropy label smoothing, fraction in [0, 1)",
                                low=0.0, high=1.0, below=True)
    aux_weight: float = _f(0.3, "GoogLeNet aux-head loss weight (Sec. 5), training only", low=0.0)
    # --- speed (each switchable; "auto" = the measured safe fast choice)
    precision: str = _f("auto", "auto | fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler)",
                        choices=TRAIN_PRECISIONS)
    channels_last: str = _f("auto", "auto | on | off (NHWC memory format)", choices=SWITCHES)
    compile: bool = _f(False, "torch.compile the model (CPU: with train/batchnorm.py's batch norm)")
    sync_bn: bool = _f(False, "SyncBatchNorm across processes under torchrun")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps")
    # --- reproducibility, output
    seed: int = _f(0, "seeds torch, numpy, python and the data/augmentation generator",
                   low=0, high=2**63 - 1)
    eval_every: int = _f(1, "epochs between evaluations (the last epoch is always evaluated)",
                         low=1, high=MAX_COUNT)
    log_every: int = _f(20, "steps between progress updates (and non-finite-loss checks on GPU)",
                        low=1, high=MAX_COUNT)
    out: str | None = _f(None, "run folder (unset = write nothing); CLI default runs/<model>-<time>")
    resume: str | None = _f(None, "run folder (or checkpoint) to continue from")
    quiet: bool = _f(False, "no progress bar; one log line per epoch instead")
    recipe: str = _f("", "name of the preset applied under these values (\"\" = none)")

    def __post_init__(self):
        for f in fields(self):  # one pass: convert, type-check, bound-check each field
            setattr(self, f.name, check_field(f.name, getattr(self, f.name)))
        check_together(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> TrainConfig:
        check_keys(values, source)
        try:
            return cls(**values)
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


HINTS = typing.get_type_hints(TrainConfig)
FIELDS = {f.name: f for f in fields(TrainConfig)}
FIELD_NAMES = tuple(FIELDS)


@dataclass(frozen=True)
class FieldSpec:
    """One TrainConfig field as the CLI and docs show it."""

    name: str
    kind: type  # bool, int, float, str, dict or list
    optional: bool  # None allowed
    default: object
    help: str
    choices: tuple


def field_kind(name: str) -> tuple[type, bool]:
    """-> (the field's type without ``None``, whether ``None`` is allowed)."""
    hint = HINTS[name]
    args = typing.get_args(hint)
    if type(None) in args:
        (kind,) = (a for a in args if a is not type(None))
        return kind, True
    return (typing.get_origin(hint) or hint), False


def field_specs() -> list[FieldSpec]:
    out = []
    for name, f in FIELDS.items():
        kind, optional = field_kind(name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append(FieldSpec(name, kind, optional, default, f.metadata["help"], f.metadata["choices"]))
    return out


def check_keys(values: dict, source: str) -> None:
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise UserError(f"{source}: unknown key {', '.join(map(repr, unknown))}; "
                        f"valid keys: {', '.join(FIELD_NAMES)}")


_DESCRIBE = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "a table / JSON object", list: "a list of integers"}


def check_field(name: str, value):
    """``value`` (Python, TOML or a command-line string) as field ``name``'s type, within its
    bounds and choices; a UserError naming the field otherwise."""
    kind, optional = field_kind(name)
    if value is None:
        if not optional:
            raise UserError(f"{name} cannot be empty")
        return None
    value = _convert(name, kind, value)
    meta = FIELDS[name].metadata
    if meta["choices"] and value not in meta["choices"]:
        raise UserError(f"invalid {name}={value!r}; choose one of {', '.join(meta['choices'])}")
    if kind is float and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
        raise UserError(f"invalid {name}={value!r}; must be a finite number (at most 3.4e38)")
    low, high = meta["low"], meta["high"]
    if low is not None and (value < low or (meta["above"] and value == low)):
        raise UserError(f"invalid {name}={value!r}; must be {'>' if meta['above'] else '>='} {low}")
    if high is not None and (value > high or (meta["below"] and value == high)):
        raise UserError(f"invalid {name}={value!r}; must be {'<' if meta['below'] else '<='} {high}")
    return value


def _convert(name: str, kind: type, value):
    bad = UserError(f"{name} expects {_DESCRIBE[kind]}, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower() if isinstance(value, str) else None
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise bad
    if kind is str:
        if name == "channels_last" and isinstance(value, bool):  # True/False as on/off
            return "on" if value else "off"
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(value, bool):
        raise bad
    if kind is int:
        return _to_int(value, bad)
    if kind is float:
        if isinstance(value, (int, float)):
            return float(value)
        if not isinstance(value, str):
            raise bad
        try:
            return float(value)
        except ValueError:
            raise bad from None
    if kind is dict:
        return _to_dict(name, value, bad)
    if kind is list:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_to_int(v, bad) for v in value]
    raise AssertionError(f"unhandled field type {kind}")  # pragma: no cover


def _to_int(value, bad: UserError) -> int:
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:
            try:
                f = float(value)
            except ValueError:
                raise bad from None
            if f.is_integer():
                return int(f)
    raise bad


def _to_dict(name: str, value, bad: UserError) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise bad from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise bad
    for k, v in value.items():
        if not isinstance(v, (str, int, float, bool)):
            raise UserError(f"{name}.{k} must be a string, number or boolean, got {v!r}")
    return dict(value)


def check_together(cfg: TrainConfig) -> None:
    """The rules that involve more than one field, or a pattern rather than a range."""
    if not cfg.model:
        raise UserError("model must be a registry name (see `cnnarch models`)")
    if cfg.recipe and cfg.recipe not in RECIPES:
        raise UserError(f"invalid recipe={cfg.recipe!r}; choose one of {', '.join(RECIPES)}")
    if any(m < 0 for m in cfg.milestones):
        raise UserError(f"invalid milestones={cfg.milestones!r}; must be >= 0")
    if cfg.device != "auto" and not (cfg.device in ("cpu", "cuda", "mps")
                                     or (cfg.device.startswith("cuda:") and cfg.device[5:].isdigit())):
        raise UserError(f"invalid device={cfg.device!r}; choose one of auto, cpu, cuda, cuda:N, mps")


# --- recipes --------------------------------------------------------------------------------

RECIPES: dict[str, dict] = {
    "paper-cifar": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
                        batch_size=128, schedule="step", milestones=[32000, 48000],
                        milestone_unit="iteration", gamma=0.1, iterations=64000, warmup_epochs=0.0,
                        label_smoothing=0.0),
    "paper-imagenet": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
                           batch_size=256, schedule="step", milestones=[30, 60],
                           milestone_unit="epoch", gamma=0.1, epochs=90, iterations=0,
                           warmup_epochs=0.0),
    "cosine": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                   schedule="cosine", warmup_epochs=5.0),
}


def paper_warmup_until_error(model: str) -> float:
    """Sec. 4.2: for the 110-layer net lr 0.1 is "slightly too large to start converging", so
    it trains at 0.01 until the training error is below 80 % (about 400 iterations), then at
    0.1. -> ``warmup_until_error`` for ``model`` under the paper's CIFAR schedule: 0.8 from a
    depth of 110 layers (the registry's ``entry.depth``), else 0 (no hold)."""
    from ..models import MODELS

    entry = MODELS.get(model)
    return 0.8 if entry is not None and entry.depth >= 110 else 0.0


def recipe_values(name: str, model: str) -> dict:
    """The field values a recipe sets, for this model (``paper-cifar``: the R-110 warm-up rule)."""
    if not name:
        return {}
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    values = dict(RECIPES[name], recipe=name)
    if name == "paper-cifar" and paper_warmup_until_error(model):
        values["warmup_until_error"] = paper_warmup_until_error(model)
    return values


def resolve_config(*layers: dict, source: str = "config") -> TrainConfig:
    """Defaults < recipe (taken from the last layer that names one) < each layer in order."""
    merged: dict = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items()})
    check_keys(merged, source)
    model = str(merged.get("model") or FIELDS["model"].default)
    base = recipe_values(str(merged.get("recipe", "") or ""), model)
    return TrainConfig.from_dict({**base, **merged}, source=source)


# --- TOML -----------------------------------------------------------------------------------


TOML_HEADER = "# cnnarch training config (resolved); reload with `cnnarch train --config FILE`"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(cfg: TrainConfig) -> str:
    """One ``key = value`` line per field, with the field's comment; None fields are left out
    (a missing key reads back as its default, None)."""
    comments = {name: f.metadata["help"] for name, f in FIELDS.items()}
    lines = [TOML_HEADER]
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if v is None:
            lines.append(f"# {f.name} is unset  # {comments.get(f.name, '')}".rstrip())
            continue
        lines.append(f"{f.name} = {_toml_value(v)}  # {comments.get(f.name, '')}".rstrip(" #"))
    return "\n".join(lines) + "\n"


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a folder") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path}: invalid TOML ({exc})") from None
    return data


def load_config(path: str | Path) -> TrainConfig:
    """Read a config TOML (e.g. a run folder's config.toml) into a validated TrainConfig."""
    return resolve_config(read_toml(path), source=str(path))
