"""Export a trained network for deployment: ``torch.export`` and ONNX, checked by onnxruntime.

Reflect padding and the data-dependent phase choice of APS are where exports of
anti-aliased networks usually break; every layer and downsampling mode here exports with a
static input shape (the phase choice becomes an ``ArgMax`` and a gather in the graph). A
network that still fails is reported in one line naming its downsampling mode and the
alternative. ONNX needs the ``export`` extra: ``pip install -e .[export]``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

OPSET = 18  # >= 17; the lowest opset torch's ONNX exporter writes without a conversion pass
ATOL = 1e-5  # onnxruntime vs PyTorch on CPU, float32


class ExportError(Exception):
    """A network that cannot be exported; the message names the mode and the alternative."""


def _describe(net: nn.Module) -> str:
    """The network's class, with its downsampling mode when it is a backbone."""
    mode = getattr(net, "downsample", None)
    name = type(net).__name__
    return f"{name}(downsample={mode!r})" if isinstance(mode, str) else name


def export_program(net: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``net`` in eval mode, for inputs shaped like ``example``.

    Traced without autograd, as the deployed graph runs: layers with a faster path for
    training (APS computing only the kept phase) then trace their inference path."""
    try:
        with torch.no_grad():
            return torch.export.export(net.eval(), (example,), strict=False)
    except Exception as err:  # any tracing failure: say which network and what else to do
        raise ExportError(
            f"{_describe(net)} cannot be exported with torch.export "
            f"({type(err).__name__}: {str(err).splitlines()[0]}); "
            "keep the model in PyTorch (torch.jit.script or eager) or pick another --downsample"
        ) from None


def export_onnx(
    net: nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int = OPSET,
    program: torch.export.ExportedProgram | None = None,
) -> Path:
    """Write ``net`` as an ONNX file (opset ``opset``) for inputs shaped like ``example``.

    ``program``: its :func:`export_program`, when already made (else it is made here).
    """
    if opset < 17:
        raise ValueError(f"--opset {opset}: pass 17 or later (reflect padding needs opset 17+)")
    program = program or export_program(net, example)
    try:
        onnx = torch.onnx.export(program, (example,), dynamo=True, opset_version=opset)
    except ImportError as err:
        raise ExportError(
            f"ONNX export needs onnx and onnxscript ({err}): pip install -e .[export]"
        ) from None
    except Exception as err:  # the exporter's own failure, reported in one line
        raise ExportError(
            f"{_describe(net)} cannot be exported to ONNX opset {opset} "
            f"({type(err).__name__}: {str(err).splitlines()[0]}); "
            "use its torch.export program (torch.export.save) or pick another --downsample"
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(str(path))
    return path


def run_onnx(path: Path, example: torch.Tensor) -> torch.Tensor:
    """The ONNX file's output for ``example`` under onnxruntime on CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = (i.name for i in session.get_inputs())
    (out,) = session.run(None, {name: example.numpy()})
    return torch.from_numpy(out)


def check_onnx(net: nn.Module, path: Path, example: torch.Tensor, atol: float = ATOL) -> float:
    """The largest difference between onnxruntime and PyTorch; fails above ``atol``."""
    with torch.inference_mode():
        expected = net.eval()(example)
    diff = float((run_onnx(path, example) - expected).abs().max())
    if diff > atol:
        raise ExportError(
            f"{_describe(net)}: onnxruntime differs from PyTorch by {diff:.2e} (> {atol:.0e})"
        )
    return diff
