"""Adaptive polyphase sampling (APS, Chaman & Dokmanic, CVPR 2021)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invariance_recipes.common.borders import check_border
from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.layers.blur_pool import BlurPool2d
from invariance_recipes.lightning_modules.layers.checks import check_stride
from invariance_recipes.lightning_modules.layers.padding import pad2d

NORMS = ("l1", "l2", "linf")
_ORDERS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}


def _components(x: Tensor, stride: int) -> Tensor:
    """``[B, C, H/s, s, W/s, s]`` view; index ``(py, px)`` is ``x[..., py::s, px::s]``."""
    if x.ndim != 4:
        raise ValueError(
            "polyphase sampling expects a [batch, channels, height, width] tensor, "
            f"got shape {tuple(x.shape)}"
        )
    b, c, h, w = x.shape
    if h % stride or w % stride:
        raise ValueError(
            f"polyphase sampling with stride={stride} needs height and width divisible by it, "
            f"got {h}x{w}: pad the input or use PolyphaseDownsample2d, which pads"
        )
    return x.reshape(b, c, h // stride, stride, w // stride, stride)


def polyphase_stack(x: Tensor, stride: int = 2) -> Tensor:
    """The ``stride**2`` polyphase components as ``[B, stride**2, C, H/s, W/s]``; component
    ``py * stride + px`` is ``x[..., py::s, px::s]`` (the numbering of :func:`select_phase`)."""
    check_stride(stride)
    parts = _components(x, stride)
    b, c, h, w = x.shape
    return parts.permute(0, 3, 5, 1, 2, 4).reshape(b, stride * stride, c, h // stride, w // stride)


def select_phase(x: Tensor, stride: int = 2, norm: str = "l2") -> Tensor:
    """Per sample, the index ``py * stride + px`` of the polyphase component of largest norm.

    The norm is taken over channels and space. Ties go to the first maximum (the lowest
    index), on every device. The choice is not differentiable and is made on detached data.
    """
    check_stride(stride)
    check_choice("norm", norm, NORMS)
    parts = _components(x.detach(), stride)
    norms = torch.linalg.vector_norm(parts, ord=_ORDERS[norm], dim=(1, 2, 4))
    return norms.flatten(1).argmax(dim=1)


def take_phase(x: Tensor, phase: Tensor, stride: int = 2) -> Tensor:
    """Per sample, the polyphase component ``x[b, :, py::s, px::s]`` named by ``phase[b]``.

    Reusing the phases chosen on another map of the same size keeps two paths on the same
    sampling grid, as a residual block's main path and shortcut must be.
    """
    check_stride(stride)
    parts = _components(x, stride)
    if phase.shape != (x.shape[0],) or phase.is_floating_point():
        raise ValueError(
            f"phase must be an integer tensor of shape ({x.shape[0]},), one index per sample, "
            f"got {phase.dtype} of shape {tuple(phase.shape)}: pass the output of select_phase"
        )
    batch = torch.arange(x.shape[0], device=x.device)
    # Advanced indices on dims 0, 3 and 5 broadcast to the front: [B, C, H/s, W/s].
    return parts[batch, :, :, phase // stride, :, phase % stride]


def phase_window(x: Tensor, phase: Tensor, stride: int, height: int, width: int) -> Tensor:
    """Per sample, the window ``x[b, :, py : py + height, px : px + width]`` with
    ``(py, px) = divmod(phase[b], stride)``: the map moved so that the chosen phase is at the
    grid's origin, where a stride-``stride`` operation computes only that phase.

    One gather over the flattened planes (static shapes, so it also traces; its backward is a
    scatter-add), measured faster than advanced indexing or grouping the batch by phase.
    """
    b, c, rows, cols = x.shape
    start = (phase // stride) * cols + phase % stride
    offsets = (
        torch.arange(height, device=x.device)[:, None] * cols
        + torch.arange(width, device=x.device)[None, :]
    )
    index = (start.view(b, 1) + offsets.view(1, -1)).view(b, 1, -1).expand(b, c, height * width)
    return x.reshape(b, c, rows * cols).gather(2, index).view(b, c, height, width)


def needs_kept_phase_only(x: Tensor, stride: int) -> bool:
    """Whether a layer that ends in APS should compute only the kept phase under autograd.

    The phase is then chosen on the dense map computed without autograd (a fast path, see
    :func:`~invariance_recipes.lightning_modules.layers.same_max_pool.takes_shift_path`), and
    the differentiable part runs once per output pixel instead of once per input pixel, with
    an identical output. Without autograd the dense map is needed anyway. Sizes that are not
    multiples of the stride keep the general path (they are padded after the dense map).
    """
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    return needs_grad and x.ndim == 4 and x.shape[-2] % stride == 0 and x.shape[-1] % stride == 0


def aps_downsample(x: Tensor, stride: int = 2, norm: str = "l2") -> Tensor:
    """Subsample each sample on the polyphase grid of largest norm (Chaman & Dokmanic 2021).

    A circular shift of the input permutes and circularly shifts the polyphase components;
    choosing by norm follows the shift, so the output is a circular shift of the unshifted
    output for every integer shift, not only multiples of ``stride``.
    """
    return take_phase(x, select_phase(x, stride, norm), stride)


class PolyphaseDownsample2d(nn.Module):
    """Adaptive polyphase sampling with an optional stride-1 binomial blur before it.

    Fixed subsampling keeps the grid ``x[..., ::s, ::s]`` whatever the input's position,
    which breaks shift invariance. APS (Chaman & Dokmanic, CVPR 2021, "Truly shift-invariant
    convolutional neural networks") keeps, per sample, the polyphase component of largest
    norm; with circular padding throughout and a global pooling head a network becomes
    exactly invariant to circular shifts. A blur (``filt_size > 1``, as in their "APS + LPF")
    reduces aliasing for shifts of real images; circular padding keeps it exact. Odd sizes
    are padded at the end to a multiple of ``stride`` (with ``pad_type``), so an ``n``-pixel
    side becomes ``ceil(n / stride)``.

    ``forward_with_phase`` also returns the chosen phases and accepts given ones, so a
    residual block can subsample its shortcut on the grid its main path chose.

    Args:
        channels: channels of the input, checked on every call; ``None``: any number.
        stride: subsampling factor (``stride**2`` candidate components).
        filt_size: binomial taps of the stride-1 blur, 1 (none) .. 7.
        norm: ``l2`` (paper default), ``l1`` or ``linf``.
        pad_type: padding of the blur and of odd sizes, see :class:`BlurPool2d`.
    Shape:
        - Input: ``[N, C, H, W]`` with ``H`` and ``W`` multiples of ``stride``.
        - Output: ``[N, C, H / stride, W / stride]``.

    Examples:
        >>> import torch
        >>> aps = PolyphaseDownsample2d(1, stride=2)
        >>> x = torch.randn(1, 1, 8, 8)
        >>> aps(x).shape
        torch.Size([1, 1, 4, 4])
        >>> # a one-pixel circular shift moves the kept phase, never its content: the same
        >>> # values come out, in another order
        >>> def values(t): return t.flatten().sort().values
        >>> torch.equal(values(aps(x)), values(aps(x.roll(1, dims=-1))))
        True
    """

    def __init__(
        self,
        channels: int | None = None,
        stride: int = 2,
        filt_size: int = 1,
        norm: str = "l2",
        pad_type: str = "circular",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_stride(stride)
        check_choice("norm", norm, NORMS)
        pad_type = check_border("pad_type", pad_type)
        self.blur = BlurPool2d(channels, filt_size, 1, pad_type, device=device, dtype=dtype)
        self.stride = stride
        self.norm = norm
        self.pad_type = pad_type

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_phase(x)[0]

    def forward_with_phase(self, x: Tensor, phase: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Blur, pad to a multiple of the stride, subsample; return ``(output, phase)``.

        With ``phase=None`` the phases are chosen on this input, otherwise the given ones
        (from an input of the same size) are used.
        """
        if self.blur.filt_size > 1 and needs_kept_phase_only(x, self.stride):
            self.blur.check_input(x)
            if phase is None:
                with torch.no_grad():
                    phase = select_phase(self.blur(x), self.stride, self.norm)
            return self._blur_kept_phase(x, phase), phase
        x = self.blur(x)
        extra_h, extra_w = -x.shape[-2] % self.stride, -x.shape[-1] % self.stride
        if extra_h or extra_w:
            x = pad2d(x, (0, extra_w, 0, extra_h), self.pad_type)
        if phase is None:
            phase = select_phase(x, self.stride, self.norm)
        return take_phase(x, phase, self.stride), phase

    def _blur_kept_phase(self, x: Tensor, phase: Tensor) -> Tensor:
        """The stride-1 blur at the kept phase only: a stride-``stride`` depthwise convolution
        of the padded input moved by the phase (the same taps over the same pixels)."""
        taps, s = self.blur.filt_size, self.stride
        padded = pad2d(x, self.blur.padding, self.pad_type)
        window = phase_window(padded, phase, s, x.shape[-2] - s + taps, x.shape[-1] - s + taps)
        weight = self.blur.depthwise_weight(window)
        return F.conv2d(window, weight, stride=s, groups=window.shape[1])

    def extra_repr(self) -> str:
        return f"stride={self.stride}, norm={self.norm!r}"
