"""The registry of backbones and ``build_net``: the one way the project builds a network
from plain option values. Adding a backbone is one :class:`Backbone` entry in
:data:`BACKBONES`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from invariance_recipes.lightning_modules.nets.options import DEFAULTS
from invariance_recipes.lightning_modules.nets.resnet import CifarResNet18
from invariance_recipes.lightning_modules.nets.small_cnn import SmallCNN
from torch import nn

from invariance_recipes.common.checks import check_choice


@dataclass(frozen=True)
class Backbone:
    """One backbone.

    Args:
        summary: what it is and what it is for.
        build: ``(in_channels, num_classes, image_size, **options) -> nn.Module``.
        options: the :class:`~invariance_recipes.lightning_modules.nets.options.NetOptions` beyond the shared
            ones (downsample, head, padding_mode, filt_size, mlp_hidden, dropout) it takes;
            the others must stay at their defaults.
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
    backbone: str = DEFAULTS.backbone,
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    downsample: str = DEFAULTS.downsample,
    head: str = DEFAULTS.head,
    padding_mode: str = DEFAULTS.padding_mode,
    widths: Sequence[int] = DEFAULTS.widths,
    blocks_per_stage: int = DEFAULTS.blocks_per_stage,
    mlp_hidden: Sequence[int] = DEFAULTS.mlp_hidden,
    dropout: float = DEFAULTS.dropout,
    filt_size: int = DEFAULTS.filt_size,
    lps_hidden_divisor: int = DEFAULTS.lps_hidden_divisor,
) -> nn.Module:
    """Build a classifier: ``forward(x [B, C, H, W]) -> logits [B, num_classes]``.

    Args:
        backbone: a key of :data:`BACKBONES`.
        in_channels, num_classes, image_size: from the data (``image_size`` sizes the
            flattening heads; pooling heads take any size of at least the total stride).
        downsample: a key of :data:`~invariance_recipes.lightning_modules.nets.downsample.DOWNSAMPLERS`.
        head: a key of :data:`~invariance_recipes.lightning_modules.nets.heads.HEADS`.
        padding_mode: convolution padding, ``zeros``, ``reflect`` or ``circular``; blurs pad
            ``reflect`` for ``zeros`` and the same way otherwise, so a ``circular`` network
            with ``aps`` and a global pooling head is exactly invariant to circular shifts.
        widths, blocks_per_stage: stages of ``small-cnn`` (``resnet18`` is fixed).
        mlp_hidden, dropout: hidden widths and dropout of the ``mlp`` head.
        filt_size: binomial taps of every blur (1..7); for ``aps`` the stride-1 blur before
            the selection, where 1 gives plain APS.
        lps_hidden_divisor: for ``lps``, the scoring network's hidden channels are the
            input's divided by this (1: the authors' CIFAR setting; 8: their ImageNet one,
            about 8x cheaper to score).
    """
    check_choice("backbone", backbone, tuple(BACKBONES))
    spec = BACKBONES[backbone]
    given = {"widths": tuple(widths), "blocks_per_stage": blocks_per_stage}
    ignored = {k: v for k, v in given.items() if k not in spec.options}
    if any(v != getattr(DEFAULTS, k) for k, v in ignored.items()):
        details = " and ".join(f"{k}={v}" for k, v in ignored.items())
        raise ValueError(
            f"{details} do not apply: {backbone} has fixed stages; leave them at their defaults"
        )
    return spec.build(
        in_channels,
        num_classes,
        image_size,
        downsample=downsample,
        head=head,
        padding_mode=padding_mode,
        filt_size=filt_size,
        lps_hidden_divisor=lps_hidden_divisor,
        mlp_hidden=mlp_hidden,
        dropout=dropout,
        **{k: v for k, v in given.items() if k in spec.options},
    )
