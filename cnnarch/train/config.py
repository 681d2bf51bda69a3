"""One flat training config (``TrainConfig``), its recipes, validation, and TOML in/out.

Every field has a unit and a comment below; the CLI (``--set key=value`` and per-field
flags) and a TOML file (``--config``) set the same fields, so ``config.toml`` saved in a
run folder reloads as is. Precedence: defaults < ``recipe`` < TOML file < flags.

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
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
MILESTONE_UNITS = ("epoch", "iteration")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SWITCHES = ("auto", "on", "off")


@dataclass
class TrainConfig:
    # --- what to train, on what
    model: str = "resnet20"  # registry name (`cnnarch models`)
    model_kwargs: dict = field(default_factory=dict)  # model options, e.g. {shortcut = "B"}
    data: str = "digits"  # digits | cifar10 | cifar100 | synthetic[:CxHxW:K:N] | imagefolder:PATH
    data_dir: str | None = None  # folder/archive for CIFAR (None = $CNNARCH_DATA or ~/.cache)
    download: bool = False  # fetch CIFAR (MD5-verified) when it is missing
    val_split: bool = False  # evaluate on a held-out part of train (CIFAR 45k/5k) instead of test
    image_size: int = 0  # px; imagefolder resize/crop size (0 = 224)
    workers: int = 4  # DataLoader worker processes (imagefolder only)
    # --- how long
    epochs: int = 15  # passes over the training split (ignored when iterations > 0)
    iterations: int = 0  # optimizer steps to run; > 0 overrides epochs (paper-cifar: 64000)
    batch_size: int = 128  # images per optimizer step, over all processes
    # --- optimizer and schedule
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum (AdamW beta1)
    nesterov: bool = False  # Nesterov momentum (SGD only)
    weight_decay: float = 5e-4  # L2 penalty on all weights (paper: 1e-4)
    schedule: str = "cosine"  # cosine | step | constant (after the warm-up)
    milestones: list = field(default_factory=list)  # step schedule: lr *= gamma at each one
    milestone_unit: str = "epoch"  # epoch | iteration (unit of milestones)
    gamma: float = 0.1  # step schedule: factor at each milestone
    warmup_epochs: float = 1.0  # epochs of linear warm-up from ~0 to lr (0 = none)
    warmup_until_error: float = 0.0  # fraction; lr x 0.1 until train error < this (paper R-110: 0.8)
    label_smoothing: float = 0.0  # cross-entropy label smoothing, fraction
    aux_weight: float = 0.3  # GoogLeNet aux-head loss weight (Sec. 5), training only
    # --- speed (each switchable; "auto" = the measured safe fast choice)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler)
    channels_last: str = "auto"  # auto | on | off (NHWC memory format)
    compile: bool = False  # torch.compile the model (CPU: with train/batchnorm.py's batch norm)
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # --- reproducibility, output
    seed: int = 0  # seeds torch, numpy, python and the data/augmentation generator
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    log_every: int = 20  # steps between progress updates (and non-finite-loss checks on GPU)
    out: str | None = None  # run folder (None = write nothing); CLI default runs/<model>-<time>
    resume: str | None = None  # run folder (or checkpoint) to continue from
    quiet: bool = False  # no progress bar; one log line per epoch instead
    recipe: str = ""  # name of the preset applied under these values ("" = none)

    def __post_init__(self):
        if isinstance(self.channels_last, bool):  # accept True/False as on/off
            self.channels_last = "on" if self.channels_last else "off"
        validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> TrainConfig:
        unknown = sorted(set(values) - set(FIELD_NAMES))
        if unknown:
            raise UserError(f"{source}: unknown key {', '.join(map(repr, unknown))}; "
                            f"valid keys: {', '.join(FIELD_NAMES)}")
        coerced = {k: coerce(k, v, source=source) for k, v in values.items()}
        return cls(**coerced)

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def coerce(key: str, value, *, source: str = "config"):
    """Convert ``value`` (a TOML value or a command-line string) to the type of ``key``."""
    kind = FIELD_TYPES[key].replace(" | None", "")
    if value is None:
        if "None" not in FIELD_TYPES[key]:
            raise UserError(f"{source}: {key} cannot be empty")
        return None
    bad = UserError(f"{source}: {key} expects {_describe(kind)}, got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise bad
    if kind == "int":
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
    if kind == "float":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if kind == "str":
        if isinstance(value, str):
            return value
        if key == "channels_last" and isinstance(value, bool):
            return "on" if value else "off"
        raise bad
    if kind == "dict":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise bad from None
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise bad
        for k, v in value.items():
            if not isinstance(v, (str, int, float, bool)):
                raise UserError(f"{source}: {key}.{k} must be a string, number or boolean, got {v!r}")
        return dict(value)
    if kind == "list":
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise bad
        try:
            return [_int_item(v) for v in value]
        except (ValueError, TypeError):
            raise bad from None
    raise AssertionError(f"unhandled field type {kind}")  # pragma: no cover


def _int_item(v) -> int:
    if isinstance(v, bool):
        raise TypeError(v)
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(v)
    return int(v)


def _describe(kind: str) -> str:
    return {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
            "dict": "a table / JSON object", "list": "a list of integers"}[kind]


def validate(cfg: TrainConfig) -> None:
    """Check ranges and choices; raise one UserError listing what is valid."""

    def choice(name, choices):
        if getattr(cfg, name) not in choices:
            raise UserError(f"invalid {name}={getattr(cfg, name)!r}; choose one of {', '.join(choices)}")

    def at_least(name, low, *, strict=False):
        v = getattr(cfg, name)
        if isinstance(v, float) and not (math.isfinite(v) and abs(v) <= 3.4e38):  # float32 range
            raise UserError(f"invalid {name}={v!r}; must be a finite number (at most 3.4e38)")
        if v < low or (strict and v == low):
            raise UserError(f"invalid {name}={v!r}; must be {'>' if strict else '>='} {low}")

    for f in fields(cfg):  # types first (direct construction bypasses coerce)
        v = getattr(cfg, f.name)
        kind = FIELD_TYPES[f.name].replace(" | None", "")
        if v is None and "None" in FIELD_TYPES[f.name]:
            continue
        ok = {"bool": isinstance(v, bool), "int": isinstance(v, int) and not isinstance(v, bool),
              "float": isinstance(v, (int, float)) and not isinstance(v, bool),
              "str": isinstance(v, str), "dict": isinstance(v, dict),
              "list": isinstance(v, (list, tuple))}[kind]
        if not ok:
            raise UserError(f"invalid {f.name}={v!r}; expected {_describe(kind)}")
    choice("optimizer", OPTIMIZERS)
    choice("schedule", SCHEDULES)
    choice("milestone_unit", MILESTONE_UNITS)
    choice("precision", PRECISIONS)
    choice("channels_last", SWITCHES)
    if cfg.recipe:
        choice("recipe", tuple(RECIPES))
    if not cfg.model:
        raise UserError("model must be a registry name (see `cnnarch models`)")
    at_least("epochs", 1)
    at_least("iterations", 0)
    at_least("batch_size", 1)
    at_least("lr", 0.0, strict=True)
    at_least("momentum", 0.0)
    at_least("weight_decay", 0.0)
    at_least("gamma", 0.0, strict=True)
    at_least("warmup_epochs", 0.0)
    at_least("warmup_until_error", 0.0)
    at_least("label_smoothing", 0.0)
    at_least("aux_weight", 0.0)
    at_least("image_size", 0)
    at_least("workers", 0)
    at_least("eval_every", 1)
    at_least("log_every", 1)
    at_least("seed", 0)
    if cfg.momentum >= 1.0:
        raise UserError(f"invalid momentum={cfg.momentum!r}; must be in [0, 1)")
    if cfg.label_smoothing >= 1.0 or cfg.warmup_until_error > 1.0:
        raise UserError("label_smoothing must be in [0, 1) and warmup_until_error in [0, 1]")
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


def recipe_values(name: str, model: str) -> dict:
    """The field values a recipe sets, for this model (the R-110 warm-up rule)."""
    if not name:
        return {}
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    values = dict(RECIPES[name], recipe=name)
    if name == "paper-cifar":
        depth = "".join(ch for ch in model if ch.isdigit())
        # Sec. 4.2: for the 110-layer net, 0.1 is "slightly too large to start converging":
        # lr 0.01 until training error < 80 % (~400 iterations), then back to 0.1.
        if depth and int(depth) >= 110:
            values["warmup_until_error"] = 0.8
    return values


def resolve_config(*layers: dict, source: str = "config") -> TrainConfig:
    """Defaults < recipe (taken from the last layer that names one) < each layer in order."""
    merged: dict = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items()})
    unknown = sorted(set(merged) - set(FIELD_NAMES))
    if unknown:
        raise UserError(f"{source}: unknown key {', '.join(map(repr, unknown))}; "
                        f"valid keys: {', '.join(FIELD_NAMES)}")
    model = str(merged.get("model", TrainConfig.model))
    base = recipe_values(str(merged.get("recipe", "") or ""), model)
    return TrainConfig.from_dict({**base, **merged}, source=source)


# --- TOML -----------------------------------------------------------------------------------


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
    comments = field_comments()
    lines = ["# cnnarch training config (resolved); reload with `cnnarch train --config FILE`"]
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


def field_comments() -> dict[str, str]:
    """The inline comment of each field in this file's TrainConfig source."""
    import inspect

    out: dict[str, str] = {}
    try:
        source = inspect.getsource(TrainConfig)
    except (OSError, TypeError):  # pragma: no cover - no source (frozen install)
        return out
    for line in source.splitlines():
        s = line.strip()
        if ":" in s and "#" in s and not s.startswith("#"):
            name = s.split(":", 1)[0].strip()
            if name in FIELD_TYPES:
                out[name] = s.split("#", 1)[1].strip()
    return out
