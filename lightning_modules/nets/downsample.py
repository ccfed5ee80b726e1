"""The registry of downsampling methods behind the ``downsample`` option, shared by every
backbone: adding a method is one :class:`Downsampler` entry in :data:`DOWNSAMPLERS` (plus
its layer), and every backbone, the CLI and the registry-parametrized tests pick it up.

Each method halves the resolution after a stride-1 conv-BN-activation, except ``strided``,
whose convolution has stride 2. Every step maps an ``n``-pixel side to ``ceil(n / 2)``, so
the feature map after ``k`` steps has side ``ceil(image_size / 2**k)`` whatever the method.

The small CNN's step replaces a ``MaxPool(2)``; a ResNet block's step replaces the strided
convolution, where the published anti-aliased and polyphase ResNets put no max-pool:

============  ==========================  ===========================  =====================
method        small CNN step              ResNet block step            residual shortcut
============  ==========================  ===========================  =====================
max           MaxPool(2)                  MaxPool(2)                   1x1 conv, stride 2
blur          MaxPool(2, s1) + BlurPool   BlurPool (Zhang 2019)        BlurPool + 1x1 conv
strided       (conv with stride 2)        (conv with stride 2)         1x1 conv, stride 2
strided-blur  BlurPool                    BlurPool                     BlurPool + 1x1 conv
avg           AvgPool(2)                  AvgPool(2)                   AvgPool(2) + 1x1 conv
aps           MaxPool(2, s1) + APS        APS (Chaman & Dokmanic)      same phase + 1x1 conv
lps           MaxPool(2, s1) + LPS        LPS (Rojas-Gomez et al.)     same weights + 1x1
alias-free    ideal low-pass + subsample  ideal low-pass + subsample   same + 1x1 conv
============  ==========================  ===========================  =====================

The shortcut is the linear part of the main path's step on the same sampling grid (for
``aps`` and ``lps`` the phase chosen on the main path), which keeps a ResNet with APS or LPS
exactly invariant to circular shifts. ``alias-free`` also replaces every ReLU by an
alias-free activation (:attr:`Downsampler.activation`). ``filt_size`` sets the BlurPool taps
and, for ``aps`` and ``lps``, the stride-1 blur before the selection (1: none);
``lps_hidden_divisor`` narrows LPS's scoring network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.layers import (
    AliasFreeActivation,
    BlurPool2d,
    IdealLowPassDownsample2d,
    LearnablePolyphaseDownsample2d,
    MaxBlurPool2d,
    MaxLearnablePolyphasePool2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
    PolyphaseFollower2d,
)
from invariance_recipes.lightning_modules.layers.conv_blur_pool import BLUR_PAD_TYPES
from invariance_recipes.lightning_modules.nets.options import DEFAULTS, NetOptions


@dataclass(frozen=True)
class StepOptions:
    """What a downsampling layer is built with besides its channels.

    Args:
        pad_type: padding of its blurs and poolings (see :data:`BLUR_PAD_TYPES`).
        filt_size: binomial taps of its blur (1: none).
        lps_hidden_divisor: the LPS scoring network has ``channels // lps_hidden_divisor``
            hidden channels (at least 1).
    """

    pad_type: str
    filt_size: int
    lps_hidden_divisor: int = DEFAULTS.lps_hidden_divisor

    @classmethod
    def of(cls, options: NetOptions) -> StepOptions:
        """The step options a network's options imply (blurs pad as :data:`BLUR_PAD_TYPES`
        says for its convolutions' padding)."""
        return cls(
            BLUR_PAD_TYPES[options.padding_mode], options.filt_size, options.lps_hidden_divisor
        )

    def lps_hidden(self, channels: int) -> int:
        return max(1, channels // self.lps_hidden_divisor)


# (channels, options) -> layer
LayerFactory = Callable[[int, StepOptions], nn.Module]
# channels -> the nonlinearity after a convolution and its normalization
ActivationFactory = Callable[[int], nn.Module]
# channels -> the normalization after each convolution
NormFactory = Callable[[int], nn.Module]


def _identity(channels: int, options: StepOptions) -> nn.Module:
    return nn.Identity()


def _relu(channels: int) -> nn.Module:
    return nn.ReLU(inplace=True)


def _image_norm(channels: int) -> nn.Module:
    """Per-image normalization over all channels and positions (GroupNorm with one group).

    Its statistics are sums over the whole image, so it commutes with circular and Fourier
    shifts and adds no aliasing; and it has no running statistics, so training and
    evaluation compute the same function. With BatchNorm, the polynomial activations of an
    alias-free net amplify the gap between batch and running statistics: on the digits a
    trained net scored 99% on a validation batch with batch statistics and 80% with running
    ones. The authors normalize per image too (a LayerNorm).
    """
    return nn.GroupNorm(1, channels)


@dataclass(frozen=True)
class Downsampler:
    """One downsampling method.

    Args:
        summary: what it does, with its paper (shown by ``--help`` and the docs).
        step: builds the stride-2 layer after a stride-1 conv-BN-activation, where a network
            would max-pool; ``None`` when the convolution itself has stride 2.
        block_step: the stride-2 layer in a residual block's main path, where a ResNet has
            a strided convolution; ``None``: the same as ``step``.
        shortcut: builds the spatial part of a residual shortcut, applied before its 1x1
            convolution.
        shortcut_stride: stride of that 1x1 convolution (2 when ``shortcut`` keeps the size).
        shares_phase: the step chooses a polyphase component that the shortcut must take
            too (``forward_with_phase`` on both), so the block stays on one sampling grid.
        activation: builds the nonlinearity of every conv-BN unit of a network with this
            method (ReLU unless the method needs its own, as alias-free nets do).
        norm: builds the normalization after every convolution (BatchNorm unless the
            method needs its own).
        onnx: whether a network with this method converts to ONNX (opset 18);
            ``torch.export`` holds every method.
        channels_last: whether a network with this method trains in channels-last memory by
            default: where it was faster at 1 and at 2 threads (``python recipes/benchmark.py
            --only layout``); the polyphase and ideal resamplers were slower in it.
        compile: whether a network with this method is compiled by default
            (``torch.compile``): where the compiled training step was faster at 1 and at 2
            threads and the compilation pays for itself within the default run's 100 steps
            (``python recipes/benchmark.py --only compile``, ``docs/benchmarks/compile``). No
            method does: alias-free's compiled step was 0.874x eager at 1 thread and 0.822x
            at 2, but its compilation (60-66 s) pays back only after 472-473 steps, and
            evaluation compiles again; aps does not compile (an inductor assertion).
        activation_strides: the method's activation also takes the stride of the step that
            follows it (``activation(channels, stride=2)``), computing the pair exactly in
            one cheaper pass; the small CNN then builds it in place of its last activation
            and step.
        micro_batch_values: the values of the first stage's feature map (images x its
            channels x height x width) in one forward pass of the parts that
            ``InvarianceClassifier`` splits larger batches into, where the parts compute the
            same function (``micro_batch``): maps that fit the CPU's caches, so a narrower
            network or a smaller image takes more images a part. Measured per method at 1
            and 2 threads with the small CNN's 32 first-stage channels, evaluating 512
            images in parts (``python recipes/benchmark.py --only micro-batch``,
            ``docs/benchmarks/micro-batch``): 32 images of 32x32 for the BatchNorm networks
            (4 MiB of float32), 16 for LPS and the alias-free networks, whose maps are
            wider or on the 2x grid.
    """

    summary: str
    step: LayerFactory | None
    block_step: LayerFactory | None = None
    shortcut: LayerFactory = _identity
    shortcut_stride: int = 1
    shares_phase: bool = False
    activation: ActivationFactory = _relu
    norm: NormFactory = nn.BatchNorm2d
    onnx: bool = True
    channels_last: bool = True
    compile: bool = False
    activation_strides: bool = False
    micro_batch_values: int = 32 * 32 * 32 * 32


def _blur(channels: int, options: StepOptions) -> nn.Module:
    return BlurPool2d(channels, options.filt_size, 2, options.pad_type)


def _avg(channels: int, options: StepOptions) -> nn.Module:
    return nn.AvgPool2d(2, ceil_mode=True)


def _aps(channels: int, options: StepOptions) -> nn.Module:
    return PolyphaseDownsample2d(channels, 2, options.filt_size, "l2", options.pad_type)


def _max_aps(channels: int, options: StepOptions) -> nn.Module:
    return MaxPolyphasePool2d(channels, 2, 2, options.filt_size, "l2", options.pad_type)


def _lps(channels: int, options: StepOptions) -> nn.Module:
    hidden = options.lps_hidden(channels)
    return LearnablePolyphaseDownsample2d(
        channels, 2, options.filt_size, hidden, pad_type=options.pad_type
    )


def _max_lps(channels: int, options: StepOptions) -> nn.Module:
    hidden = options.lps_hidden(channels)
    return MaxLearnablePolyphasePool2d(
        channels, 2, 2, options.filt_size, hidden, pad_type=options.pad_type
    )


def _lps_shortcut(channels: int, options: StepOptions) -> nn.Module:
    return PolyphaseFollower2d(channels, 2, options.filt_size, options.pad_type)


def _ideal(channels: int, options: StepOptions) -> nn.Module:
    return IdealLowPassDownsample2d(2)


DOWNSAMPLERS: Mapping[str, Downsampler] = MappingProxyType(
    {
        "max": Downsampler(
            "MaxPool(2)",
            step=lambda c, options: nn.MaxPool2d(2, ceil_mode=True),
            shortcut_stride=2,
        ),
        "blur": Downsampler(
            "MaxPool(2, stride 1) + BlurPool(stride 2); in ResNet blocks Zhang's anti-aliased "
            "BasicBlock, BlurPool before conv2 and the shortcut (Zhang, ICML 2019)",
            step=lambda c, o: MaxBlurPool2d(c, 2, o.filt_size, 2, o.pad_type),
            block_step=_blur,
            shortcut=_blur,
        ),
        "strided": Downsampler("the convolution has stride 2", step=None, shortcut_stride=2),
        "strided-blur": Downsampler(
            "Conv(stride 1) + ReLU + BlurPool(stride 2) (Zhang, ICML 2019)",
            step=_blur,
            shortcut=_blur,
        ),
        "avg": Downsampler("AvgPool(2)", step=_avg, shortcut=_avg),
        "aps": Downsampler(
            "MaxPool(2, stride 1) + adaptive polyphase sampling; in ResNet blocks APS alone, "
            "its phase shared with the shortcut (Chaman & Dokmanic, CVPR 2021)",
            step=_max_aps,
            block_step=_aps,
            shortcut=_aps,
            shares_phase=True,
            channels_last=False,  # 1.05-1.16x contiguous (aps, aps-circular)
        ),
        "lps": Downsampler(
            "MaxPool(2, stride 1) + learnable polyphase sampling; in ResNet blocks LPS alone, "
            "its weights shared with the shortcut (Rojas-Gomez et al., NeurIPS 2022)",
            step=_max_lps,
            block_step=_lps,
            shortcut=_lps_shortcut,
            shares_phase=True,
            channels_last=False,  # 0.85-1.20x contiguous (lps, lps-circular)
            micro_batch_values=16 * 32 * 32 * 32,
        ),
        "alias-free": Downsampler(
            "ideal (FFT) low-pass + subsampling, and alias-free polynomial activations "
            "(Michaeli, Michaeli & Soudry, CVPR 2023); exact with circular padding",
            step=_ideal,
            shortcut=_ideal,
            activation=AliasFreeActivation,
            norm=_image_norm,
            onnx=False,  # the ONNX converter refuses its ideal resampling
            activation_strides=True,
            channels_last=False,  # 1.28-1.38x contiguous
            micro_batch_values=16 * 32 * 32 * 32,
        ),
    }
)


def get_downsampler(name: str) -> Downsampler:
    """The registry entry of ``name``, with a one-line error listing the valid names."""
    check_choice("downsample", name, tuple(DOWNSAMPLERS))
    return DOWNSAMPLERS[name]


def create_downsample(channels: int, options: NetOptions, *, in_block: bool = False) -> nn.Module:
    """The stride-2 layer that follows a stride-1 conv-BN-activation for
    ``options.downsample``: its ``block_step`` with ``in_block`` (a residual block's main
    path), else its ``step``."""
    spec = get_downsampler(options.downsample)
    step = (spec.block_step or spec.step) if in_block else spec.step
    if step is None:
        raise ValueError(
            f"downsample={options.downsample!r} has no separate step: the convolution has stride 2"
        )
    return step(channels, StepOptions.of(options))


def create_shortcut(channels: int, options: NetOptions) -> nn.Module:
    """The spatial part of a residual shortcut for ``options.downsample`` (before its 1x1
    conv)."""
    return get_downsampler(options.downsample).shortcut(channels, StepOptions.of(options))


def create_norm(name: str, channels: int) -> nn.Module:
    """The normalization after each convolution of a ``downsample=name`` network."""
    return get_downsampler(name).norm(channels)


def create_activation(name: str, channels: int, stride: int = 1) -> nn.Module:
    """The nonlinearity after each convolution and BatchNorm of a ``downsample=name`` network;
    ``stride`` 2 (methods with ``activation_strides`` only) takes the step after it too."""
    method = get_downsampler(name)
    if stride == 1:
        return method.activation(channels)
    if not method.activation_strides:
        raise ValueError(f"downsample={name!r}: its activation does not downsample")
    return method.activation(channels, stride=stride)
