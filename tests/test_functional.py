"""One harness for the functional twins: each metric as a class (fed in several batches), as its
function (one call) and as a plain per-sample loop written here, in float32 and float64; each
layer function against its class and a loop over output pixels. The DDP half of the harness is
tests/test_metrics_ddp.py (the classes' states summed over two gloo processes)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from invariance_recipes.lightning_modules import functional as IF
from invariance_recipes.lightning_modules.layers import BlurPool2d, MaxBlurPool2d
from invariance_recipes.lightning_modules.metrics import (
    FlipRate,
    MeanAbsoluteChange,
    ShiftConsistency,
)


def consistency_loop(a: Tensor, b: Tensor) -> float:
    agree = [
        int(max(range(len(p)), key=p.__getitem__) == max(range(len(q)), key=q.__getitem__))
        for p, q in zip(a.tolist(), b.tolist(), strict=True)
    ]
    return sum(agree) / len(agree)


def flip_loop(a: Tensor, b: Tensor) -> float:
    return 1.0 - consistency_loop(a, b)


def mac_loop(a: Tensor, b: Tensor) -> float:
    total = 0.0
    for p, q in zip(a.tolist(), b.tolist(), strict=True):
        ep, eq = [math.exp(v) for v in p], [math.exp(v) for v in q]
        c = max(range(len(p)), key=p.__getitem__)
        total += abs(ep[c] / sum(ep) - eq[c] / sum(eq))
    return total / len(a)


@dataclass(frozen=True)
class Twin:
    make: Callable[[], object]  # the class form
    function: Callable[[Tensor, Tensor], Tensor]
    loop: Callable[[Tensor, Tensor], float]


TWINS = {
    "shift_consistency": Twin(lambda: ShiftConsistency(max_shift=2), IF.shift_consistency, consistency_loop),
    "flip_rate": Twin(FlipRate, IF.flip_rate, flip_loop),
    "mean_absolute_change": Twin(MeanAbsoluteChange, IF.mean_absolute_change, mac_loop),
}  # fmt: skip


def scores(dtype: torch.dtype, seed: int) -> tuple[Tensor, Tensor]:
    """Logits of 37 samples and of their 'shifted' copies: about a third change class."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randn(37, 5, generator=g, dtype=torch.float64)
    second = first + 0.8 * torch.randn(37, 5, generator=g, dtype=torch.float64)
    return first.to(dtype), second.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(TWINS))
def test_metric_class_function_and_loop_agree(name: str, dtype: torch.dtype) -> None:
    twin = TWINS[name]
    a, b = scores(dtype, seed=len(name))
    expected = twin.loop(a.double(), b.double())
    assert 0.05 < expected < 0.95 or name == "mean_absolute_change"  # a test that can fail
    functional = twin.function(a, b)
    metric = twin.make()
    for part_a, part_b in zip(a.split(10), b.split(10), strict=True):  # batches of 10, 10, 10, 7
        metric.update(part_a, part_b)
    from_class = metric.compute()
    exact = dtype == torch.float64 and name == "mean_absolute_change"  # counts divide in float32
    tolerance = 1e-12 if exact else 1e-6
    assert functional.item() == pytest.approx(expected, abs=tolerance)
    assert from_class.item() == pytest.approx(expected, abs=1e-6)  # states are float32
    if name != "mean_absolute_change":  # class indices give the same counts as scores
        assert twin.function(a.argmax(1), b.argmax(1)) == functional
    assert functional.dtype == (torch.float32 if name != "mean_absolute_change" else dtype)


@pytest.mark.parametrize("name", list(TWINS))
def test_functions_reject_mismatched_samples_in_one_line(name: str) -> None:
    with pytest.raises(ValueError, match="must hold the same samples") as error:
        TWINS[name].function(torch.randn(4, 3), torch.randn(5, 3))
    assert "\n" not in str(error.value)


def blur_loop(x: Tensor, taps: list[float], stride: int) -> Tensor:
    """Each output pixel as the weighted sum of its reflect-padded window, one at a time."""
    k = len(taps)
    before, after = (k - 1) // 2, k // 2
    padded = torch.nn.functional.pad(x, (before, after, before, after), mode="reflect")
    h, w = math.ceil(x.shape[-2] / stride), math.ceil(x.shape[-1] / stride)
    out = torch.zeros(*x.shape[:2], h, w, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            for u in range(k):
                for v in range(k):
                    out[..., i, j] += (
                        taps[u] * taps[v] * padded[..., i * stride + u, j * stride + v]
                    )
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("filt_size", "taps"), [(3, [1, 2, 1]), (4, [1, 3, 3, 1])])
def test_blur_pool_function_class_and_loop_agree(
    filt_size: int, taps: list[int], dtype: torch.dtype
) -> None:
    x = torch.randn(2, 3, 9, 10, generator=torch.Generator().manual_seed(filt_size), dtype=dtype)
    normalized = [t / sum(taps) for t in taps]
    expected = blur_loop(x, normalized, 2)
    functional = IF.blur_pool2d(x, filt_size=filt_size)
    from_class = BlurPool2d(3, filt_size, dtype=dtype)(x)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    assert functional.dtype == dtype
    torch.testing.assert_close(functional, expected, rtol=0, atol=tolerance)
    assert torch.equal(functional, from_class)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_blur_pool_function_matches_class(dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 11, 11, generator=torch.Generator().manual_seed(1), dtype=dtype)
    expected = MaxBlurPool2d(3, 3, 3, dtype=dtype)(x)
    assert torch.equal(IF.max_blur_pool2d(x, max_pool_size=3, filt_size=3), expected)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-torch.inf)
    dense_max = torch.nn.functional.max_pool2d(padded, 3, stride=1)
    torch.testing.assert_close(expected, blur_loop(dense_max, [0.25, 0.5, 0.25], 2))
    with pytest.raises(ValueError, match=r"needs \[batch, channels, height, width\]"):
        IF.max_blur_pool2d(x[0])


def test_functional_needs_torch_only() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from invariance_recipes.lightning_modules import functional\n"
        "assert not {'torchmetrics', 'lightning'} & set(sys.modules), sys.modules.keys()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
