"""Theoretical receptive fields by the standard arithmetic, one registry entry per layer type.

For a layer with kernel ``k``, stride ``s``, dilation ``d`` and ``p`` pixels of padding
before the input (``k_eff = d (k - 1) + 1``), on a map whose units are ``jump`` input
pixels apart, see ``size`` input pixels each, and whose first unit is centred on input
pixel ``start`` (pixel centres at 0, 1, ...)::

    size_out  = size + (k_eff - 1) * jump
    jump_out  = jump * s
    start_out = start + ((k_eff - 1) / 2 - p) * jump
    side_out  = floor((side + p + p_after - k_eff) / s) + 1     (PyTorch's rule with ceil_mode)

(Araujo, Norris & Sim, "Computing receptive fields of convolutional neural networks",
Distill 2019.) A residual block's field is the union of its main path's and its
shortcut's, which is the larger of the two whenever one contains the other, as in every
block here. The field of a net with a head (``SmallCNN``, ``ResNet``) is its last feature
map's: the head is not a spatial layer.

Conventions for the layers the arithmetic does not cover directly:

- Adaptive polyphase sampling (APS, LPS) keeps one of the ``s * s`` subsampling grids per
  input. For a given input a unit sees what plain stride-``s`` subsampling gives (kernel 1),
  so the size is the standard one; only the start moves, by up to ``(s - 1) * jump`` with
  the chosen phase, and the rows give the start of phase 0.
- An ideal low-pass filter (the sinc of alias-free networks computed in the Fourier
  domain) has infinite support: its field is ``math.inf``, the whole (periodic) input,
  and every layer after it keeps ``inf`` (its rule returns ``field.window(math.inf, s)``).
  A windowed (finite) filter counts its taps.

Adding a layer type is one entry in :data:`RECEPTIVE_FIELD_RULES`; a module whose exact
type has no entry raises ``ValueError`` naming it, so a new layer is never guessed at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from invariance_recipes.lightning_modules.layers import (
    AliasFreeActivation,
    BlurPool2d,
    ConvBlurPool2d,
    IdealLowPassDownsample2d,
    LearnablePolyphaseDownsample2d,
    MaxBlurPool2d,
    MaxLearnablePolyphasePool2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
    PolyphaseFollower2d,
    SameMaxPool2d,
)
from invariance_recipes.lightning_modules.nets.antialias import _PreBlurConv2d
from invariance_recipes.lightning_modules.nets.resnet import CifarResNet18, DownsamplingBasicBlock
from invariance_recipes.lightning_modules.nets.small_cnn import SmallCNN


@dataclass(frozen=True)
class Field:
    """The receptive field of every unit of one feature map (square maps and kernels).

    Args:
        size: side of one unit's field in input pixels (``math.inf`` after an ideal filter).
        jump: input pixels between neighbouring units (the cumulative stride).
        start: input pixel on which the first unit's field is centred (may be a half pixel).
        side: side of the feature map.
    """

    size: float
    jump: int
    start: float
    side: int

    def window(
        self,
        kernel: float,
        stride: int = 1,
        *,
        dilation: int = 1,
        before: int = 0,
        after: int | None = None,
        ceil_mode: bool = False,
    ) -> Field:
        """The field after a sliding window (convolution, pool, blur) with these settings."""
        after = before if after is None else after
        span = dilation * (kernel - 1) + 1
        if math.isinf(span):
            return Field(math.inf, self.jump * stride, self.start, -(-self.side // stride))
        rounding = math.ceil if ceil_mode else math.floor
        side = rounding((self.side + before + after - span) / stride) + 1
        if ceil_mode and (side - 1) * stride >= self.side + before:
            side -= 1  # PyTorch drops a last window that would start in the padding
        return Field(
            size=self.size + (span - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((span - 1) / 2 - before) * self.jump,
            side=side,
        )

    def union(self, other: Field) -> Field:
        """The field of the sum of two maps on the same grid (a residual block)."""
        if (self.jump, self.side) != (other.jump, other.side):
            raise ValueError(
                f"a residual block adds maps on different grids (jump {self.jump} vs "
                f"{other.jump}, side {self.side} vs {other.side}): its paths must downsample alike"
            )
        if math.isinf(self.size) or math.isinf(other.size):
            return replace(self, size=math.inf)
        low = min(self.start - self.size / 2, other.start - other.size / 2)
        high = max(self.start + self.size / 2, other.start + other.size / 2)
        return replace(self, size=high - low, start=(low + high) / 2)


@dataclass(frozen=True)
class ReceptiveFieldRow:
    """One layer of :func:`receptive_field`: its dotted name, type and output field."""

    name: str
    layer: str
    field: Field


class _Walk:
    """Applies the rules in forward order, recording a row per spatial layer and block."""

    def __init__(self) -> None:
        self.rows: list[ReceptiveFieldRow] = []

    def __call__(self, module: nn.Module, field: Field, name: str) -> Field:
        rule = RECEPTIVE_FIELD_RULES.get(type(module))
        if rule is None:
            kind = type(module).__name__
            raise ValueError(
                f"receptive_field has no rule for layer {name or 'the module'} of type {kind}: "
                "add one entry for it to RECEPTIVE_FIELD_RULES "
                "(lightning_modules/nets/receptive_field.py)"
            )
        out = rule(module, field, self, name)
        if rule is not _pointwise and not isinstance(module, _CONTAINERS):
            self.rows.append(ReceptiveFieldRow(name, type(module).__name__, out))
        return out

    def children(self, module: nn.Module, names: list[str], field: Field, prefix: str) -> Field:
        """The named children of ``module`` applied in this order (missing ones skipped)."""
        for child in names:
            if getattr(module, child, None) is not None:
                field = self(
                    getattr(module, child), field, f"{prefix}.{child}" if prefix else child
                )
        return field


# (module, input field, walk, dotted name) -> output field
Rule = Callable[[nn.Module, Field, _Walk, str], Field]


def _pair(value: int | tuple[int, ...], what: str, module: nn.Module) -> int:
    """The one value of a square setting; non-square kernels and strides are not supported."""
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    if a != b:
        raise ValueError(
            f"receptive_field handles square layers only: {type(module).__name__} has "
            f"{what}={tuple(value)}"
        )
    return a


def _conv(m: nn.Conv2d, field: Field, walk: _Walk, name: str) -> Field:
    k = _pair(m.kernel_size, "kernel_size", m)
    d = _pair(m.dilation, "dilation", m)
    s = _pair(m.stride, "stride", m)
    if m.padding == "valid":
        before = after = 0
    elif m.padding == "same":  # PyTorch puts the odd pixel after
        before, after = d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2
    else:
        before = after = _pair(m.padding, "padding", m)
    return field.window(k, s, dilation=d, before=before, after=after)


def _pool(m: nn.MaxPool2d | nn.AvgPool2d, field: Field, walk: _Walk, name: str) -> Field:
    k = _pair(m.kernel_size, "kernel_size", m)
    s = _pair(m.stride if m.stride is not None else m.kernel_size, "stride", m)
    p = _pair(m.padding, "padding", m)
    d = _pair(getattr(m, "dilation", 1), "dilation", m)
    return field.window(k, s, dilation=d, before=p, ceil_mode=m.ceil_mode)


def _pre_blur_conv(m: _PreBlurConv2d, field: Field, walk: _Walk, name: str) -> Field:
    return _conv(m, walk(m.blur, field, f"{name}.blur"), walk, name)


def _blur(m: BlurPool2d, field: Field, walk: _Walk, name: str) -> Field:
    before, after = m.padding[:2]
    return field.window(m.filt_size, m.stride, before=before, after=after)


def _same_max_pool(m: SameMaxPool2d, field: Field, walk: _Walk, name: str) -> Field:
    before, after = m.padding[:2]
    return field.window(m.kernel_size, before=before, after=after)


def _polyphase(m: PolyphaseDownsample2d, field: Field, walk: _Walk, name: str) -> Field:
    # kernel 1 on the phase-0 grid; the input is padded at the end to a multiple of the stride
    blurred = walk(m.blur, field, f"{name}.blur")
    return blurred.window(1, m.stride, ceil_mode=True)


def _max_polyphase(m: MaxPolyphasePool2d, field: Field, walk: _Walk, name: str) -> Field:
    return walk.children(m, ["pool", "aps"], field, name)


def _max_learnable_polyphase(
    m: MaxLearnablePolyphasePool2d, field: Field, walk: _Walk, name: str
) -> Field:
    return walk.children(m, ["pool", "lps"], field, name)


def _ideal(m: IdealLowPassDownsample2d, field: Field, walk: _Walk, name: str) -> Field:
    # an ideal (FFT) low-pass has infinite support: every output reads every input pixel
    return field.window(math.inf, m.stride)


def _alias_free_activation(m: AliasFreeActivation, field: Field, walk: _Walk, name: str) -> Field:
    # ideal up- and down-sampling around a pointwise polynomial: infinite support, and the
    # stride of the ideal downsampling it takes on
    return field.window(math.inf, m.stride)


def _max_blur(m: MaxBlurPool2d, field: Field, walk: _Walk, name: str) -> Field:
    return walk.children(m, ["pool", "blur"], field, name)


def _sequence(m: nn.Sequential, field: Field, walk: _Walk, name: str) -> Field:
    return walk.children(m, [child for child, _ in m.named_children()], field, name)


def _small_cnn(m: SmallCNN, field: Field, walk: _Walk, name: str) -> Field:
    return walk.children(m, ["features"], field, name)


def _resnet(m: ResNet, field: Field, walk: _Walk, name: str) -> Field:
    layers = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return walk.children(m, layers, field, name)


def _block(main: list[str], shortcut: list[str]) -> Rule:
    """A residual block: ``main`` and ``shortcut`` children in order, their fields united."""

    def rule(m: nn.Module, field: Field, walk: _Walk, name: str) -> Field:
        out = walk.children(m, main, field, name).union(walk.children(m, shortcut, field, name))
        walk.rows.append(ReceptiveFieldRow(name, type(m).__name__, out))
        return out

    return rule


def _pointwise(m: nn.Module, field: Field, walk: _Walk, name: str) -> Field:
    return field


_POINTWISE = (
    nn.Identity,
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Dropout,
    nn.Dropout2d,
)
# Rules that only order their children (a block records its own united row).
_CONTAINERS = (
    nn.Sequential,
    SmallCNN,
    ResNet,
    BasicBlock,
    Bottleneck,
    MaxBlurPool2d,
    MaxPolyphasePool2d,
    MaxLearnablePolyphasePool2d,
)

RECEPTIVE_FIELD_RULES: Mapping[type[nn.Module], Rule] = MappingProxyType(
    {
        **{kind: _pointwise for kind in _POINTWISE},
        nn.Conv2d: _conv,
        _PreBlurConv2d: _pre_blur_conv,
        nn.MaxPool2d: _pool,
        nn.AvgPool2d: _pool,
        BlurPool2d: _blur,
        SameMaxPool2d: _same_max_pool,
        MaxBlurPool2d: _max_blur,
        PolyphaseDownsample2d: _polyphase,
        MaxPolyphasePool2d: _max_polyphase,
        # LPS selects a phase like APS (the scoring network only chooses which one)
        LearnablePolyphaseDownsample2d: _polyphase,
        PolyphaseFollower2d: _polyphase,
        MaxLearnablePolyphasePool2d: _max_learnable_polyphase,
        IdealLowPassDownsample2d: _ideal,
        AliasFreeActivation: _alias_free_activation,
        nn.Sequential: _sequence,
        ConvBlurPool2d: _sequence,
        SmallCNN: _small_cnn,
        ResNet: _resnet,
        CifarResNet18: _resnet,
        BasicBlock: _block(["conv1", "bn1", "relu", "conv2", "bn2"], ["downsample"]),
        Bottleneck: _block(
            ["conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"], ["downsample"]
        ),
        DownsamplingBasicBlock: _block(
            ["conv1", "bn1", "relu", "step", "conv2", "bn2"], ["shortcut", "downsample"]
        ),
    }
)


def receptive_field(module: nn.Module, input_size: int) -> list[ReceptiveFieldRow]:
    """One row per spatial layer (pointwise layers change nothing) and per residual block,
    in forward order; the last row is the output feature map's.

    Args:
        module: a network, block or layer built from the types in
            :data:`RECEPTIVE_FIELD_RULES` (for a classifier, its last feature map).
        input_size: side of the (square) input image, which sets the map sides.

    Raises:
        ValueError: for a layer type without a rule, naming it.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size={input_size!r} is invalid: pass the image side in pixels")
    walk = _Walk()
    out = walk(module, Field(size=1, jump=1, start=0.0, side=input_size), "")
    if not walk.rows:
        walk.rows.append(ReceptiveFieldRow("", type(module).__name__, out))
    return walk.rows


def format_rows(rows: list[ReceptiveFieldRow]) -> str:
    """A plain-text table: layer, type, field size, jump, start and map side."""
    names = [row.name or "(input)" for row in rows]
    width = max(len("layer"), *map(len, names))
    kind = max(len("type"), *(len(r.layer) for r in rows))
    lines = [f"{'layer':<{width}}  {'type':<{kind}}  {'size':>6}  {'jump':>4}  {'start':>6}  side"]
    for name, row in zip(names, rows, strict=True):
        f = row.field
        lines.append(
            f"{name:<{width}}  {row.layer:<{kind}}  {f.size:>6g}  {f.jump:>4}  "
            f"{f.start:>6g}  {f.side:>4}"
        )
    return "\n".join(lines)
