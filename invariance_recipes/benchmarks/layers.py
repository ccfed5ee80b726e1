"""The layers section: forward + backward of each downsampling layer of ours against the
peers a user would otherwise pick, with the same semantics, and against a memory-bound floor.

:data:`LAYERS` is the registry: adding a layer to the benchmark is one :class:`LayerBenchmark`
entry (its constructor and its peers). A peer whose package is not installed is skipped with a
note (the peers are the project's ``bench`` extra).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from types import MappingProxyType, ModuleType

import torch
from torch import Tensor, nn

from invariance_recipes.benchmarks.rows import Config, Row, compare, device_sync, shape_text
from invariance_recipes.benchmarks.timing import interleaved
from invariance_recipes.lightning_modules.layers import (
    AliasFreeActivation,
    BlurPool2d,
    IdealLowPassDownsample2d,
    LearnablePolyphaseDownsample2d,
    MaxBlurPool2d,
)

# Peer name -> the module its layers come from.
PEERS = {"timm": "timm.layers", "kornia": "kornia.filters", "antialiased-cnns": "antialiased_cnns"}
SAME = "same filter, stride and padding"


@dataclass(frozen=True)
class Baseline:
    """A layer to compare with: ``build(peer_module, channels, filt_size)``.

    ``peer`` is a key of :data:`PEERS`, or ``None`` for a plain PyTorch floor."""

    name: str  # "{filt}" is replaced by the filter size
    peer: str | None
    build: Callable[[ModuleType | None, int, int], nn.Module]
    target: float = 1.0  # the largest ratio ours / baseline aimed for
    note: str = SAME


@dataclass(frozen=True)
class LayerBenchmark:
    """One layer of ours: ``build(channels, filt_size)`` and the baselines it must match."""

    build: Callable[[int, int], nn.Module]
    baselines: tuple[Baseline, ...]


def _antialiased_max_blur(aa: ModuleType | None, channels: int, filt: int) -> nn.Module:
    return nn.Sequential(nn.MaxPool2d(2, 1), aa.BlurPool(channels, "reflect", filt, 2))


_BLUR_COST = Baseline(
    "BlurPool2d({filt}, circular)",
    None,
    lambda m, c, k: BlurPool2d(c, k, 2, "circular"),
    target=math.inf,
    note="cost row: the layer against a circular BlurPool of the same input; no speed goal",
)

LAYERS: Mapping[str, LayerBenchmark] = MappingProxyType(
    {
        "BlurPool2d({filt}, zero)": LayerBenchmark(
            lambda c, k: BlurPool2d(c, k, 2, "zero"),
            (
                Baseline(
                    "kornia BlurPool2D({filt})",
                    "kornia",
                    lambda m, c, k: m.BlurPool2D(k, 2),
                    note=f"{SAME} (kornia pads with zeros only; for even filters it pads "
                    "(k - 2) / 2 px after, which gives the same values on even sizes)",
                ),
            ),
        ),
        "BlurPool2d({filt}, reflect)": LayerBenchmark(
            lambda c, k: BlurPool2d(c, k, 2, "reflect"),
            (
                Baseline(
                    "antialiased-cnns BlurPool({filt})",
                    "antialiased-cnns",
                    lambda m, c, k: m.BlurPool(c, "reflect", k, 2),
                ),
                Baseline(
                    "timm BlurPool2d({filt})",
                    "timm",
                    lambda m, c, k: m.BlurPool2d(c, k, 2, "reflect"),
                    note=f"{SAME} (for even filters timm pads k / 2 px on both sides: one "
                    "more output row and column)",
                ),
                Baseline(
                    "avg_pool2d(2)",
                    None,
                    lambda m, c, k: nn.AvgPool2d(2),
                    target=2.0,
                    note="memory-bound floor: stride-2 average pooling",
                ),
            ),
        ),
        "MaxBlurPool2d(2, {filt}, zero)": LayerBenchmark(
            lambda c, k: MaxBlurPool2d(c, 2, k, 2, "zero"),
            (
                Baseline(
                    "kornia MaxBlurPool2D({filt})",
                    "kornia",
                    lambda m, c, k: m.MaxBlurPool2D(k, 2, max_pool_size=2),
                    note="kornia's max-pool is unpadded (one row and column fewer)",
                ),
            ),
        ),
        "MaxBlurPool2d(2, {filt}, reflect)": LayerBenchmark(
            lambda c, k: MaxBlurPool2d(c, 2, k, 2, "reflect"),
            (
                Baseline(
                    "antialiased-cnns MaxPool2d(2, 1) + BlurPool({filt})",
                    "antialiased-cnns",
                    _antialiased_max_blur,
                    note="as in antialiased-cnns' models: its max-pool is unpadded (one row "
                    "and column fewer)",
                ),
            ),
        ),
        # The newer strategies' layers: what each costs against the blur it would replace
        # (no speed goal: the ratio is the price of the strategy).
        "LearnablePolyphaseDownsample2d (training)": LayerBenchmark(
            lambda c, k: LearnablePolyphaseDownsample2d(c, 2),
            (_BLUR_COST,),
        ),
        "IdealLowPassDownsample2d": LayerBenchmark(
            lambda c, k: IdealLowPassDownsample2d(2),
            (_BLUR_COST,),
        ),
        "AliasFreeActivation (poly)": LayerBenchmark(
            lambda c, k: AliasFreeActivation(c),
            (_BLUR_COST,),
        ),
    }
)


def layer_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """Forward + backward of every :data:`LAYERS` entry and its baselines, interleaved."""
    peers = {name: import_peer(name, notes) for name in PEERS}
    dtypes = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" else [])
    rows = []
    for (shape, filt_sizes), dtype in itertools.product(cfg.layer_shapes, dtypes):
        x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        for filt in filt_sizes:
            steps: dict[str, Callable[[], object]] = {}
            comparisons = []
            for label, entry in LAYERS.items():
                ours = label.format(filt=filt)
                steps[ours] = forward_backward(entry.build(shape[1], filt), x)
                for base in entry.baselines:
                    if base.peer is not None and peers[base.peer] is None:
                        continue
                    name = base.name.format(filt=filt)
                    module = peers[base.peer] if base.peer is not None else None
                    if name not in steps:
                        steps[name] = forward_backward(base.build(module, shape[1], filt), x)
                    comparisons.append((ours, name, base.target, base.note))
            timings = interleaved(steps, cfg.rounds, cfg.min_block, device_sync(device))
            setting = f"{shape_text(shape)} {str(dtype).removeprefix('torch.')}, forward + backward"
            rows += [compare(timings, "layers", setting, *c) for c in comparisons]
    return rows


def forward_backward(layer: nn.Module, x: Tensor) -> Callable[[], object]:
    return gradient_step(layer.to(x.device, x.dtype), x)


def gradient_step(forward: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[], object]:
    """One call of ``forward`` on ``x`` and the gradient of a fixed random output direction."""
    grad = torch.randn_like(forward(x))
    return lambda: torch.autograd.grad(forward(x), x, grad)


def import_peer(name: str, notes: list[str]) -> ModuleType | None:
    try:
        return import_module(PEERS[name])
    except ImportError:
        note = (
            f"{name} is not installed: its rows are skipped "
            f"(pip install {name}, or the project's `bench` extra)."
        )
        if note not in notes:
            notes.append(note)
        return None
