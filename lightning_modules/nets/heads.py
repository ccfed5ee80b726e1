"""The registry of classifier heads: how the last feature map becomes logits, which decides
large-shift behaviour. Adding a head is one :class:`HeadSpec` entry in :data:`HEADS`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import Tensor, nn

from invariance_recipes.common.checks import check_choice, check_positive
from invariance_recipes.lightning_modules.layers.spatial_pyramid_pool import SpatialPyramidPool2d
from invariance_recipes.lightning_modules.nets.options import DEFAULTS, NetOptions


@dataclass(frozen=True)
class HeadSpec:
    """One head: ``pool -> flatten -> fc``.

    Args:
        summary: what it does and why it matters for shifts.
        pool: builds the pooling layer applied to the feature map.
        features: ``(channels, spatial side) -> `` the width of the flattened pooled map.
        hidden: whether the ``mlp_hidden``/``dropout`` layers come before the last Linear.
    """

    summary: str
    pool: Callable[[], nn.Module]
    features: Callable[[int, int], int]
    hidden: bool = False

    @property
    def fixed_size(self) -> bool:
        """Whether the head only takes the feature-map size it was built for."""
        return self.features(1, 1) != self.features(1, 2)


def _flattened(channels: int, spatial: int) -> int:
    return channels * spatial * spatial


def _pooled(channels: int, spatial: int) -> int:
    return channels


def _pyramid(channels: int, spatial: int) -> int:
    return SpatialPyramidPool2d().features(channels)


HEADS: Mapping[str, HeadSpec] = MappingProxyType(
    {
        "flatten": HeadSpec(
            "one Linear over the flattened map: weights tied to positions, so an object "
            "seen only in one corner is not recognised in another (the cat in the corner)",
            pool=nn.Identity,
            features=_flattened,
        ),
        "mlp": HeadSpec(
            "hidden Linear-ReLU-Dropout layers over the flattened map, then a Linear",
            pool=nn.Identity,
            features=_flattened,
            hidden=True,
        ),
        "gap": HeadSpec(
            "global average pooling, then a Linear: position is averaged away",
            pool=lambda: nn.AdaptiveAvgPool2d(1),
            features=_pooled,
        ),
        "gmp": HeadSpec(
            "global max pooling, then a Linear",
            pool=lambda: nn.AdaptiveMaxPool2d(1),
            features=_pooled,
        ),
        "spp": HeadSpec(
            "spatial pyramid pooling (He et al. 2014): max over 1x1, 2x2 and 4x4 grids, "
            "concatenated, then a Linear: coarse position kept, any input size",
            pool=SpatialPyramidPool2d,
            features=_pyramid,
        ),
        "spp-avg": HeadSpec(
            "spatial pyramid pooling with averages over the 1x1, 2x2 and 4x4 grids",
            pool=lambda: SpatialPyramidPool2d(mode="avg"),
            features=_pyramid,
        ),
    }
)


class ClassifierHead(nn.Module):
    """``pool -> flatten -> fc`` for the head named ``kind`` (a key of :data:`HEADS`).

    Args:
        channels: channels of the feature map.
        spatial: side of the (square) feature map; the flattening heads need it.
        num_classes: logits.
        options: ``head`` names it; ``mlp_hidden`` and ``dropout`` shape the hidden layers
            of heads with ``hidden``.
    """

    def __init__(
        self, channels: int, spatial: int, num_classes: int, options: NetOptions = DEFAULTS
    ) -> None:
        super().__init__()
        kind = options.head
        check_choice("head", kind, tuple(HEADS))
        check_positive("num_classes", num_classes)
        spec = HEADS[kind]
        self.kind = kind
        self.fixed_size = spec.fixed_size
        self.pool = spec.pool()
        self.flatten = nn.Flatten()
        features = spec.features(channels, spatial)
        if not spec.hidden:
            self.fc: nn.Module = nn.Linear(features, num_classes)
            return
        if not options.mlp_hidden:
            raise ValueError(
                f"mlp_hidden=() is invalid for head={kind!r}: list one or more positive hidden "
                "widths, e.g. (256,)"
            )
        layers: list[nn.Module] = []
        for width in options.mlp_hidden:
            layers += [
                nn.Linear(features, width),
                nn.ReLU(inplace=True),
                nn.Dropout(options.dropout),
            ]
            features = width
        self.fc = nn.Sequential(*layers, nn.Linear(features, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(x)))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
