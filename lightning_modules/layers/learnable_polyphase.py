"""Learnable polyphase sampling (LPS; Rojas-Gomez, Lim, Schwing, Do & Yeh, NeurIPS 2022,
"Learnable Polyphase Sampling for Shift Invariant and Equivariant Convolutional Networks")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invariance_recipes.common.borders import check_border
from invariance_recipes.common.checks import check_choice, check_positive
from invariance_recipes.lightning_modules.layers.blur_pool import BlurPool2d
from invariance_recipes.lightning_modules.layers.checks import check_stride
from invariance_recipes.lightning_modules.layers.padding import pad2d
from invariance_recipes.lightning_modules.layers.polyphase import polyphase_stack, take_phase

MIXTURES = ("gumbel", "softmax")


class PolyphaseScoringNet(nn.Module):
    """One logit per polyphase component, from the same small CNN applied to each.

    ``conv3x3 -> ReLU -> conv3x3``, then the mean over channels and space (the authors'
    ``LPSLogitLayersV2`` in ``layers/lps_logit_layers.py``). The convolutions pad
    circularly and the mean forgets position, so a circular shift of a component leaves its
    logit unchanged; a shift of the input permutes the components, hence the logits, and the
    choice follows: the scoring is permutation-consistent. The padding is explicit (the
    convolutions have ``padding=0``), so a backbone's ``padding_mode`` never changes it.

    Args:
        channels: channels of each component.
        hidden: channels of the hidden and last convolution.
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive("channels", channels)
        check_positive("hidden", hidden)
        self.conv1 = nn.Conv2d(channels, hidden, 3, device=device, dtype=dtype)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, device=device, dtype=dtype)

    def forward(self, parts: Tensor) -> Tensor:
        """``[B, P, C, h, w]`` components -> ``[B, P]`` logits."""
        b, p = parts.shape[:2]
        x = parts.flatten(0, 1)
        x = F.relu(self.conv1(pad2d(x, (1, 1, 1, 1), "circular")))
        return self.logits(x.mean(dim=(2, 3))).view(b, p)

    def logits(self, hidden_means: Tensor) -> Tensor:
        """``[N, hidden]`` spatial means of the hidden map -> ``[N]`` logits.

        conv2 pads circularly, so each of its taps sees every pixel of the hidden map once,
        and the mean of its output over channels and space is the hidden map's channel means
        dotted with conv2's weights summed over taps and averaged over output channels (plus
        the mean bias): the same function and gradients as running conv2 and averaging, without
        the convolution and its padding.
        """
        weight = self.conv2.weight.mean(dim=0).sum(dim=(1, 2))
        return hidden_means @ weight.to(hidden_means.dtype) + self.conv2.bias.mean()


def mix_phases(parts: Tensor, weights: Tensor, hard: bool) -> Tensor:
    """``sum_p weights[b, p] * parts[b, p]``, or with ``hard`` the component of largest weight
    (an exact copy, as the one-hot weights of evaluation would give)."""
    if weights.shape != parts.shape[:2]:
        raise ValueError(
            f"phase weights of shape {tuple(weights.shape)} do not fit {parts.shape[1]} "
            f"components of a batch of {parts.shape[0]}: pass the weights the main path returned"
        )
    if hard:
        batch = torch.arange(parts.shape[0], device=parts.device)
        return parts[batch, weights.argmax(dim=1)]
    return torch.einsum("bp,bpchw->bchw", weights.to(parts.dtype), parts)


def _pad_to_stride(x: Tensor, stride: int, pad_type: str) -> Tensor:
    extra_h, extra_w = -x.shape[-2] % stride, -x.shape[-1] % stride
    if extra_h or extra_w:
        x = pad2d(x, (0, extra_w, 0, extra_h), pad_type)
    return x


class LearnablePolyphaseDownsample2d(nn.Module):
    """Learnable polyphase downsampling (LPD): a scoring network chooses the component.

    APS keeps the polyphase component of largest norm; LPS learns the choice. A
    :class:`PolyphaseScoringNet` gives each of the ``stride**2`` components a logit. In
    training the output is a mixture of the components weighted by a Gumbel-softmax sample
    (``mixture='gumbel'``, the authors' default) or a softmax (``'softmax'``, their
    ``LPS_train_convex``) of the logits at temperature :attr:`tau`, so gradients reach the
    scoring network; in evaluation it is the component of largest logit (deterministic).
    With circular padding throughout and a global pooling head a network stays exactly
    invariant to circular shifts in evaluation, as with APS. Code: the authors'
    ``layers/polydown.py`` and ``layers/lps_utils.py`` (``lps_downsampleV2``).

    ``tau`` is a buffer (in the state dict) so that a schedule may anneal it during
    training; the authors train at 1.0 unless a schedule is configured.

    ``forward_with_phase`` returns the ``[B, stride**2]`` weights used (one-hot in
    evaluation), which :class:`PolyphaseFollower2d` applies to a residual shortcut. Odd sizes
    are padded at the end with ``pad_type``, so an ``n``-pixel side becomes ``ceil(n / 2)``.

    Args:
        channels: channels of the input.
        stride: subsampling factor (``stride**2`` components).
        filt_size: binomial taps of a stride-1 blur before the selection, 1 (none) .. 7.
        hidden: channels of the scoring network; ``None``: ``channels`` (the authors' choice).
        mixture: ``gumbel`` or ``softmax``, the training-time weights.
        tau: temperature of the mixture.
        pad_type: padding of the blur and of odd sizes, see :class:`BlurPool2d`.
    Shape:
        - Input: ``[N, C, H, W]`` with ``H`` and ``W`` multiples of ``stride``.
        - Output: ``[N, C, H / stride, W / stride]``.

    Examples:
        >>> import torch
        >>> lps = LearnablePolyphaseDownsample2d(4).eval()  # evaluation keeps one phase
        >>> lps(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 4, 4])
    """

    def __init__(
        self,
        channels: int,
        stride: int = 2,
        filt_size: int = 1,
        hidden: int | None = None,
        mixture: str = "gumbel",
        tau: float = 1.0,
        pad_type: str = "circular",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_stride(stride)
        check_choice("mixture", mixture, MIXTURES)
        pad_type = check_border("pad_type", pad_type)
        if not tau > 0:
            raise ValueError(f"tau={tau!r} is invalid: use a positive temperature such as 1.0")
        self.blur = BlurPool2d(channels, filt_size, 1, pad_type, device=device, dtype=dtype)
        hidden = channels if hidden is None else hidden
        self.scorer = PolyphaseScoringNet(channels, hidden, device=device, dtype=dtype)
        self.stride = stride
        self.mixture = mixture
        self.pad_type = pad_type
        self.register_buffer("tau", torch.tensor(float(tau), device=device, dtype=dtype))

    def phase_weights(self, parts: Tensor) -> Tensor:
        """``[B, stride**2]`` weights of the components: a mixture in training, one-hot else."""
        logits = self.scorer(parts)
        if not self.training:
            return F.one_hot(logits.argmax(dim=1), logits.shape[1]).to(logits.dtype)
        if self.mixture == "gumbel":
            return F.gumbel_softmax(logits, tau=float(self.tau))
        return torch.softmax(logits / self.tau, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_phase(x)[0]

    def forward_with_phase(self, x: Tensor, phase: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Blur, pad, subsample; return ``(output, weights)``. Given ``weights`` (from a map
        of the same size) are applied instead of scoring this input."""
        parts = polyphase_stack(
            _pad_to_stride(self.blur(x), self.stride, self.pad_type), self.stride
        )
        if phase is None:
            phase = self.phase_weights(parts)
        return mix_phases(parts, phase, hard=not self.training), phase

    def extra_repr(self) -> str:
        return f"stride={self.stride}, mixture={self.mixture!r}"


class PolyphaseFollower2d(nn.Module):
    """Subsampling on the phase (or phase mixture) that another layer chose.

    A residual block's shortcut must sit on the sampling grid of its main path, or the sum
    mixes two grids and the block loses its shift invariance; with LPS the main path's
    weights (a mixture in training, one-hot in evaluation) are applied here, as the authors'
    ``ResNet18Custom`` passes ``prob`` to its shortcut. Without weights the layer keeps the
    fixed grid ``x[..., ::s, ::s]``, which is what a block that did not share its phase
    would do.

    Args:
        stride: subsampling factor.
        filt_size: binomial taps of a stride-1 blur first, matching the main path's.
        channels: channels of the input (for the blur).
        pad_type: padding of the blur and of odd sizes.
    """

    def __init__(
        self,
        channels: int,
        stride: int = 2,
        filt_size: int = 1,
        pad_type: str = "circular",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_stride(stride)
        self.blur = BlurPool2d(channels, filt_size, 1, pad_type, device=device, dtype=dtype)
        self.stride = stride
        self.pad_type = pad_type

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_phase(x)[0]

    def forward_with_phase(self, x: Tensor, phase: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = _pad_to_stride(self.blur(x), self.stride, self.pad_type)
        if phase is None:
            fixed = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            return take_phase(x, fixed, self.stride), fixed
        return mix_phases(polyphase_stack(x, self.stride), phase, hard=not self.training), phase

    def extra_repr(self) -> str:
        return f"stride={self.stride}"
