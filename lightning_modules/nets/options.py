"""Every network option with its one default, and the names of the architecture keys.

``build_net``, the backbones, :class:`~invariance_recipes.lightning_modules.InvarianceClassifier` and the
variant presets all read their defaults from :data:`DEFAULTS`, so a default is changed here
and nowhere else. The valid values of ``backbone``, ``downsample`` and ``head`` are the keys
of their registries (``BACKBONES``, ``DOWNSAMPLERS``, ``HEADS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

PADDING_MODES = ("zeros", "reflect", "circular")


@dataclass(frozen=True)
class NetOptions:
    """The options that build a network (see :func:`invariance_recipes.lightning_modules.nets.build_net`).

    Fields marked ``architecture=False`` change training but not the parameters, so a
    checkpoint may be resumed with another value.
    """

    backbone: str = "small-cnn"
    downsample: str = "max"
    head: str = "flatten"
    padding_mode: str = "zeros"
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_stage: int = 1
    mlp_hidden: tuple[int, ...] = (256,)
    dropout: float = field(default=0.5, metadata={"architecture": False})
    filt_size: int = 4
    # The LPS scoring network's hidden channels are the input's divided by this: 1 is the
    # authors' CIFAR setting, 8 their ImageNet ``logits_channels`` (64 -> 8, ..., 512 -> 64).
    lps_hidden_divisor: int = 1


DEFAULTS = NetOptions()

# The data-side sizes a network is built for (linked from the DataModule by the CLI).
DATA_KEYS = ("num_classes", "in_channels", "image_size")

# What a checkpoint must agree on to be loaded into a model: derived, never listed by hand.
ARCHITECTURE_KEYS: tuple[str, ...] = (
    *(f.name for f in fields(NetOptions) if f.metadata.get("architecture", True)),
    *DATA_KEYS,
)
