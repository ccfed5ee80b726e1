"""The registry of backbones and ``build_net``: the one way the project builds a network
from plain option values. Adding a backbone is one :class:`Backbone` entry in
:data:`BACKBONES`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from torch import nn

from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.nets.options import DEFAULTS, NetOptions
from invariance_recipes.lightning_modules.nets.resnet import CifarResNet18
from invariance_recipes.lightning_modules.nets.small_cnn import SmallCNN


@dataclass(frozen=True)
class Backbone:
    """One backbone.

    Args:
        summary: what it is and what it is for.
        build: ``(in_channels, num_classes, image_size, options: NetOptions) -> nn.Module``.
        options: the :class:`NetOptions` fields beyond the shared ones (downsample, head,
            padding_mode, filt_size, mlp_hidden, dropout) it reads; the others must stay at
            their defaults.
    """

    summary: str
    build: Callable[..., nn.Module]
    options: tuple[str, ...] = ()


BACKBONES: Mapping[str, Backbone] = MappingProxyType(
    {
        "small-cnn": Backbone(
            "conv-BN-ReLU stages, each ending in a downsampling step; fast on CPU",
            SmallCNN,
            options=("widths", "blocks_per_stage"),
        ),
        "resnet18": Backbone(
            "CIFAR-style ResNet-18 (3x3 stem, no max-pool, total stride 8), for GPU runs",
            CifarResNet18,
        ),
    }
)


def build_net(
    options: NetOptions | str = DEFAULTS,
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    **changes: Any,
) -> nn.Module:
    """Build a classifier: ``forward(x [B, C, H, W]) -> logits [B, num_classes]``.

    Args:
        options: the network's :class:`NetOptions`, or a backbone name for the defaults with
            that backbone (``build_net("resnet18", ...)``).
        in_channels, num_classes, image_size: from the data (``image_size`` sizes the
            flattening heads; pooling heads take any size of at least the total stride).
        changes: :class:`NetOptions` fields to change, e.g. ``downsample="aps"``:

            - ``backbone``: a key of :data:`BACKBONES`;
            - ``downsample``: a key of
              :data:`~invariance_recipes.lightning_modules.nets.downsample.DOWNSAMPLERS`;
            - ``head``: a key of :data:`~invariance_recipes.lightning_modules.nets.heads.HEADS`;
            - ``padding_mode``: convolution padding, ``zero``, ``reflect`` or ``circular``;
              blurs pad ``reflect`` for ``zeros`` and the same way otherwise, so a
              ``circular`` network with ``aps`` and a global pooling head is exactly
              invariant to circular shifts;
            - ``widths``, ``blocks_per_stage``: stages of ``small-cnn`` (``resnet18`` is fixed);
            - ``mlp_hidden``, ``dropout``: hidden widths and dropout of the ``mlp`` head;
            - ``filt_size``: binomial taps of every blur (1..7); for ``aps`` the stride-1 blur
              before the selection, where 1 gives plain APS.
            - ``lps_hidden_divisor``: for ``lps``, the scoring network's hidden channels are
              the input's divided by this (1: the authors' CIFAR setting; 8: their ImageNet
              one, about 8x cheaper to score).
    """
    if isinstance(options, str):
        options = replace(DEFAULTS, backbone=options)
    unknown = sorted(set(changes) - {f.name for f in fields(NetOptions)})
    if unknown:
        raise TypeError(
            f"build_net() got unknown network options {', '.join(unknown)}: use fields of "
            "NetOptions"
        )
    options = replace(options, **changes)
    check_choice("backbone", options.backbone, tuple(BACKBONES))
    spec = BACKBONES[options.backbone]
    ignored = [k for k in ("widths", "blocks_per_stage") if k not in spec.options]
    if any(getattr(options, k) != getattr(DEFAULTS, k) for k in ignored):
        details = " and ".join(f"{k}={getattr(options, k)}" for k in ignored)
        raise ValueError(
            f"{details} do not apply: {options.backbone} has fixed stages; leave them at their "
            "defaults"
        )
    return spec.build(in_channels, num_classes, image_size, options)
