"""The effective receptive field (Luo, Li, Urtasun & Zemel, NeurIPS 2016).

The theoretical field says which input pixels *can* reach a unit; the effective field says
how much each one does: the gradient of the centre unit of the last feature map with
respect to the input, whose magnitude Luo et al. find Gaussian-like and much smaller than
the theoretical square. Averaged over random inputs it describes the architecture; over
test images, what a trained network actually uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def feature_map(net: nn.Module, x: Tensor) -> Tensor:
    """The last feature map of ``net`` for ``x``: the input of its ``head`` if it has one
    (the classifiers built here), else its output."""
    head = getattr(net, "head", None)
    if head is None:
        return net(x)
    captured: list[Tensor] = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        net(x)
    finally:
        handle.remove()
    return captured[0]


def centre_unit(side: int) -> int:
    """Index of the unit whose field :func:`effective_receptive_field` measures."""
    return side // 2


def effective_receptive_field(net: nn.Module, batches: Iterable[Tensor]) -> Tensor:
    """``[height, width]``: the mean over inputs of ``|d centre unit / d input|``.

    The centre unit is the one at :func:`centre_unit` of the last feature map, its gradient
    summed over channels (Luo et al. set the output gradient to 1 there and 0 elsewhere);
    the input gradient's magnitude is summed over input channels. The network runs in eval
    mode (fixed BatchNorm statistics) and is restored afterwards.

    Args:
        net: a network (see :func:`feature_map`).
        batches: input batches ``[B, C, H, W]`` of one size (random images, or test images).
    """
    was_training = net.training
    net.eval()
    total, count = None, 0
    try:
        for x in batches:
            x = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                features = feature_map(net, x)
                cy, cx = centre_unit(features.shape[-2]), centre_unit(features.shape[-1])
                (grad,) = torch.autograd.grad(features[:, :, cy, cx].sum(), x)
            magnitude = grad.abs().sum(dim=1).sum(dim=0)
            total = magnitude if total is None else total + magnitude
            count += x.shape[0]
    finally:
        net.train(was_training)
    if total is None:
        raise ValueError("effective_receptive_field got no inputs: pass at least one batch")
    return total / count


def random_batches(
    shape: tuple[int, int, int], count: int = 32, batch_size: int = 16, seed: int = 0
) -> list[Tensor]:
    """``count`` standard-normal images of ``shape`` (channels, height, width), in batches,
    from their own generator so the result does not depend on the global seed."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [min(batch_size, count - i) for i in range(0, count, batch_size)]
    return [torch.randn(n, *shape, generator=generator) for n in sizes]
