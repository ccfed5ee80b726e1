"""Receptive fields: the arithmetic against hand-computed values, the effective field's
support against the theoretical square, and the spatial-pyramid-pooling head."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from invariance_recipes.lightning_modules.layers import (
    BlurPool2d,
    PolyphaseDownsample2d,
    SpatialPyramidPool2d,
)
from invariance_recipes.lightning_modules.nets import DOWNSAMPLERS, build_net
from invariance_recipes.lightning_modules.nets.effective_receptive_field import (
    centre_unit,
    effective_receptive_field,
    random_batches,
)
from invariance_recipes.lightning_modules.nets.receptive_field import Field, receptive_field
from invariance_recipes.measure.receptive_fields import mass_side


def last(module: nn.Module, size: int = 64) -> Field:
    return receptive_field(module, size)[-1].field


def conv(k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(1, 1, k, stride, padding=dilation * (k - 1) // 2, dilation=dilation)


def test_worked_example_sees_an_8x8_patch() -> None:
    """input -> Conv3x3/1 -> MaxPool2x2/2 -> Conv3x3/1: 3, then 4, then 4 + 2 * 2 = 8."""
    rows = receptive_field(nn.Sequential(conv(), nn.MaxPool2d(2), conv()), 32)
    assert [(r.name, r.field.size, r.field.jump) for r in rows] == [
        ("0", 3, 1),
        ("1", 4, 2),
        ("2", 8, 2),
    ]
    # the first output unit covers pixels -3 .. 4 (zero padding at -3 .. -1): centre 0.5
    assert rows[-1].field.start == 0.5 and rows[-1].field.side == 16


def test_dilated_convs_grow_by_dilation_times_kernel_minus_one() -> None:
    assert last(conv(dilation=2)).size == 5
    field = last(nn.Sequential(conv(), conv(dilation=2), conv(dilation=4)))
    assert (field.size, field.jump, field.start, field.side) == (1 + 2 + 4 + 8, 1, 0, 64)


def test_strided_conv_chain() -> None:
    rows = receptive_field(nn.Sequential(*(conv(stride=2) for _ in range(3))), 32)
    assert [(r.field.size, r.field.jump, r.field.side) for r in rows] == [
        (3, 2, 16),
        (7, 4, 8),
        (15, 8, 4),
    ]
    assert all(r.field.start == 0 for r in rows)  # padding 1 centres every first unit on 0


def test_blurpool_chain() -> None:
    """4 taps, 1 pixel of padding before: +3 input pixels, centre half a step to the right."""
    rows = receptive_field(nn.Sequential(BlurPool2d(1, 4, 2), BlurPool2d(1, 4, 2)), 33)
    assert [(r.field.size, r.field.jump, r.field.start, r.field.side) for r in rows] == [
        (4, 2, 0.5, 17),
        (4 + 3 * 2, 4, 0.5 + 0.5 * 2, 9),
    ]
    blur_side = BlurPool2d(1, 4, 2)(torch.zeros(1, 1, 33, 33)).shape[-1]
    assert rows[0].field.side == blur_side


def test_resnet18_stage_takes_the_larger_path() -> None:
    """layer2 of torchvision's ResNet-18: conv3/2 -> conv3 (3, then 3 + 2 * 2 = 7) beside a
    1x1/2 shortcut (1): the block sees 7; the second block adds 2 * 2 twice: 15."""
    rows = receptive_field(resnet18().layer2, 56)
    blocks = [r for r in rows if r.layer == "BasicBlock"]
    assert [(r.name, r.field.size, r.field.jump) for r in blocks] == [("0", 7, 2), ("1", 15, 2)]
    shortcut = next(r for r in rows if r.name == "0.downsample.0")
    assert shortcut.field.size == 1


def test_whole_resnet18_matches_the_published_435() -> None:
    """Stem 7/2 and max-pool 3/2 (11, jump 4), then 3x3 convs: 435 (Araujo et al. 2019)."""
    assert last(resnet18(), 224).size == 435
    assert last(resnet18(), 224).side == 7


def test_cifar_resnet18_and_small_cnn_by_hand() -> None:
    """Strided CIFAR ResNet-18: stem 3; layer1 +8 = 11; each later stage +2j at its strided
    conv then +3 * 2 * 2j: 25, 53, 109. Small CNN, max: per stage +2j (conv), +j (pool)."""
    options = {"in_channels": 1, "num_classes": 10, "image_size": 32}
    assert last(build_net("resnet18", downsample="strided", **options), 32).size == 109
    sizes = [3 + 1, 4 + 4 + 2, 10 + 8 + 4]  # stage by stage, jumps 1, 2, 4
    net = build_net(**options)
    pools = [r.field.size for r in receptive_field(net, 32) if r.layer == "MaxPool2d"]
    assert pools == sizes


def test_aps_counts_like_plain_subsampling() -> None:
    """The chosen phase moves the grid, not the size: kernel 1, stride 2."""
    field = last(PolyphaseDownsample2d(1, stride=2, filt_size=1), 9)
    assert (field.size, field.jump, field.side) == (1, 2, 5)


def test_ideal_low_pass_convention_is_infinite() -> None:
    start = Field(size=3, jump=2, start=0.0, side=16)
    ideal = start.window(math.inf, 2)
    assert math.isinf(ideal.size) and ideal.jump == 4 and ideal.side == 8
    assert math.isinf(ideal.window(3).size)
    assert math.isinf(start.window(3, 2, before=1).union(ideal).size)
    with pytest.raises(ValueError, match="different grids"):
        start.window(3).union(ideal)


def test_unknown_layer_is_named() -> None:
    net = nn.Sequential(conv(), nn.Upsample(scale_factor=2))
    with pytest.raises(ValueError, match=r"layer 1 of type Upsample: add one entry"):
        receptive_field(net, 16)
    with pytest.raises(ValueError, match="input_size=0"):
        receptive_field(conv(), 0)


def support(erf: torch.Tensor) -> tuple[int, int, int, int]:
    """First and last row and column with a non-zero value."""
    rows, cols = erf.abs().sum(1).nonzero(), erf.abs().sum(0).nonzero()
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def theoretical_square(field: Field, image: int) -> tuple[int, int, int, int]:
    centre = field.start + centre_unit(field.side) * field.jump
    low, high = centre - (field.size - 1) / 2, centre + (field.size - 1) / 2
    low, high = max(0, math.ceil(low)), min(image - 1, math.floor(high))
    return low, high, low, high


def positive(net: nn.Module) -> nn.Module:
    """All convolution weights positive and biases zero: with positive inputs every unit is
    positive, so no ReLU or max switches a path off and the gradient reaches every pixel
    the arithmetic says it can."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 0.1, 1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def test_effective_field_support_equals_the_theoretical_square_for_a_conv_chain() -> None:
    net = positive(nn.Sequential(conv(), conv(stride=2), nn.AvgPool2d(2), conv(5), conv()))
    batches = [torch.rand(2, 1, 64, 64)]
    erf = effective_receptive_field(net, batches)
    field = last(net, 64)
    assert field.size == 3 + 2 + 2 + 4 * 4 + 2 * 4  # 31, independent of the module code
    assert support(erf) == theoretical_square(field, 64)
    assert erf.shape == (64, 64) and (erf >= 0).all()
    assert mass_side(erf, field, 1.0) == field.size  # all the mass, the whole square
    assert mass_side(erf, field, 0.5) < field.size


@pytest.mark.parametrize("downsample", ["strided", "strided-blur", "avg"])
def test_effective_field_support_of_small_cnns(downsample: str) -> None:
    """The built networks (BatchNorm in eval mode is the identity at initialization), with
    the field clipped to the image; strided-blur's reflect padding folds back inside."""
    net = positive(
        build_net(in_channels=1, num_classes=3, image_size=40, downsample=downsample, head="gap")
    )
    erf = effective_receptive_field(net, [torch.rand(2, 1, 40, 40)])
    assert support(erf) == theoretical_square(last(net, 40), 40)


def test_effective_field_of_random_inputs_is_reproducible_and_restores_training() -> None:
    net = build_net(in_channels=1, num_classes=3, image_size=32).train()
    first = effective_receptive_field(net, random_batches((1, 32, 32), count=3, batch_size=2))
    again = effective_receptive_field(net, random_batches((1, 32, 32), count=3, batch_size=2))
    assert net.training
    torch.testing.assert_close(first, again)
    assert [b.shape[0] for b in random_batches((1, 8, 8), count=5, batch_size=2)] == [2, 2, 1]
    with pytest.raises(ValueError, match="no inputs"):
        effective_receptive_field(net, [])


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spatial_pyramid_pool_against_a_loop(mode: str) -> None:
    x = torch.randn(2, 3, 8, 8)
    out = SpatialPyramidPool2d((1, 2, 4), mode)(x)
    reduce = torch.amax if mode == "max" else torch.mean
    expected = []
    for g in (1, 2, 4):
        cell = 8 // g
        level = torch.stack(
            [
                reduce(x[:, :, i * cell : (i + 1) * cell, j * cell : (j + 1) * cell], dim=(2, 3))
                for i in range(g)
                for j in range(g)
            ],
            dim=-1,
        )  # [B, C, g * g], row-major cells, as flatten(1) of [B, C, g, g]
        expected.append(level.flatten(1))
    torch.testing.assert_close(out, torch.cat(expected, dim=1))
    assert out.shape == (2, 3 * 21)


def test_spp_head_takes_any_size_and_rejects_bad_options() -> None:
    net = build_net(in_channels=1, num_classes=4, image_size=32, head="spp", downsample="aps")
    assert net.head.fc.in_features == 128 * 21 and not net.head.fixed_size
    for size in (24, 32, 56):
        assert net(torch.randn(2, 1, size, size)).shape == (2, 4)
    with pytest.raises(ValueError, match="unknown mode 'sum'"):
        SpatialPyramidPool2d(mode="sum")
    with pytest.raises(ValueError, match="levels=\\(0,\\)"):
        SpatialPyramidPool2d(levels=(0,))


def test_every_downsampler_has_a_rule() -> None:
    for backbone in ("small-cnn", "resnet18"):
        for downsample in DOWNSAMPLERS:
            net = build_net(
                backbone, in_channels=1, num_classes=2, image_size=16, downsample=downsample
            )
            assert receptive_field(net, 16)[-1].field.jump == 8
