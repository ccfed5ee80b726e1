"""``antialias``: Zhang's anti-aliasing rules applied to a torchvision CNN (ICML 2019)."""

from __future__ import annotations

import copy
import itertools
import warnings

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from invariance_recipes.common.borders import check_border
from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.layers import BlurPool2d
from invariance_recipes.lightning_modules.layers.checks import check_filt_size

# Pointwise modules that may sit between a strided convolution and its nonlinearity, and
# parameter-free nonlinearities after which the blur goes.
_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.Identity)
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Mish,
)
_STRIDED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


class _PreBlurConv2d(nn.Conv2d):
    """A ``Conv2d`` that BlurPools its input first; its state dict is the convolution's own.

    Used where the blur must go right before a convolution (after a ReLU shared with other
    paths, or in front of a 1x1 convolution, where ``Conv(1x1) + BlurPool`` equals
    ``BlurPool + Conv(1x1)`` and costs a quarter).
    """

    @classmethod
    def wrap(cls, conv: nn.Conv2d, blur: BlurPool2d) -> _PreBlurConv2d:
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device="meta",
        )
        new.weight, new.bias = conv.weight, conv.bias
        new.blur = blur.to(conv.weight.device)
        return new.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.blur(x))


LAYOUTS = ("pool-only", "all")


def antialias(
    model: nn.Module,
    filt_size: int = 4,
    pad_type: str = "reflect",
    *,
    layout: str = "pool-only",
    strict: bool = True,
) -> tuple[nn.Module, list[str]]:
    """Return an anti-aliased copy of ``model`` and one line per changed layer.

    Every layer that subsamples is rewritten by Zhang's rules (ICML 2019, "Making
    Convolutional Networks Shift-Invariant Again"), keeping the original's parameters, so
    ``converted.load_state_dict(original.state_dict())`` works (strict), and output sizes
    stay the same (for even sizes). Pretrained weights load, but they were learned for the
    strided layers: the converted model needs fine-tuning before its accuracy can be
    trusted (Zhang fine-tunes or trains from scratch; the README shows a fine-tuning loop).

    ``layout='pool-only'`` (default) is the layout of Zhang's released models
    (adobe/antialiased-cnns, ``pool_only=True``): the stem convolution (the first strided
    layer, when it is a convolution) stays strided, because blurring it at full resolution
    would quadruple its cost, and ResNet's stem ``maxpool`` becomes ``MaxPool(2, stride 1)``
    + ``BlurPool(2)`` as in his ``resnet.py``. ``layout='all'`` blurs the stem too
    (``pool_only=False``; ResNet's ``conv1`` at stride 1, BlurPool before ``maxpool``).
    The rules for the other layers:

    - ``MaxPool(k, s)`` -> ``MaxPool(k, 1)`` + ``BlurPool(s)`` (same kernel and padding);
    - ``AvgPool(s)`` -> ``BlurPool(s)`` (Zhang's DenseNet transitions);
    - the strided convolution of a torchvision ``BasicBlock``/``Bottleneck`` -> stride 1,
      and the block's next convolution BlurPools its input first (after the block's ReLU,
      as in Zhang's ResNets);
    - ``Conv(s)`` followed in an ``nn.Sequential`` by normalization layers and a
      nonlinearity (ReLU, ReLU6, SiLU, ...) -> ``Conv(1)``, and the nonlinearity becomes
      ``Sequential(nonlinearity, BlurPool(s))`` (DenseNet's stem, MobileNetV2's
      ``Conv2dNormActivation`` with BN and ReLU6 in between, the small CNN here);
    - any other 1x1 ``Conv(s)`` (ResNet's downsampling shortcut) -> ``BlurPool(s)`` then the
      1x1 convolution at stride 1 (equal to ``Conv(1x1) + BlurPool(s)``, at a quarter of
      the cost).

    Anything else that subsamples (a strided kxk convolution with no nonlinearity after it, a
    non-square stride, a pool that returns indices or has no convolution before it) is not
    guessed at: it raises ``ValueError`` naming the layers, or with ``strict=False`` stays
    strided with a warning naming them. Adaptive pools are resizes and stay. A pool's
    BlurPool takes the channels of the last convolution or norm registered before it (right
    for these families; a wrong guess fails at the first forward with BlurPool2d's channel
    error).

    Args:
        model: a torchvision ResNet, VGG, DenseNet or MobileNetV2 (or anything built from
            the patterns above). It is not modified.
        filt_size, pad_type: BlurPool settings, see :class:`BlurPool2d`.
        layout: ``pool-only`` (Zhang's released models) or ``all`` (also the stem).
        strict: raise on strided layers no rule covers (else warn and keep them).

    Returns:
        ``(converted, changes)``: the converted copy and ``"name: what changed"`` lines.
    """
    check_filt_size(filt_size)
    pad_type = check_border("pad_type", pad_type)
    check_choice("layout", layout, LAYOUTS)
    conversion = _Conversion(copy.deepcopy(model), filt_size, pad_type)
    if layout == "pool-only":
        conversion.keep_stem()
        conversion.resnet_stem_pool()
    conversion.pools()
    conversion.resnet_blocks()
    conversion.resnet_stem()
    conversion.sequentials()
    conversion.pointwise_convs()
    if conversion.pending:
        names = ", ".join(sorted(conversion.pending))
        message = f"antialias has no rule for these strided layers: {names}"
        if strict:
            raise ValueError(f"{message}; pass strict=False to keep them strided (with a warning)")
        warnings.warn(f"{message}; they stay strided", stacklevel=2)
    return conversion.model, conversion.changes


class _Conversion:
    """The rules of :func:`antialias`, applied in order to the strided layers still pending."""

    def __init__(self, model: nn.Module, filt_size: int, pad_type: str) -> None:
        self.model = model
        self.filt_size = filt_size
        self.pad_type = pad_type
        self.device = next(model.parameters(), torch.empty(0)).device
        self.order = {name: i for i, (name, _) in enumerate(model.named_modules())}
        self.pending = {name for name, m in model.named_modules() if _stride(m) != 1}
        self.done_changes: list[tuple[str, str]] = []

    def blur(self, channels: int, stride: int) -> BlurPool2d:
        return BlurPool2d(channels, self.filt_size, stride, self.pad_type).to(self.device)

    def done(self, name: str, change: str) -> None:
        self.pending.discard(name)
        self.done_changes.append((name, change))

    @property
    def changes(self) -> list[str]:
        """``"name: change"`` lines in the model's order."""
        ordered = sorted(self.done_changes, key=lambda item: self.order[item[0]])
        return [f"{name}: {change}" for name, change in ordered]

    def strided(self, types: type | tuple[type, ...]) -> list[tuple[str, nn.Module, int]]:
        """Pending layers of ``types`` with a square stride, in registration order."""
        found = []
        for name, m in self.model.named_modules():
            stride = _stride(m)
            if name in self.pending and isinstance(m, types) and stride is not None:
                found.append((name, m, stride))
        return found

    def keep_stem(self) -> None:
        """The first strided layer, when it is a convolution, stays strided (pool-only)."""
        for name, m in self.model.named_modules():
            stride = _stride(m)
            if stride == 1:
                continue
            if isinstance(m, nn.Conv2d) and stride is not None:
                self.done(
                    name, f"kept at stride {stride} (the stem, as in Zhang's released models)"
                )
            return

    def resnet_stem_pool(self) -> None:
        """ResNet's stem max-pool -> ``MaxPool(2, stride 1)`` + BlurPool (Zhang's resnet.py)."""
        model = self.model
        if not isinstance(model, ResNet) or "maxpool" not in self.pending:
            return
        stride = _stride(model.maxpool)
        if not isinstance(model.maxpool, nn.MaxPool2d) or stride is None:
            return
        channels = model.bn1.num_features
        model.maxpool = nn.Sequential(nn.MaxPool2d(2, 1), self.blur(channels, stride))
        self.done(
            "maxpool",
            f"MaxPool2d(stride {stride}) -> MaxPool2d(2, stride 1) + BlurPool2d(stride {stride})",
        )

    def pools(self) -> None:
        """MaxPool -> dense MaxPool + BlurPool; AvgPool -> BlurPool."""
        channels, channels_before = None, {}
        for name, m in self.model.named_modules():
            channels_before[name] = channels
            if isinstance(m, nn.Conv2d):
                channels = m.out_channels
            elif isinstance(m, nn.BatchNorm2d | nn.SyncBatchNorm):
                channels = m.num_features
            elif isinstance(m, nn.GroupNorm):
                channels = m.num_channels
        for name, pool, stride in self.strided((nn.MaxPool2d, nn.AvgPool2d)):
            channels = channels_before[name]
            if channels is None:
                continue
            if isinstance(pool, nn.AvgPool2d):
                self.model.set_submodule(name, self.blur(channels, stride))
                self.done(name, f"AvgPool2d(stride {stride}) -> BlurPool2d(stride {stride})")
            elif not pool.return_indices:
                dense = nn.MaxPool2d(
                    pool.kernel_size, 1, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode
                )
                self.model.set_submodule(name, nn.Sequential(dense, self.blur(channels, stride)))
                self.done(
                    name,
                    f"MaxPool2d(stride {stride}) -> MaxPool2d(stride 1) + BlurPool2d(stride {stride})",
                )

    def resnet_blocks(self) -> None:
        """Blocks: the convolution after the strided one blurs its input first."""
        for name, block in list(self.model.named_modules()):
            if not isinstance(block, BasicBlock | Bottleneck):
                continue
            convs = (
                ["conv1", "conv2", "conv3"] if isinstance(block, Bottleneck) else ["conv1", "conv2"]
            )
            for current, following in itertools.pairwise(convs):
                conv = getattr(block, current)
                stride = _stride(conv)
                if f"{name}.{current}" not in self.pending or stride is None:
                    continue
                conv.stride = (1, 1)
                blurred = _PreBlurConv2d.wrap(
                    getattr(block, following), self.blur(conv.out_channels, stride)
                )
                setattr(block, following, blurred)
                self.done(
                    f"{name}.{current}",
                    f"stride {stride} -> 1; BlurPool2d(stride {stride}) before {name}.{following}",
                )

    def resnet_stem(self) -> None:
        """ResNet's conv1 -> bn1 -> relu -> maxpool: the blur goes before the max-pool."""
        model = self.model
        if not isinstance(model, ResNet) or "conv1" not in self.pending:
            return
        stride = _stride(model.conv1)
        if stride is None:
            return
        model.conv1.stride = (1, 1)
        pool = model.maxpool
        rest = list(pool) if isinstance(pool, nn.Sequential) else [pool]
        model.maxpool = nn.Sequential(self.blur(model.conv1.out_channels, stride), *rest)
        self.done("conv1", f"stride {stride} -> 1; BlurPool2d(stride {stride}) before maxpool")

    def sequentials(self) -> None:
        """Sequential conv -> norms -> nonlinearity: the blur goes after the nonlinearity."""
        strided = {name: (conv, stride) for name, conv, stride in self.strided(nn.Conv2d)}
        for seq_name, seq in list(self.model.named_modules()):
            if not isinstance(seq, nn.Sequential):
                continue
            prefix = f"{seq_name}." if seq_name else ""
            children = list(seq.named_children())
            for i, (child_name, _) in enumerate(children):
                if prefix + child_name not in strided:
                    continue
                conv, stride = strided[prefix + child_name]
                j = i + 1
                while j < len(children) and isinstance(children[j][1], _NORMS):
                    j += 1
                if j == len(children) or not isinstance(children[j][1], _ACTIVATIONS):
                    continue
                act_name, act = children[j]
                conv.stride = (1, 1)
                setattr(seq, act_name, nn.Sequential(act, self.blur(conv.out_channels, stride)))
                self.done(
                    prefix + child_name,
                    f"stride {stride} -> 1; BlurPool2d(stride {stride}) after {prefix + act_name}",
                )

    def pointwise_convs(self) -> None:
        """Any remaining 1x1 strided convolution: BlurPool, then the 1x1 at stride 1."""
        for name, conv, stride in self.strided(nn.Conv2d):
            if conv.kernel_size != (1, 1) or conv.padding != (0, 0):
                continue
            conv.stride = (1, 1)
            self.model.set_submodule(
                name, _PreBlurConv2d.wrap(conv, self.blur(conv.in_channels, stride))
            )
            self.done(
                name, f"Conv2d 1x1 stride {stride} -> BlurPool2d(stride {stride}) + Conv2d stride 1"
            )


def _stride(module: nn.Module) -> int | None:
    """1 for non-subsampling modules, the stride of a square-strided conv or pool, else None."""
    if not isinstance(module, _STRIDED):
        return 1
    stride = module.stride
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and stride is None:
        stride = module.kernel_size
    sy, sx = (stride, stride) if isinstance(stride, int) else tuple(stride)
    return sy if sy == sx else None
