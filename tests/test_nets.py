"""Networks from build_net: every option runs, APS networks are exactly shift-invariant,
blurring makes a stride-2 stage stable under 1-pixel shifts, and bad options fail clearly."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invariance_recipes.lightning_modules.layers import (
    AliasFreeActivation,
    BlurPool2d,
    IdealLowPassDownsample2d,
    LearnablePolyphaseDownsample2d,
    MaxBlurPool2d,
    PolyphaseDownsample2d,
    PolyphaseFollower2d,
    PolyphaseScoringNet,
    SameMaxPool2d,
)
from invariance_recipes.lightning_modules.nets import (
    BACKBONES,
    DOWNSAMPLERS,
    HEADS,
    PADDING_MODES,
    NetOptions,
    build_net,
)

DOWNSAMPLES = tuple(DOWNSAMPLERS)
HEAD_NAMES = tuple(HEADS)

SMALL = {"widths": (8, 16, 16)}


def circular_shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, (dy, dx), dims=(-2, -1))


def forward_backward(net: torch.nn.Module, channels: int, size: int = 32) -> None:
    x = torch.randn(2, channels, size, size)
    logits = net(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("downsample", DOWNSAMPLES)
def test_small_cnn_every_option_runs_forward_and_backward(
    downsample: str, head: str, padding_mode: str
) -> None:
    for channels in (1, 3):
        net = build_net(
            in_channels=channels,
            num_classes=10,
            image_size=32,
            downsample=downsample,
            head=head,
            padding_mode=padding_mode,
        )
        forward_backward(net, channels)


@pytest.mark.parametrize(("downsample", "head"), list(itertools.product(DOWNSAMPLES, HEADS)))
@pytest.mark.slow
def test_resnet18_every_option_runs_forward_and_backward(downsample: str, head: str) -> None:
    index = DOWNSAMPLES.index(downsample) * len(HEADS) + HEAD_NAMES.index(head)
    padding_mode = PADDING_MODES[index % len(PADDING_MODES)]
    channels = (1, 3)[index % 2]
    net = build_net(
        "resnet18",
        in_channels=channels,
        num_classes=10,
        image_size=32,
        downsample=downsample,
        head=head,
        padding_mode=padding_mode,
    )
    forward_backward(net, channels)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("image_size", [8, 13, 28])
def test_flatten_head_fits_every_downsample_at_odd_and_even_sizes(
    backbone: str, image_size: int
) -> None:
    for downsample in DOWNSAMPLES:
        net = build_net(
            backbone, in_channels=1, num_classes=10, image_size=image_size, downsample=downsample
        ).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 1, image_size, image_size)).shape == (1, 10)
        side = math.ceil(image_size / net.total_stride)
        assert net.head.fc.in_features == side * side * (512 if backbone == "resnet18" else 128)


# Parameters a method learns on its own, counted independently for widths (32, 64, 128):
# LPS's scoring net is two 3x3 convolutions with bias per stage (c -> c -> c), the alias-free
# quadratic activation has three coefficients per channel of each conv-BN unit.
OWN_PARAMETERS = {
    "lps": sum(2 * (9 * c * c + c) for c in (32, 64, 128)),
    "alias-free": sum(3 * c for c in (32, 64, 128)),
}


def test_every_small_cnn_downsample_has_the_same_parameters_besides_its_own() -> None:
    counts = {
        d: sum(
            p.numel()
            for p in build_net(
                in_channels=3, num_classes=10, image_size=32, downsample=d
            ).parameters()
        )
        - OWN_PARAMETERS.get(d, 0)
        for d in DOWNSAMPLES
    }
    assert len(set(counts.values())) == 1, counts


def test_state_dict_round_trips_and_excludes_blur_filters() -> None:
    options = {"in_channels": 1, "num_classes": 10, "image_size": 32, "downsample": "blur"}
    first, second = build_net(**options), build_net(**options)
    assert not any(key.endswith("filt") for key in first.state_dict())
    second.load_state_dict(first.state_dict())
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(first.eval()(x), second.eval()(x))


def aps_net(
    channels: int, filt_size: int, seed: int, backbone: str = "small-cnn"
) -> torch.nn.Module:
    torch.manual_seed(seed)
    extra = SMALL if backbone == "small-cnn" else {}
    net = build_net(
        backbone,
        in_channels=channels,
        num_classes=5,
        image_size=32,
        downsample="aps",
        head="gap",
        padding_mode="circular",
        filt_size=filt_size,
        **extra,
    )
    return net.eval()


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    multiple=st.integers(1, 4),
    channels=st.sampled_from([1, 3]),
    filt_size=st.sampled_from([1, 3, 4]),
    data=st.data(),
)
def test_aps_circular_gap_small_cnn_is_invariant_to_circular_shifts(
    seed: int, multiple: int, channels: int, filt_size: int, data: st.DataObject
) -> None:
    # float64: two phases whose norms differ by a few 1e-8 (seed 2166, one channel, 4 taps,
    # 24 px) are otherwise chosen by the rounding of a 32-bit sum, which the shift reorders
    net = aps_net(channels, filt_size, seed).double()
    size = multiple * net.total_stride
    dy = data.draw(st.integers(0, size - 1), label="dy")
    dx = data.draw(st.integers(0, size - 1), label="dx")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, size, size, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(circular_shift(x, dy, dx)), net(x), rtol=1e-9, atol=1e-12)


def test_aps_circular_gap_small_cnn_is_invariant_to_all_shifts_of_an_image() -> None:
    net = aps_net(1, 4, seed=0)
    x = torch.randn(1, 1, 16, 16)
    shifted = torch.cat([circular_shift(x, dy, dx) for dy in range(16) for dx in range(16)])
    with torch.no_grad():
        logits = net(shifted)
    torch.testing.assert_close(logits, logits[:1].expand_as(logits), rtol=1e-4, atol=1e-5)


def test_aps_circular_gap_resnet18_is_invariant_to_circular_shifts() -> None:
    net = aps_net(3, 3, seed=1, backbone="resnet18")
    x = torch.randn(1, 3, 16, 16)
    shifts = [(0, 0), (1, 0), (0, 1), (3, 5), (8, 7), (15, 2)]
    shifted = torch.cat([circular_shift(x, dy, dx) for dy, dx in shifts])
    with torch.no_grad():
        logits = net(shifted)
    torch.testing.assert_close(logits, logits[:1].expand_as(logits), rtol=1e-4, atol=1e-5)


def test_plain_aps_shortcut_without_shared_phase_would_break_invariance() -> None:
    # Control for the test above: with max-pooling downsampling the same network is not
    # invariant, so that test can fail.
    torch.manual_seed(1)
    net = build_net(
        "resnet18", in_channels=3, num_classes=5, image_size=16, head="gap", padding_mode="circular"
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(net(circular_shift(x, 1, 0)), net(x), rtol=1e-4, atol=1e-5)


def relative_change_under_one_pixel_shift(downsample: str) -> float:
    """||f(T x) - f(x)|| / ||f(x)|| for one stride-2 stage f and a 1-pixel shift T.

    A stride-2 output cannot move by half a pixel; an anti-aliased stage changes little
    (its output is smooth), an aliasing one jumps to another polyphase component.
    """
    torch.manual_seed(0)
    net = build_net(
        in_channels=1,
        num_classes=10,
        image_size=32,
        widths=(16,),
        downsample=downsample,
        head="gap",
        padding_mode="circular",
    ).eval()
    stage = net.features[0]
    x = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, moved = stage(x), stage(circular_shift(x, 0, 1))
    return ((moved - out).norm() / out.norm()).item()


@pytest.mark.parametrize(
    ("aliasing", "antialiased"), [("strided", "strided-blur"), ("max", "blur")]
)
def test_blurring_reduces_the_change_of_a_stride_two_stage_under_a_one_pixel_shift(
    aliasing: str, antialiased: str
) -> None:
    plain = relative_change_under_one_pixel_shift(aliasing)
    blurred = relative_change_under_one_pixel_shift(antialiased)
    assert plain > 1.5 * blurred, (plain, blurred)


@pytest.mark.parametrize("downsample", ["blur", "strided-blur"])
def test_resnet18_downsampling_blocks_blur_before_conv2_and_in_the_shortcut(
    downsample: str,
) -> None:
    # Zhang's anti-aliased BasicBlock: conv1 at stride 1, BN, ReLU, BlurPool, conv2; the
    # shortcut is BlurPool then the 1x1 convolution; no max-pool in the block.
    net = build_net("resnet18", in_channels=3, num_classes=10, image_size=32, downsample=downsample)
    block = net.layer2[0]
    assert block.conv1.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    assert type(block.step) is BlurPool2d and type(block.shortcut) is BlurPool2d
    assert block.conv1.padding_mode == "zeros"
    assert not any(isinstance(m, torch.nn.MaxPool2d | MaxBlurPool2d) for m in net.modules())


@pytest.mark.parametrize(
    ("downsample", "step", "shortcut"),
    [
        ("aps", PolyphaseDownsample2d, PolyphaseDownsample2d),
        ("lps", LearnablePolyphaseDownsample2d, PolyphaseFollower2d),
        ("alias-free", IdealLowPassDownsample2d, IdealLowPassDownsample2d),
    ],
)
def test_resnet18_blocks_follow_the_published_layouts(downsample: str, step, shortcut) -> None:
    # Chaman & Dokmanic's APS block and the LPS block: the selection right after the first
    # ReLU, no max-pool in the main path, the shortcut on the same grid.
    net = build_net("resnet18", in_channels=3, num_classes=10, image_size=32, downsample=downsample)
    for layer in (net.layer2, net.layer3, net.layer4):
        assert type(layer[0].step) is step and type(layer[0].shortcut) is shortcut
    assert not any(isinstance(m, torch.nn.MaxPool2d | SameMaxPool2d) for m in net.modules())


def test_alias_free_networks_use_the_alias_free_activation_everywhere() -> None:
    for backbone in BACKBONES:
        net = build_net(
            backbone, in_channels=1, num_classes=10, image_size=32, downsample="alias-free"
        )
        assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
        assert any(isinstance(m, AliasFreeActivation) for m in net.modules())


def test_lps_network_trains_its_scoring_nets_and_evaluates_deterministically() -> None:
    torch.manual_seed(0)
    for backbone in BACKBONES:
        net = build_net(backbone, in_channels=1, num_classes=10, image_size=16, downsample="lps")
        x = torch.randn(4, 1, 16, 16)
        net.train()(x).square().mean().backward()
        scorers = [m for m in net.modules() if isinstance(m, PolyphaseScoringNet)]
        assert len(scorers) == 3
        for scorer in scorers:
            grads = {name: p.grad for name, p in scorer.named_parameters()}
            # the last bias raises every phase's score alike, which the softmax over the phases
            # ignores: its gradient is zero up to rounding, every other one is not
            last_bias = grads.pop("conv2.bias")
            assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), backbone
            assert last_bias.abs().max() < 1e-3 * grads["conv2.weight"].abs().max(), backbone
        net.eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("backbone", "downsample"), [("small-cnn", d) for d in DOWNSAMPLES] + [("resnet18", "aps")]
)
@pytest.mark.slow
def test_networks_compile_to_one_graph(backbone: str, downsample: str) -> None:
    net = build_net(
        backbone,
        in_channels=3,
        num_classes=10,
        image_size=32,
        downsample=downsample,
        padding_mode="circular",
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"backbone": "vgg"}, "unknown backbone 'vgg': choose one of small-cnn, resnet18"),
        ({"downsample": "maxpool"}, "unknown downsample 'maxpool': choose one of max, blur"),
        ({"head": "linear"}, "unknown head 'linear': choose one of flatten, mlp, gap, gmp"),
        ({"padding_mode": "replicate"}, "unknown padding_mode 'replicate': choose one of zero,"),
        ({"filt_size": 0}, "filt_size=0"),
        ({"filt_size": 8}, "filt_size=8"),
        ({"image_size": 4}, "image_size=4 is smaller than the total stride 8"),
        ({"backbone": "resnet18", "image_size": 4}, "image_size=4 is smaller than resnet18"),
        ({"widths": ()}, "widths=()"),
        ({"backbone": "resnet18", "widths": (8, 16)}, "has fixed stages"),
        ({"head": "mlp", "mlp_hidden": ()}, "mlp_hidden=()"),
        ({"head": "mlp", "dropout": 1.5}, "dropout=1.5"),
        ({"in_channels": 0}, "in_channels=0"),
    ],
)
def test_bad_options_raise_clear_errors(options: dict, match: str) -> None:
    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 32, **options}
    with pytest.raises(ValueError, match=match):
        build_net(**kwargs)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_inputs_raise_clear_errors(backbone: str) -> None:
    net = build_net(backbone, in_channels=3, num_classes=10, image_size=32)
    with pytest.raises(ValueError, match=r"takes \[batch, 3, height, width\] images"):
        net(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="built for image_size=32"):
        net(torch.randn(2, 3, 48, 48))
    gap = build_net(backbone, in_channels=3, num_classes=10, image_size=32, head="gap")
    assert gap.eval()(torch.randn(1, 3, 48, 40)).shape == (1, 10)
    with pytest.raises(ValueError, match="smaller than the network's total stride 8"):
        gap(torch.randn(2, 3, 4, 32))


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_lps_hidden_divisor_narrows_every_scoring_net(backbone: str) -> None:
    # The authors' ImageNet logits_channels: hidden = channels / 8 at every LPS layer.
    net = build_net(
        backbone,
        in_channels=1,
        num_classes=10,
        image_size=16,
        downsample="lps",
        lps_hidden_divisor=8,
    )
    scorers = [m for m in net.modules() if isinstance(m, PolyphaseScoringNet)]
    assert len(scorers) == 3
    for scorer in scorers:
        assert scorer.conv1.out_channels == max(1, scorer.conv1.in_channels // 8)
    forward_backward(net, 1, 16)
    with pytest.raises(ValueError, match="lps_hidden_divisor"):
        build_net(backbone, in_channels=1, num_classes=10, image_size=16, lps_hidden_divisor=0)


@pytest.mark.parametrize("backbone", ["small-cnn", "resnet18"])
def test_torchs_zeros_spelling_builds_the_zero_padded_network(backbone: str) -> None:
    """One border vocabulary: ``zero`` everywhere, and ``zeros`` (torch's name, which older
    checkpoints and commands store) builds the same network, whose convolutions pad with
    zeros in torch's own terms."""
    nets = []
    for spelling in ("zero", "zeros"):
        torch.manual_seed(0)
        net = build_net(
            backbone, in_channels=3, num_classes=10, image_size=32, padding_mode=spelling
        )
        assert NetOptions(padding_mode=spelling).padding_mode == "zero"
        padded = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and any(m.padding)]
        assert padded and all(m.padding_mode == "zeros" for m in padded)
        nets.append(net.eval())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(nets[0](x), nets[1](x))
