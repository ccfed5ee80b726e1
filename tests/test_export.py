"""Deployment: every layer (in every padding) and both backbones (in every downsampling mode)
export with torch.export and to ONNX, and onnxruntime matches PyTorch within 1e-5."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from invariance_recipes.lightning_modules.layers import (
    PAD_TYPES,
    BlurPool2d,
    ConvBlurPool2d,
    MaxBlurPool2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
    SameMaxPool2d,
)
from invariance_recipes.lightning_modules.nets import BACKBONES, build_net
from invariance_recipes.lightning_modules.nets.downsample import DOWNSAMPLERS
from invariance_recipes.lightning_modules.nets.options import PADDING_MODES
from invariance_recipes.publish.export import (
    ATOL,
    OPSET,
    ExportError,
    check_onnx,
    export_onnx,
    export_program,
)

C = 3
# Reflect and circular padding are where exports break; zero and replicate are plain F.pad.
PADS = ("reflect", "circular")
assert set(PADS) <= set(PAD_TYPES)
PADDED: dict[str, Callable[[str], nn.Module]] = {
    "BlurPool2d": lambda pad: BlurPool2d(C, 4, 2, pad),
    "MaxBlurPool2d": lambda pad: MaxBlurPool2d(C, 2, 3, 2, pad),
    "MaxPolyphasePool2d": lambda pad: MaxPolyphasePool2d(C, 2, 2, 3, "l2", pad),
    "PolyphaseDownsample2d": lambda pad: PolyphaseDownsample2d(C, 2, 1, "l2", pad),
}
LAYERS = {
    **{
        f"{name}-{pad}": (lambda f=f, pad=pad: f(pad)) for name, f in PADDED.items() for pad in PADS
    },
    **{
        f"ConvBlurPool2d-{m}": (lambda m=m: ConvBlurPool2d(C, 4, 3, 2, 3, m)) for m in PADDING_MODES
    },
    **{f"SameMaxPool2d-circular={c}": (lambda c=c: SameMaxPool2d(2, c)) for c in (False, True)},
}


def roundtrip(net: nn.Module, example: torch.Tensor, tmp_path: Path) -> None:
    """torch.export and ONNX both reproduce the eager output within ATOL (the exported graph
    may sum in another order than eager, e.g. APS's kept-phase path: float rounding only)."""
    net = net.eval()
    with torch.inference_mode():
        expected = net(example)
    program = export_program(net, example)
    torch.testing.assert_close(program.module()(example), expected, rtol=0, atol=ATOL)
    path = export_onnx(net, example, tmp_path / "net.onnx", program=program)
    import onnx

    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert check_onnx(net, path, example) <= ATOL
    # another input of the same shape: the graph follows the data (APS picks other phases)
    other = torch.randn_like(example).roll(1, dims=-1)
    assert check_onnx(net, path, other) <= ATOL


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_exports(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    roundtrip(LAYERS[name](), torch.randn(2, C, 15, 15), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("downsample", list(DOWNSAMPLERS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_backbone_and_downsampling_mode_exports(
    backbone: str, downsample: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    channels, size = (1, 28) if backbone == "small-cnn" else (3, 32)
    # circular padding with APS: the configuration that is exactly shift-invariant
    padding = "circular" if downsample == "aps" else "zero"
    net = build_net(
        backbone,
        in_channels=channels,
        num_classes=10,
        image_size=size,
        downsample=downsample,
        padding_mode=padding,
    )
    example = torch.randn(2, channels, size, size)
    if DOWNSAMPLERS[downsample].onnx:
        roundtrip(net, example, tmp_path)
        return
    # the registry says it does not convert: torch.export still holds it, and the ONNX
    # converter refuses in one line naming the mode
    net = net.eval()
    with torch.inference_mode():
        expected = net(example)
    program = export_program(net, example)
    torch.testing.assert_close(program.module()(example), expected, rtol=0, atol=ATOL)
    with pytest.raises(ExportError) as err:
        export_onnx(net, example, tmp_path / "net.onnx", program=program)
    message = str(err.value)
    assert f"downsample={downsample!r}" in message and "cannot be exported to ONNX" in message
    assert "torch.export.save" in message and "\n" not in message


class DataDependentBranch(nn.Module):
    """Python control flow on a value: what no static graph can hold."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


def test_a_network_that_cannot_export_says_so_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as err:
        export_program(DataDependentBranch(), torch.randn(1, 1, 4, 4))
    message = str(err.value)
    assert "DataDependentBranch cannot be exported with torch.export" in message
    assert "torch.jit.script or eager" in message and "\n" not in message
    with pytest.raises(ValueError, match="--opset 16: pass 17 or later"):
        export_onnx(BlurPool2d(1), torch.randn(1, 1, 8, 8), tmp_path / "x.onnx", opset=16)
    assert OPSET >= 17
