"""The exact settings of the newer strategies, checked on untrained networks in float64:
APS, LPS and alias-free nets with circular padding and global pooling are invariant to every
integer circular shift (with controls that are not), and the alias-free net to fractional
(Fourier) shifts of a band-limited input, where BlurPool is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invariance_recipes.lightning_modules.nets import build_net, get_downsampler
from invariance_recipes.lightning_modules.variants import VARIANTS

EXACT = ("aps-circular", "lps-circular", "alias-free")
# Image sides: the small CNN sees 16 px and every shift up to 8 px on each axis; ResNet-18
# (total stride 8, 12x the work) sees 8 px, whose 64 circular shifts include every shift up
# to 8 px (8 is the identity there).
SIZES = {"small-cnn": 16, "resnet18": 8}
SHIFTS = [(dy, dx) for dy in range(9) for dx in range(9)]


def untrained(options: dict, backbone: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    size = SIZES[backbone]
    net = build_net(backbone, in_channels=1, num_classes=5, image_size=size, **options)
    return net.double().eval()


def max_logit_change_over_circular_shifts(net: torch.nn.Module) -> float:
    size = net.image_size
    x = torch.randn(
        1, 1, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    distinct = sorted({(dy % size, dx % size) for dy, dx in SHIFTS})
    shifted = torch.cat([torch.roll(x, s, dims=(-2, -1)) for s in distinct])
    with torch.no_grad():
        logits = net(shifted)
    return (logits - logits[:1]).abs().max().item()


@pytest.mark.parametrize("variant", EXACT)
def test_exact_variants_small_cnn_is_invariant_to_every_circular_shift(variant: str) -> None:
    net = untrained(dict(VARIANTS[variant].model), "small-cnn")
    assert max_logit_change_over_circular_shifts(net) <= 1e-5


@pytest.mark.parametrize("variant", EXACT)
@pytest.mark.slow
def test_exact_variants_resnet18_is_invariant_and_needs_its_shared_phase(variant: str) -> None:
    net = untrained(dict(VARIANTS[variant].model), "resnet18")
    assert max_logit_change_over_circular_shifts(net) <= 1e-5
    if get_downsampler(VARIANTS[variant].model["downsample"]).shares_phase:
        # Control: each shortcut keeps a grid of its own, and invariance is lost.
        for layer in (net.layer2, net.layer3, net.layer4):
            layer[0].shares_phase = False
        assert max_logit_change_over_circular_shifts(net) > 1e-3


def test_control_max_pooling_in_the_same_setting_is_not_invariant() -> None:
    net = untrained(dict(VARIANTS["max-circular"].model), "small-cnn")
    assert max_logit_change_over_circular_shifts(net) > 1e-3


def band_limited_image(size: int, seed: int) -> np.ndarray:
    """Random real image with no energy at or above the Nyquist frequency of either axis."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fft2(rng.standard_normal((size, size)))
    k = np.abs(np.fft.fftfreq(size, 1 / size))
    keep = (k < size / 2).astype(float)
    return np.real(np.fft.ifft2(spectrum * keep[:, None] * keep[None, :]))


def fourier_shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """The band-limited image moved by (dy, dx) pixels: a phase ramp on its spectrum."""
    size = image.shape[-1]
    k = np.fft.fftfreq(size, 1 / size)
    ramp = np.exp(-2j * np.pi * (k[:, None] * dy + k[None, :] * dx) / size)
    return np.real(np.fft.ifft2(np.fft.fft2(image) * ramp))


def relative_change_under_fractional_shifts(options: dict) -> float:
    net = untrained(options, "small-cnn", seed=1)
    image = band_limited_image(32, seed=0)
    moved = [
        fourier_shift(image, dy, dx) for dy, dx in [(0.5, 0), (0, 0.5), (0.25, 0.25), (0.5, 0.25)]
    ]
    batch = torch.from_numpy(np.stack([image, *moved])[:, None])
    with torch.no_grad():
        logits = net(batch)
    return ((logits[1:] - logits[:1]).norm(dim=1) / logits[:1].norm()).max().item()


def test_alias_free_is_invariant_to_half_and_quarter_pixel_shifts_and_blurpool_is_not() -> None:
    alias_free = relative_change_under_fractional_shifts(dict(VARIANTS["alias-free"].model))
    # BlurPool in the same setting (circular padding, global pooling): only the layers differ.
    blur = relative_change_under_fractional_shifts(
        {"downsample": "blur", "padding_mode": "circular", "head": "gap"}
    )
    print(f"relative logit change: alias-free {alias_free:.3g}, blur {blur:.3g}")
    assert alias_free <= 1e-4
    assert blur >= 10 * alias_free and blur > 1e-3
