"""Equivariance error of a feature map under input shifts.

The relative error ||f(T x) - T' f(x)|| / ||f(x)||, with T' the input shift divided by the
stride s, is zero for an exactly equivariant layer (stride-1 circular convolutions and circular
shifts).

Integer modes compare only shifts by multiples of s, for which T' is a whole pixel. There aliasing
is invisible: a circular `MaxPool2d(2)` scores exactly 0 at every even shift. With
``mode="fourier"`` any input shift is allowed and T' is the band-limited shift by delta / s: an
ideal low-pass filter followed by subsampling scores about 0 at delta = 1, BlurPool more, and
MaxPool clearly more, because the error then measures the aliased energy the layer produced.
"""

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from invariance_recipes.lightning_modules.metrics._utils import evaluating
from invariance_recipes.lightning_modules.shifts import check_mode, translate

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def equivariance_error(
    shifted_features: Tensor,
    features: Tensor,
    offsets: Tensor | tuple[int, int],
    stride: int,
    mode: str = "circular",
) -> Tensor:
    """Per-sample ||f(T x) - T' f(x)||_2 / ||f(x)||_2 for feature maps [B, C, h, w], as [B].

    Args:
        shifted_features: f(T x), the features of the shifted input.
        features: f(x), the features of the original input.
        offsets: the input shift (dy, dx) in input pixels, one pair or one per sample [B, 2];
            for integer modes every component must be a multiple of `stride`.
        stride: the layer's total stride (the product of the strides up to and including it).
        mode: how T' shifts the feature map: "fourier" (any offset, band-limited shift by
            offsets / stride) or one of `invariance_recipes.lightning_modules.shifts.SHIFT_MODES`; use the mode the
            input was shifted with ("zero" shifts in zeros, the padding value).
    """
    _check_stride(stride)
    if features.ndim != 4 or shifted_features.shape != features.shape:
        raise ValueError(
            f"features must be two feature maps [B, C, h, w] of the same shape, got "
            f"{tuple(shifted_features.shape)} and {tuple(features.shape)}"
        )
    if mode == "fourier":
        offsets = torch.as_tensor(offsets, device=features.device)
        expected = translate(features, offsets.double() / stride, "fourier").to(features.dtype)
        return _relative_error(shifted_features, expected, features)
    check_mode(mode)
    offsets = torch.as_tensor(offsets)
    if offsets.is_floating_point() or offsets.ndim not in (1, 2) or offsets.shape[-1] != 2:
        raise ValueError(
            f"offsets must be integer pixels (dy, dx) or [B, 2], got shape "
            f"{tuple(offsets.shape)} and dtype {offsets.dtype}"
        )
    misaligned = offsets.reshape(-1, 2)[(offsets.reshape(-1, 2) % stride).any(dim=1)]
    if len(misaligned):
        raise ValueError(
            f"offset {tuple(misaligned[0].tolist())} is not a multiple of stride={stride}: a "
            f"stride-{stride} feature map can only follow shifts by multiples of {stride}"
        )
    expected = translate(features, offsets.div(stride, rounding_mode="floor"), mode)
    return _relative_error(shifted_features, expected, features)


def _relative_error(shifted_features: Tensor, expected: Tensor, features: Tensor) -> Tensor:
    difference = (shifted_features - expected).flatten(1).norm(dim=1)
    reference = features.flatten(1).norm(dim=1)
    # A zero feature map that stays zero has zero error instead of 0 / 0.
    return difference / reference.clamp_min(torch.finfo(reference.dtype).tiny)


class EquivarianceError(Metric):
    """Mean over samples of the relative equivariance error (see `equivariance_error`).

    Args:
        stride: the layer's total stride; integer-mode input offsets must be multiples of it.
        mode: how the feature map is shifted to compare: "fourier" or one of `SHIFT_MODES`.
        kwargs: forwarded to `torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0

    error: Tensor
    total: Tensor

    def __init__(self, stride: int, mode: str = "circular", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_stride(stride)
        if mode != "fourier":
            check_mode(mode)
        self.stride = stride
        self.mode = mode
        self.add_state("error", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(
        self, shifted_features: Tensor, features: Tensor, offsets: Tensor | tuple[int, int]
    ) -> None:
        """Accumulate f(T x) and f(x) [B, C, h, w] for input offsets (dy, dx) or [B, 2]."""
        errors = equivariance_error(shifted_features, features, offsets, self.stride, self.mode)
        self.error += errors.sum()
        self.total += errors.numel()

    def compute(self) -> Tensor:
        """Mean relative error."""
        return self.error / self.total

    def plot(
        self, val: Tensor | list[Tensor] | None = None, ax: "Axes | None" = None
    ) -> tuple["Figure", "Axes"]:
        """Plot one value or a series of values (defaults to `compute()`)."""
        return self._plot(val, ax)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, mode={self.mode!r}"


def feature_equivariance_error(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    offset: Tensor | tuple[int, int],
    stride: int,
    mode: str = "circular",
) -> Tensor:
    """Mean equivariance error of the output of `layer` (any submodule of `model`) on batch `x`.

    Runs `model` once on x and its shifted copy together, in eval mode and without gradients
    (every submodule's mode is restored afterwards), and reads the layer's output with a forward hook.

    Args:
        model: the network to run.
        layer: the submodule whose output is the feature map [B, C, h, w]; it must run once.
        x: input images [B, C, H, W].
        offset: the input shift (dy, dx), or one per sample [B, 2]; multiples of `stride`
            unless mode is "fourier".
        stride: the layer's total stride; it must divide the input into the feature map.
        mode: how both the input and the feature map are shifted ("fourier": the input by a
            band-limited shift, which equals a roll for integer offsets).
    """
    outputs: list[Any] = []
    handle = layer.register_forward_hook(lambda _module, _args, output: outputs.append(output))
    try:
        with evaluating(model):
            model(torch.cat((x, translate(x, offset, mode))))
    finally:
        handle.remove()
    if len(outputs) != 1:
        raise ValueError(
            f"layer {type(layer).__name__} ran {len(outputs)} times in model's forward; pass a "
            "submodule of model that runs exactly once"
        )
    if not isinstance(outputs[0], Tensor):
        raise ValueError(
            f"layer {type(layer).__name__} returned {type(outputs[0]).__name__}, not a feature "
            "map tensor; hook a module that outputs [B, C, h, w]"
        )
    features, shifted_features = outputs[0].split(len(x))
    if features.ndim == 4 and tuple(x.shape[-2:]) != (
        stride * features.shape[-2],
        stride * features.shape[-1],
    ):
        raise ValueError(
            f"stride={stride} does not divide the {x.shape[-2]}x{x.shape[-1]} input into the "
            f"{features.shape[-2]}x{features.shape[-1]} feature map: pass the layer's total "
            "stride, with an input size that is a multiple of it"
        )
    return equivariance_error(shifted_features, features, offset, stride, mode).mean()


def _check_stride(stride: int) -> None:
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride={stride!r} must be a positive integer (the layer's total stride)")
