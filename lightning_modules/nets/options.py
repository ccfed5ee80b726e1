"""The option values every network accepts: one place to read them all."""

from __future__ import annotations

BACKBONES = ("small-cnn", "resnet18")
# How a network halves the resolution (see ``downsample.py`` for what each one builds).
DOWNSAMPLES = ("max", "blur", "strided", "strided-blur", "avg", "aps")
HEADS = ("flatten", "mlp", "gap", "gmp")
PADDING_MODES = ("zeros", "reflect", "circular")
