"""Training: one flat config, one readable loop, atomic checkpoints, exact resume, DDP."""

from .checkpoint import load_checkpoint, load_model
from .config import RECIPES, TrainConfig, load_config, resolve_config, to_toml
from .loop import NonFiniteLoss, TrainResult, evaluate, train

__all__ = [
    "RECIPES", "NonFiniteLoss", "TrainConfig", "TrainResult", "evaluate", "load_checkpoint",
    "load_config", "load_model", "resolve_config", "to_toml", "train",
]
