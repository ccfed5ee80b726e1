"""Every network option with its one default, and the names of the architecture keys.

``build_net``, the backbones, :class:`~invariance_recipes.lightning_modules.InvarianceClassifier` and the
variant presets all read their defaults from :data:`DEFAULTS`, so a default is changed here
and nowhere else. The valid values of ``backbone``, ``downsample`` and ``head`` are the keys
of their registries (``BACKBONES``, ``DOWNSAMPLERS``, ``HEADS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from invariance_recipes.common.borders import check_border
from invariance_recipes.common.checks import check_positive
from invariance_recipes.lightning_modules.layers.checks import check_filt_size

PADDING_MODES = ("zero", "reflect", "circular")


def _positive_ints(
    name: str, values: Sequence[int], example: str, *, allow_empty: bool = False
) -> tuple[int, ...]:
    empty = not values and not allow_empty
    if empty or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(
            f"{name}={tuple(values)!r} is invalid: list one or more positive widths, e.g. {example}"
        )
    return tuple(values)


@dataclass(frozen=True)
class NetOptions:
    """The options that build a network (see :func:`invariance_recipes.lightning_modules.nets.build_net`).

    Fields marked ``architecture=False`` change training but not the parameters, so a
    checkpoint may be resumed with another value. The values are checked here, once, for
    every backbone and head; the registry names (``backbone``, ``downsample``, ``head``) are
    checked where their registries are.
    """

    backbone: str = "small-cnn"
    downsample: str = "max"
    head: str = "flatten"
    padding_mode: str = "zero"
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_stage: int = 1
    mlp_hidden: tuple[int, ...] = (256,)
    dropout: float = field(default=0.5, metadata={"architecture": False})
    filt_size: int = 4
    # The LPS scoring network's hidden channels are the input's divided by this: 1 is the
    # authors' CIFAR setting, 8 their ImageNet ``logits_channels`` (64 -> 8, ..., 512 -> 64).
    lps_hidden_divisor: int = 1

    def __post_init__(self) -> None:
        # zeros (torch's spelling, in older checkpoints and commands) is read as zero
        object.__setattr__(
            self, "padding_mode", check_border("padding_mode", self.padding_mode, PADDING_MODES)
        )
        check_filt_size(self.filt_size)
        check_positive("blocks_per_stage", self.blocks_per_stage)
        check_positive("lps_hidden_divisor", self.lps_hidden_divisor)
        # lists from a YAML config or the command line become the tuples the fields hold
        object.__setattr__(self, "widths", _positive_ints("widths", self.widths, "(32, 64, 128)"))
        object.__setattr__(
            self,
            "mlp_hidden",
            # empty is fine for heads without hidden layers; ClassifierHead checks the others
            _positive_ints("mlp_hidden", self.mlp_hidden, "(256,)", allow_empty=True),
        )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"dropout={self.dropout!r} is out of range: use a probability in [0, 1)"
            )


DEFAULTS = NetOptions()

# The data-side sizes a network is built for (linked from the DataModule by the CLI).
DATA_KEYS = ("num_classes", "in_channels", "image_size")

# What a checkpoint must agree on to be loaded into a model: derived, never listed by hand.
ARCHITECTURE_KEYS: tuple[str, ...] = (
    *(f.name for f in fields(NetOptions) if f.metadata.get("architecture", True)),
    *DATA_KEYS,
)
