"""The blur-paths section: every way :class:`BlurPool2d` can compute its blur, against the
path the choice table (``invariance_recipes.lightning_modules.layers.blur_paths.CHOICES``) picks and against the
fastest peer with the same padding, so that the table is written from one run's numbers.

A path whose ratio to the chosen one is below 1 is faster on this machine: the table's entry
for that setting should change (on a quiet machine, at both thread counts).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from invariance_recipes.benchmarks.layers import (
    LAYERS,
    forward_backward,
    gradient_step,
    import_peer,
)
from invariance_recipes.benchmarks.rows import Config, Row, compare, device_sync, shape_text
from invariance_recipes.benchmarks.timing import interleaved
from invariance_recipes.lightning_modules.layers import BlurPool2d
from invariance_recipes.lightning_modules.layers.blur_paths import (
    CONV,
    CONV_CHANNELS_LAST,
    DENSE,
    PATHS,
    choose_path,
)

# padding -> the entry of LAYERS whose first baseline is the fastest peer with that padding
PADDINGS = {"zero": "BlurPool2d({filt}, zero)", "reflect": "BlurPool2d({filt}, reflect)"}
OTHER_PATH = "another path against the one the table picks (below 1: faster here)"
PEER = "the path the table picks against the fastest peer with the same padding"


def blur_path_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """Forward + backward of each path of BlurPool2d and of its peer, interleaved per setting:
    every other path against the chosen one, and the chosen one against the peer."""
    peers = {pad: LAYERS[entry].baselines[0] for pad, entry in PADDINGS.items()}
    modules = {pad: import_peer(peer.peer, notes) for pad, peer in peers.items()}
    rows = []
    for (shape, filt_sizes), pad in itertools.product(cfg.layer_shapes, PADDINGS):
        x = torch.randn(shape, device=device, requires_grad=True)
        setting = f"{shape_text(shape)} float32, forward + backward"
        for filt in filt_sizes:
            layer = BlurPool2d(shape[1], filt, 2, pad).to(device)
            label = f"BlurPool2d({filt}, {pad})"
            steps = {f"{label} {path}": _path_step(layer, path, x) for path in PATHS}
            chosen = f"{label} {choose_path(x, filt, pad)}"
            peer, module = peers[pad], modules[pad]
            if module is not None:
                name = peer.name.format(filt=filt)
                steps[name] = forward_backward(peer.build(module, shape[1], filt), x)
            timings = interleaved(steps, cfg.rounds, cfg.min_block, device_sync(device))
            others = [f"{label} {path}" for path in PATHS if f"{label} {path}" != chosen]
            rows += [
                compare(timings, "blur-paths", setting, other, chosen, math.inf, OTHER_PATH)
                for other in others
            ]
            if module is not None:
                rows.append(compare(timings, "blur-paths", setting, chosen, name, math.inf, PEER))
    return rows


def _path_step(layer: BlurPool2d, path: str, x: Tensor) -> Callable[[], object]:
    """One forward + backward of ``layer`` on ``x`` through ``path``, whatever it would pick."""
    forward = {
        DENSE: layer.dense,
        CONV: layer.convolve,
        CONV_CHANNELS_LAST: lambda t: layer.convolve(t, channels_last=True),
    }[path]
    return gradient_step(forward, x)
