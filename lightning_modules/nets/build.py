"""``build_net``: the one way the project builds a network from plain option values."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lightning_modules.layers.checks import check_choice
from lightning_modules.nets.options import BACKBONES
from lightning_modules.nets.resnet import CifarResNet18
from lightning_modules.nets.small_cnn import SmallCNN

_SMALL_CNN_WIDTHS = (32, 64, 128)


def build_net(
    backbone: str = "small-cnn",
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    downsample: str = "max",
    head: str = "flatten",
    padding_mode: str = "zeros",
    widths: Sequence[int] = _SMALL_CNN_WIDTHS,
    blocks_per_stage: int = 1,
    mlp_hidden: Sequence[int] = (256,),
    dropout: float = 0.5,
    filt_size: int = 4,
) -> nn.Module:
    """Build a classifier: ``forward(x [B, C, H, W]) -> logits [B, num_classes]``.

    Args:
        backbone: ``small-cnn`` (:class:`SmallCNN`, fast on CPU) or ``resnet18``
            (:class:`CifarResNet18`, for GPU runs).
        in_channels, num_classes, image_size: from the data (``image_size`` sizes the
            flattening heads; ``gap``/``gmp`` networks take any size of at least the total
            stride).
        downsample: ``max``, ``blur``, ``strided``, ``strided-blur``, ``avg`` or ``aps``
            (see ``lightning_modules/nets/downsample.py``).
        head: ``flatten``, ``mlp``, ``gap`` or ``gmp`` (see :class:`ClassifierHead`).
        padding_mode: convolution padding, ``zeros``, ``reflect`` or ``circular``; blurs pad
            ``reflect`` for ``zeros`` and the same way otherwise, so a ``circular`` network
            with ``aps`` and a global pooling head is exactly invariant to circular shifts.
        widths, blocks_per_stage: stages of ``small-cnn`` (``resnet18`` is fixed).
        mlp_hidden, dropout: hidden widths and dropout of the ``mlp`` head.
        filt_size: binomial taps of every blur (1..7); for ``aps`` the stride-1 blur before
            the selection, where 1 gives plain APS.
    """
    check_choice("backbone", backbone, BACKBONES)
    options = {
        "downsample": downsample,
        "head": head,
        "padding_mode": padding_mode,
        "filt_size": filt_size,
        "mlp_hidden": mlp_hidden,
        "dropout": dropout,
    }
    if backbone == "resnet18":
        if tuple(widths) != _SMALL_CNN_WIDTHS or blocks_per_stage != 1:
            raise ValueError(
                f"widths={tuple(widths)} and blocks_per_stage={blocks_per_stage} configure "
                "small-cnn only; resnet18 has fixed stages: leave them at their defaults"
            )
        return CifarResNet18(in_channels, num_classes, image_size, **options)
    return SmallCNN(
        in_channels,
        num_classes,
        image_size,
        widths=widths,
        blocks_per_stage=blocks_per_stage,
        **options,
    )
