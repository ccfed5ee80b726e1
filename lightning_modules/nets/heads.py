"""Classifier heads: how the last feature map becomes logits, which decides large-shift behaviour."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightning_modules.layers.checks import check_choice, check_positive
from lightning_modules.nets.options import HEADS


class ClassifierHead(nn.Module):
    """``pool -> flatten -> fc`` for the ``head`` option.

    - ``flatten``: one Linear over the whole map. Its weights are tied to positions, so an
      object seen only in one corner is not recognised in another ("cat in the corner").
    - ``mlp``: hidden Linear-ReLU-Dropout layers over the flattened map, then a Linear.
    - ``gap``: global average pooling, then a Linear: position is averaged away.
    - ``gmp``: global max pooling, then a Linear.

    Args:
        kind: one of ``flatten``, ``mlp``, ``gap``, ``gmp``.
        channels: channels of the feature map.
        spatial: side of the (square) feature map; the flattening heads need it.
        num_classes: logits.
        mlp_hidden: widths of the hidden layers of ``mlp``.
        dropout: dropout probability after each hidden layer of ``mlp``.
    """

    def __init__(
        self,
        kind: str,
        channels: int,
        spatial: int,
        num_classes: int,
        mlp_hidden: Sequence[int] = (256,),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_choice("head", kind, HEADS)
        check_positive("num_classes", num_classes)
        self.kind = kind
        self.pool = {
            "gap": nn.AdaptiveAvgPool2d(1),
            "gmp": nn.AdaptiveMaxPool2d(1),
        }.get(kind, nn.Identity())
        self.flatten = nn.Flatten()
        features = channels if kind in ("gap", "gmp") else channels * spatial * spatial
        if kind != "mlp":
            self.fc: nn.Module = nn.Linear(features, num_classes)
            return
        if not mlp_hidden or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in mlp_hidden
        ):
            raise ValueError(
                f"mlp_hidden={tuple(mlp_hidden)!r} is invalid for head='mlp': list one or more "
                "positive hidden widths, e.g. (256,)"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} is out of range: use a probability in [0, 1)")
        layers: list[nn.Module] = []
        for width in mlp_hidden:
            layers += [nn.Linear(features, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            features = width
        self.fc = nn.Sequential(*layers, nn.Linear(features, num_classes))

    @property
    def fixed_size(self) -> bool:
        """Whether the head only accepts the feature-map size it was built for."""
        return self.kind in ("flatten", "mlp")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(x)))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
