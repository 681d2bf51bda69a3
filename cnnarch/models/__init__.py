"""Model families (ResNet, pre-activation ResNet, GoogLeNet) and the registry.

Importing the family modules registers their builders (``@register_model``), in this order.
"""

# isort: off
from .registry import MODELS, ModelEntry, create_model, get_entry, list_models, register_model
from .resnet import BasicBlock, Bottleneck, ResNet
from .preact import PreActBasicBlock, PreActBottleneck, PreActResNet
from .googlenet import TABLE1, GoogLeNet, GoogLeNetOutputs, Inception, InceptionRow, googlenet_loss
# isort: on

__all__ = [
    "MODELS", "TABLE1", "BasicBlock", "Bottleneck", "GoogLeNet", "GoogLeNetOutputs", "Inception",
    "InceptionRow", "ModelEntry", "PreActBasicBlock", "PreActBottleneck", "PreActResNet",
    "ResNet", "create_model", "get_entry", "googlenet_loss", "list_models", "register_model",
]
