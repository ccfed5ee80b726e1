"""Measuring a trained run: a checkpoint's accuracy and shift robustness under the protocols,
per-image outcomes and receptive fields. May import ``run``."""
