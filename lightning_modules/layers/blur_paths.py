"""How :class:`BlurPool2d` computes its blur: the one table of measured choices.

The blur can run as dense matrix products (``dense``: padding, blur and stride folded into one
small matrix per axis), as a depthwise convolution (``conv``: zero padding fused into
``conv2d``, other paddings padded first), or as that convolution in channels-last memory
(``conv-channels-last``). Which one is fastest depends on the padding, the filter, the map
size and the number of threads, and the peers that fuse zero padding into ``conv2d`` (kornia)
win where the dense path loses, so the layer picks the path per call from :data:`CHOICES`.

Every entry holds the forward + backward milliseconds behind it (float32, CPU, median of
interleaved rounds of ``python recipes/benchmark.py --only blur-paths``). No setting measured
on an idle machine picks the channels-last convolution any more; it stays a candidate that
the section times, since the order changes with the machine. Settings that were
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
# filter size) -> the path with the least total time over the inputs of that side.
# ``measured``: forward + backward ms of dense / conv / conv in channels-last, and of the
# fastest peer with the same padding (kornia BlurPool2D for zero, antialiased-cnns BlurPool for
# reflect), float32, inputs 64x64x32x32, 16x128x56x56 and 32x256x56x56 ("a; b" for the two
# 56 px inputs), from `python recipes/benchmark.py --only blur-paths --out
# docs/benchmarks/blur-paths` (interleaved medians of 11 rounds on an idle 2-core Xeon; the
# file holds the run). Padding other than zero costs the dense path nothing (it is folded into
# the matrices) and the convolution an extra padded copy, so the reflect measurements stand for
# replicate and circular too.
#
# Zero padding takes the convolution everywhere: it is the very ``conv2d`` kornia runs, so it
# ties kornia on any machine, while the dense path's lead depends on the machine. On the Xeon
# the dense path was the faster one on several settings (the times below); on a 2-core AMD
# EPYC, at 1 thread (``docs/benchmarks/blur-paths-epyc``, beside two one-thread runs, so
# its 2-thread rows are too noisy to choose from), it took 1.15x kornia's time on
# 64x64x32x32 with 3 taps and 2.46x on 16x128x56x56, where the convolution took 0.807x and
# 0.403x the dense path's (on 32x256x56x56 the dense path stayed the faster, 0.695x
# kornia). ("EPYC" below: that run, 1 thread.)
_ZERO_PADDING = {
    (1, 32, 3): "5.943 / 6.631 / 10.17, kornia 6.183; EPYC 12 / 10 / 23.7, kornia 10.9",
    (1, 32, 4): "6.847 / 7.338 / 10.44, kornia 17.12; EPYC 13.6 / 12.4 / 24.5, kornia 21.1",
    (1, 32, 5): "5.359 / 6.512 / 10.67, kornia 6.67; EPYC 16.5 / 16.2 / 27.7, kornia 16.9",
    (1, 56, 3): "14.38 / 13.09 / 16.73, kornia 11.2; 112.8 / 143.7 / 144.8, kornia 144.3; "
    "EPYC 26.3 / 10.7 / 16.7, kornia 10.9; 173 / 241 / 195, kornia 239",
    (1, 56, 4): "15.08 / 12.11 / 17.96, kornia 26.03; 139.5 / 158.1 / 168.6, kornia 286.9; "
    "EPYC 33.1 / 14.5 / 20.4, kornia 24.9; 218 / 292 / 217, kornia 476",
    (2, 32, 3): "3.272 / 3.136 / 6.376, kornia 3.003",
    (2, 32, 4): "3.712 / 3.372 / 5.591, kornia 16.92",
    (2, 32, 5): "2.381 / 3.204 / 5.74, kornia 3.575",
    (2, 56, 3): "7.586 / 6.221 / 8.656, kornia 4.939; 75.15 / 97.26 / 88.28, kornia 87.72",
    (2, 56, 4): "9.987 / 5.71 / 10.61, kornia 23.47; 54.23 / 54.46 / 62.86, kornia 149",
}
CHOICES = MappingProxyType(
    {
        **{(True, *key): Choice(CONV, measured) for key, measured in _ZERO_PADDING.items()},
        (False, 1, 32, 3): Choice(DENSE, "6.302 / 22.45 / 28.11, antialiased-cnns 21.49"),
        (False, 1, 32, 4): Choice(DENSE, "6 / 24.19 / 31.81, antialiased-cnns 23.44"),
        (False, 1, 32, 5): Choice(DENSE, "6.632 / 24.99 / 32.86, antialiased-cnns 24.69"),
        (False, 1, 56, 3): Choice(
            DENSE,
            "15.51 / 33.91 / 44.23, antialiased-cnns 33.17; "
            "95.76 / 290.5 / 489.2, antialiased-cnns 290.9",
        ),
        (False, 1, 56, 4): Choice(
            DENSE,
            "15.98 / 41.98 / 46.76, antialiased-cnns 34.77; "
            "141.5 / 317.7 / 540.1, antialiased-cnns 316.6",
        ),
        (False, 2, 32, 3): Choice(DENSE, "3.471 / 14.34 / 19.28, antialiased-cnns 12.42"),
        (False, 2, 32, 4): Choice(DENSE, "4.176 / 18.04 / 20.51, antialiased-cnns 17.2"),
        (False, 2, 32, 5): Choice(DENSE, "3.46 / 13.3 / 18.83, antialiased-cnns 13.62"),
        (False, 2, 56, 3): Choice(
            DENSE,
            "8.067 / 19.73 / 27.44, antialiased-cnns 14.4; "
            "64.17 / 173.4 / 276.3, antialiased-cnns 174.9",
        ),
        (False, 2, 56, 4): Choice(
            DENSE,
            "9.01 / 29.82 / 36.73, antialiased-cnns 29; "
            "54.71 / 176.9 / 292.4, antialiased-cnns 178.9",
        ),
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
