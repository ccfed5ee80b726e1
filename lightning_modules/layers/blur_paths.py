"""How :class:`BlurPool2d` computes its blur: the one table of measured choices.

The blur can run as dense matrix products (``dense``: padding, blur and stride folded into one
small matrix per axis), as a depthwise convolution (``conv``: zero padding fused into
``conv2d``, other paddings padded first), or as that convolution in channels-last memory
(``conv-channels-last``). Which one is fastest depends on the padding, the filter, the map
size and the number of threads, and the peers that fuse zero padding into ``conv2d`` (kornia)
win where the dense path loses, so the layer picks the path per call from :data:`CHOICES`.

Every entry holds the forward + backward milliseconds behind it (float32, CPU, median of
interleaved rounds of ``python recipes/benchmark.py``'s layer candidates). Settings that were
not measured (other dtypes, other devices, compiled graphs) keep the dense path up to
``DENSE_MAX_SIDE``, the rule measured before the table existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import torch

DENSE = "dense"
CONV = "conv"
CONV_CHANNELS_LAST = "conv-channels-last"
PATHS = (DENSE, CONV, CONV_CHANNELS_LAST)

# Up to this side a blur is two matrix products where nothing was measured (their cost grows
# with the side, so larger maps take the padded depthwise convolution).
DENSE_MAX_SIDE = 256
# Up to this many output pixels per plane the two products are merged into one (Kronecker).
KRONECKER_MAX_OUTPUTS = 64
# Maps up to this side use the 32-pixel rows of the table, larger ones the 56-pixel rows.
SMALL_MAP_SIDE = 40


@dataclass(frozen=True)
class Choice:
    """The path of one setting and the measurement that chose it (ms per call)."""

    path: str
    measured: str


# (zero padding?, threads: 1 or 2 (2 or more), map side: 32 (up to SMALL_MAP_SIDE) or 56,
# filter size) -> the path. ``measured``: forward + backward ms of dense / conv / conv in
# channels-last, and of the fastest peer with the same padding (kornia BlurPool2D for zero,
# antialiased-cnns BlurPool for reflect), float32, inputs 64x64x32x32, 16x128x56x56 and
# 32x256x56x56 ("a; b" for the two 56 px inputs). Interleaved medians of 9 rounds on a
# 2-core Xeon shared with other jobs (load average about 20), so the absolute times are
# inflated and only the per-row order counts. Padding other than zero costs the dense path
# nothing (it is folded into the matrices) and the convolution an extra padded copy, so the
# reflect measurements stand for replicate and circular too.
CHOICES = MappingProxyType(
    {
        (True, 1, 32, 3): Choice(CONV, "48.2 / 33.2 / 60.3, kornia 31.4 (the same conv2d)"),
        (True, 1, 32, 4): Choice(DENSE, "77.9 / 100.3 / 98.8, kornia 160.1"),
        (True, 1, 32, 5): Choice(CONV, "70.9 / 64.1 / 92.3, kornia 61.8 (the same conv2d)"),
        (True, 1, 56, 3): Choice(
            CONV_CHANNELS_LAST, "156 / 98 / 81, kornia 83; 1490 / 2527 / 1737, kornia 1963"
        ),
        (True, 1, 56, 4): Choice(
            CONV_CHANNELS_LAST, "218 / 151 / 120, kornia 543; 883 / 1028 / 776, kornia 1935"
        ),
        (True, 2, 32, 3): Choice(CONV_CHANNELS_LAST, "234 / 336 / 248, kornia 275"),
        (True, 2, 32, 4): Choice(DENSE, "301 / 448 / 301, kornia 734"),
        (True, 2, 32, 5): Choice(CONV_CHANNELS_LAST, "234 / 347 / 238, kornia 332"),
        (True, 2, 56, 3): Choice(
            CONV_CHANNELS_LAST, "309 / 335 / 220, kornia 340; 1643 / 1976 / 1604, kornia 1957"
        ),
        (True, 2, 56, 4): Choice(
            CONV_CHANNELS_LAST, "348 / 334 / 245, kornia 541; 1719 / 2289 / 1629, kornia 3885"
        ),
        (False, 1, 32, 3): Choice(DENSE, "66.7 / 268 (padded conv), antialiased-cnns 256"),
        (False, 1, 32, 4): Choice(DENSE, "66.9 / 217 (padded conv), antialiased-cnns 178"),
        (False, 1, 32, 5): Choice(DENSE, "69.8 / 148 (padded conv), antialiased-cnns 137"),
        (False, 1, 56, 3): Choice(DENSE, "158, antialiased-cnns 304; 1204, antialiased-cnns 3721"),
        (False, 1, 56, 4): Choice(DENSE, "214, antialiased-cnns 446; 915, antialiased-cnns 1907"),
        (False, 2, 32, 3): Choice(DENSE, "290, antialiased-cnns 631"),
        (False, 2, 32, 4): Choice(DENSE, "237, antialiased-cnns 564"),
        (False, 2, 32, 5): Choice(DENSE, "286, antialiased-cnns 667"),
        (False, 2, 56, 3): Choice(DENSE, "290, antialiased-cnns 718; 1439, antialiased-cnns 3574"),
        (False, 2, 56, 4): Choice(DENSE, "444, antialiased-cnns 513"),
    }
)


def choose_path(x: torch.Tensor, filt_size: int, pad_type: str, threads: int | None = None) -> str:
    """The path :class:`BlurPool2d` takes for input ``x`` (see :data:`CHOICES`)."""
    side = max(x.shape[-2:])
    measured = x.device.type == "cpu" and x.dtype == torch.float32
    # torch.compile keeps the dense rule: it folds the matrices into constants of the graph.
    if not measured or torch.compiler.is_compiling():
        return DENSE if side <= DENSE_MAX_SIDE else CONV
    threads = torch.get_num_threads() if threads is None else threads
    key = (
        pad_type == "zero",
        1 if threads == 1 else 2,
        32 if side <= SMALL_MAP_SIDE else 56,
        min(filt_size, 5) if side <= SMALL_MAP_SIDE else min(filt_size, 4),
    )
    choice = CHOICES.get(key)
    if choice is None:
        return DENSE if side <= DENSE_MAX_SIDE else CONV
    if choice.path == DENSE and side > DENSE_MAX_SIDE:
        return CONV
    return choice.path
