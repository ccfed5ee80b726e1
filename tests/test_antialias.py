"""antialias() on torchvision families: every strided layer converted, parameters and
state dicts unchanged, and the converted blocks compute Zhang's anti-aliased layers."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from invariance_recipes.lightning_modules.layers import BlurPool2d
from invariance_recipes.lightning_modules.nets import antialias, build_net

STRIDED_TYPES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
FAMILIES = {
    "resnet18": (models.resnet18, 64),
    "vgg11": (models.vgg11, 32),
    "densenet121": (models.densenet121, 32),
    "mobilenet_v2": (models.mobilenet_v2, 32),
}


def strided_layers(model: nn.Module) -> set[str]:
    """Names of convolutions and pools whose stride is not 1 (pools default to the kernel)."""
    names = set()
    for name, m in model.named_modules():
        if isinstance(m, STRIDED_TYPES):
            stride = m.stride if m.stride is not None else m.kernel_size
            if stride not in (1, (1, 1)):
                names.add(name)
    return names


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def converted(request: pytest.FixtureRequest) -> tuple[nn.Module, nn.Module, list[str], int]:
    build, size = FAMILIES[request.param]
    torch.manual_seed(0)
    original = build(weights=None).eval()
    model, changes = antialias(original)
    return original, model, changes, size


# Zhang's released models keep their stem convolution strided (pool_only=True).
STEMS = {
    "resnet18": {"conv1"},
    "vgg11": set(),
    "densenet121": {"features.conv0"},
    "mobilenet_v2": {"features.0.0"},
}
# BlurPool layers in Zhang's pool_only models (antialiased_cnns: resnet.py, densenet.py,
# mobilenet.py, vgg.py), counted from their code.
ZHANG_BLURS = {"resnet18": 7, "vgg11": 5, "densenet121": 4, "mobilenet_v2": 4}


def family(model: nn.Module) -> str:
    return {
        models.ResNet: "resnet18",
        models.VGG: "vgg11",
        models.DenseNet: "densenet121",
        models.MobileNetV2: "mobilenet_v2",
    }[type(model)]


def test_every_strided_layer_is_reported_and_only_the_stem_is_left(converted) -> None:
    original, model, changes, _ = converted
    reported = {line.split(": ", 1)[0] for line in changes}
    assert reported == strided_layers(original)
    assert len(changes) == len(reported)
    assert strided_layers(model) == STEMS[family(original)]  # else only BlurPool2d subsamples
    blurs = sum(isinstance(m, BlurPool2d) for m in model.modules())
    assert blurs == ZHANG_BLURS[family(original)]


def test_layout_all_also_blurs_the_stem() -> None:
    model, changes = antialias(models.resnet18(weights=None), layout="all")
    assert strided_layers(model) == set()
    assert sum(isinstance(m, BlurPool2d) for m in model.modules()) == 8
    assert "conv1: stride 2 -> 1; BlurPool2d(stride 2) before maxpool" in changes


def test_parameters_and_state_dict_are_unchanged(converted) -> None:
    original, model, _, _ = converted
    assert parameter_count(model) == parameter_count(original)
    model.load_state_dict(original.state_dict(), strict=True)
    assert model.state_dict().keys() == original.state_dict().keys()


def test_converted_model_runs_with_the_original_output_shape(converted) -> None:
    original, model, _, size = converted
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert model(x).shape == original(x).shape == (2, 1000)


def test_original_is_left_untouched() -> None:
    original = models.resnet18(weights=None)
    antialias(original)
    assert original.conv1.stride == (2, 2) and original.layer2[0].conv1.stride == (2, 2)
    assert not any(isinstance(m, BlurPool2d) for m in original.modules())


def zhang_blur(x: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """Reference BlurPool (filt_size 4, reflect): pad 1 before and 2 after, depthwise conv."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = (taps[:, None] * taps[None, :] / 64).expand(x.shape[1], 1, 4, 4)
    return F.conv2d(
        F.pad(x, (1, 2, 1, 2), mode="reflect"), kernel, stride=stride, groups=x.shape[1]
    )


def test_resnet_block_computes_zhangs_antialiased_basic_block() -> None:
    torch.manual_seed(0)
    original = models.resnet18(weights=None).eval()
    block = antialias(original)[0].layer2[0].eval()
    ref = original.layer2[0]
    x = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        out = F.relu(ref.bn1(F.conv2d(x, ref.conv1.weight, padding=1)))
        out = ref.bn2(F.conv2d(zhang_blur(out), ref.conv2.weight, padding=1))
        shortcut = ref.downsample[1](F.conv2d(zhang_blur(x), ref.downsample[0].weight))
        torch.testing.assert_close(block(x), F.relu(out + shortcut))


def test_resnet_stem_stays_strided_and_max_pool_becomes_zhangs() -> None:
    torch.manual_seed(0)
    original = models.resnet18(weights=None).eval()
    model = antialias(original)[0].eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        stem = F.relu(original.bn1(F.conv2d(x, original.conv1.weight, stride=2, padding=3)))
        expected = zhang_blur(F.max_pool2d(stem, 2, stride=1))
        torch.testing.assert_close(model.maxpool(model.relu(model.bn1(model.conv1(x)))), expected)


def test_layout_all_blurs_the_stem_and_the_max_pool() -> None:
    torch.manual_seed(0)
    original = models.resnet18(weights=None).eval()
    model = antialias(original, layout="all")[0].eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        stem = F.relu(original.bn1(F.conv2d(x, original.conv1.weight, padding=3)))
        expected = zhang_blur(F.max_pool2d(zhang_blur(stem), 3, stride=1, padding=1))
        torch.testing.assert_close(model.maxpool(model.relu(model.bn1(model.conv1(x)))), expected)


def test_mobilenet_v2_blurs_after_relu6_of_its_strided_depthwise_conv() -> None:
    torch.manual_seed(0)
    original = models.mobilenet_v2(weights=None).eval()
    model = antialias(original)[0].eval()
    ref, new = original.features[2].conv[1], model.features[2].conv[1]
    assert isinstance(new[2][0], nn.ReLU6) and isinstance(new[2][1], BlurPool2d)
    x = torch.randn(1, ref[0].in_channels, 16, 16)
    with torch.no_grad():
        dense = F.conv2d(x, ref[0].weight, padding=1, groups=ref[0].groups)
        expected = zhang_blur(F.relu6(ref[1](dense)))
        torch.testing.assert_close(new(x), expected)


def test_densenet_transition_avg_pool_becomes_blurpool() -> None:
    model, changes = antialias(models.densenet121(weights=None))
    assert isinstance(model.features.transition1.pool, BlurPool2d)
    assert "features.transition1.pool: AvgPool2d(stride 2) -> BlurPool2d(stride 2)" in changes


def test_small_cnn_strided_network_is_converted_and_idempotent() -> None:
    net = build_net(in_channels=1, num_classes=10, image_size=32, downsample="strided")
    model, changes = antialias(net, layout="all")
    assert len(changes) == 3
    assert antialias(model)[1] == []
    x = torch.randn(2, 1, 32, 32)
    assert model(x).shape == (2, 10)


class UnknownStride(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.odd = nn.Conv2d(8, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(self.body(x))


def test_unknown_strided_layers_raise_or_warn_naming_them() -> None:
    with pytest.raises(
        ValueError, match="no rule for these strided layers: odd; pass strict=False"
    ):
        antialias(UnknownStride())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, changes = antialias(UnknownStride(), strict=False)
    assert any("odd" in str(w.message) and "stay strided" in str(w.message) for w in caught)
    assert [line.split(":")[0] for line in changes] == ["body.2"]
    assert model.odd.stride == (2, 2)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 8, 4, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"filt_size": 9}, "filt_size=9"),
        ({"pad_type": "same"}, "unknown pad_type 'same'"),
        ({"layout": "zhang"}, "unknown layout 'zhang': choose one of pool-only, all"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        antialias(nn.Sequential(nn.MaxPool2d(2)), **kwargs)


def executed_operations(model: nn.Module, size: int) -> tuple[list[tuple], int]:
    """The layers a forward pass runs, in order, as comparable descriptions, and their
    multiply-adds (convolutions, BlurPools as depthwise filters, linear layers)."""
    ops: list[tuple] = []
    macs = 0

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        kind = type(module).__name__
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size
            ops.append(("conv", module.in_channels, module.out_channels, k, module.stride))
            macs += output[0].numel() * module.in_channels // module.groups * k[0] * k[1]
        elif kind in ("BlurPool", "BlurPool2d"):
            ops.append(("blurpool", module.channels, module.filt_size, module.stride))
            macs += output[0].numel() * module.filt_size**2
        elif isinstance(module, nn.MaxPool2d):
            ops.append(("maxpool", module.kernel_size, module.stride, module.padding))
        elif isinstance(module, nn.Linear):
            ops.append(("linear", module.in_features, module.out_features))
            macs += module.in_features * module.out_features
        elif isinstance(module, nn.BatchNorm2d | nn.ReLU | nn.AdaptiveAvgPool2d):
            ops.append((kind,))

    for module in model.modules():
        module.register_forward_hook(record)
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    return ops, macs


def test_converted_resnet18_matches_the_antialiased_cnns_package() -> None:
    antialiased_cnns = pytest.importorskip("antialiased_cnns")  # the bench extra
    ours, ours_macs = executed_operations(antialias(models.resnet18(weights=None))[0], 96)
    theirs, theirs_macs = executed_operations(antialiased_cnns.resnet18(filter_size=4), 96)
    assert ours == theirs  # the same layers at the same positions of the forward pass
    assert abs(ours_macs - theirs_macs) <= 0.01 * theirs_macs
