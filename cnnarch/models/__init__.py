"""Model families (ResNet, GoogLeNet) and the registry."""

from .googlenet import TABLE1, GoogLeNet, GoogLeNetOutputs, Inception, InceptionRow, googlenet_loss
from .registry import MODELS, ModelEntry, create_model, get_entry, list_models
from .resnet import BasicBlock, Bottleneck, ResNet

__all__ = [
    "MODELS", "TABLE1", "BasicBlock", "Bottleneck", "GoogLeNet", "GoogLeNetOutputs", "Inception",
    "InceptionRow", "ModelEntry", "ResNet", "create_model", "get_entry", "googlenet_loss",
    "list_models",
]
