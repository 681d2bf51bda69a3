"""Measurements on the models: complexity (params, multiply-adds) and, later, gradient flow."""

from .complexity import (
    CONVENTION,
    GOOGLENET_PAPER_TABLE1,
    RESNET_CIFAR_PAPER_PARAMS_M,
    RESNET_PAPER_GFLOPS,
    Complexity,
    LayerRow,
    PaperRow,
    compare_googlenet_paper,
    compare_resnet_paper,
    complexity,
    inception_cost_example,
    model_complexity,
    naive_vs_bottleneck,
    paper_rows,
)

__all__ = [
    "CONVENTION", "GOOGLENET_PAPER_TABLE1", "RESNET_CIFAR_PAPER_PARAMS_M", "RESNET_PAPER_GFLOPS",
    "Complexity", "LayerRow", "PaperRow", "compare_googlenet_paper", "compare_resnet_paper",
    "complexity", "inception_cost_example", "model_complexity", "naive_vs_bottleneck",
    "paper_rows",
]
