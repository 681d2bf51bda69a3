"""The values of the model options that the command line offers, in one torch-free place:
the builders check their arguments against these tuples and the CLI's flags list them, so
``cnnarch --help`` needs no torch and the two cannot drift apart."""

from __future__ import annotations

# ResNet shortcut options (He et al. 2015, Sec. 3.3): A zero-padded identity, B projection
# where the shape changes, C projection everywhere; "none" is the plain twin.
SHORTCUTS = ("A", "B", "C", "none")
# Where a bottleneck block strides: on its 3x3 (torchvision's v1.5) or its first 1x1 (the paper).
STRIDE_AT = ("3x3", "1x1")
# Inception modules: Fig. 2b (the paper), Fig. 2b without the ReLU after the 1x1 reductions,
# Fig. 2a (no reductions).
INCEPTION_MODES = ("bottleneck", "linear", "naive")
