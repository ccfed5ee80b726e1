"""The parts a shift protocol is made of, each a small object: how the shifted copies are made
(`Source`), which offsets they take (`RandomRange`, `FixedRange`) and what is measured on them
(`Measure`). A preset in `protocols.PROTOCOLS` names one of each; a protocol with a new range or
measure is one new object here (or inline in the preset) plus the preset's test.

Every measure returns per-image outcomes ([B, passes] booleans or floats, or [B, K] for a curve);
`ProtocolReport` averages them, counts them and keeps them per image when asked, so every number
has its per-image outcomes and the count of pairs behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from invariance_recipes.lightning_modules.crop_shift import crop_windows
from invariance_recipes.lightning_modules.shifts import sample_integers, translate

#: Shifted copies of a fixed range go through the network in passes of at most this many images.
IMAGES_PER_PASS = 4096
#: The one-pixel steps of the flip rate and MAC: along the width, and diagonal.
FLIP_STEPS = {"axis": (0, 1), "diagonal": (1, 1)}
#: The suffix of the twin of a consistency measured over the correctly classified images only.
AMONG_CORRECT = "_among_correct"


# --- sources: how a copy is made -------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """How one shifted copy of a batch is made.

    Attributes:
        name: the key suffix of every number measured with it (``<protocol>/<metric>_<name>``).
        text: what it does, for the tables.
        make: (canvases [B, C, H, W], views [B, C, V, V], offsets [B, 2], range value, fill)
            -> copies [B, C, V, V].
        needs_margin: the copies are cut from the canvas around the view: the canvas must be
            larger than the view by at least the range value.
    """

    name: str
    text: str
    make: Callable[[Tensor, Tensor, Tensor, int, Any], Tensor]
    needs_margin: bool = False

    def check(self, protocol: str, canvas_size: int, view_size: int, value: int) -> None:
        """A one-line error, before any forward pass, if the canvas cannot hold the copies."""
        if not self.needs_margin:
            return
        if canvas_size == view_size:
            raise ValueError(
                f"protocol {protocol} cuts {view_size}-px windows from a larger canvas, but the "
                f"network sees the whole {view_size}-px canvas: train with --data.view_size "
                "smaller than the canvas (e.g. 7/8 of it)"
            )
        if canvas_size - view_size < value:
            raise ValueError(
                f"protocol {protocol} moves a {view_size}-px window by up to {value} px, but the "
                f"{canvas_size}-px canvas leaves only {canvas_size - view_size}: use "
                f"--data.canvas_size of at least {view_size + value} or a smaller --data.view_size"
            )


def _crop(canvas: Tensor, view: Tensor, offsets: Tensor, value: int, fill: Any) -> Tensor:
    """Windows at corners ``offsets`` of the (V + value)-px canvas centred in the given one."""
    size = view.shape[-1]
    origin = (canvas.shape[-1] - size - value) // 2
    return crop_windows(canvas, offsets + origin, size)


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "crop",
            "a V window of a larger canvas, moved: real content enters",
            _crop,
            needs_margin=True,
        ),
        Source(
            "circular",
            "`torch.roll` of the view",
            lambda canvas, view, offsets, value, fill: translate(view, offsets, "circular"),
        ),
        Source(
            "zero",
            "the view shifted, vacated pixels take the background",
            lambda canvas, view, offsets, value, fill: translate(view, offsets, "zero", fill),
        ),
        Source(
            "pad-crop",
            "zero-pad the view by m in input space, cut a V window at m + o: content moves by -o",
            lambda canvas, view, offsets, value, fill: translate(view, -offsets, "zero", 0.0),
        ),
        Source(
            "fourier",
            "band-limited (ideal) sub-pixel roll of the view",
            lambda canvas, view, offsets, value, fill: translate(view, offsets, "fourier"),
        ),
    )
}


# --- ranges: which offsets -------------------------------------------------------------------


@dataclass(frozen=True)
class RandomRange:
    """Offsets drawn per image, per axis uniform in ``bounds(value)`` (low, high exclusive).

    Each image's offsets are keyed by its pixels and the draw's seed
    (`invariance_recipes.lightning_modules.shifts.sample_integers`), so a number does not depend
    on the batch size, the data order or the number of processes.
    """

    label: str
    text: str
    bounds: Callable[[int], tuple[int, int]]
    symbol: str = "m"  # the range value's name: m (a shift) or D (a crop margin)
    draw: str = "per image"

    def sample(self, view: Tensor, value: int, seed: int) -> Tensor:
        """Offsets [B, 2] of one copy, keyed by each image of `view` and `seed`."""
        low, high = self.bounds(value)
        if high <= low:
            raise ValueError(
                f"the range {self.label} with {value} px is empty on this image size: use a "
                "larger view or canvas"
            )
        return sample_integers(view, high - low, seed) + low


@dataclass(frozen=True)
class FixedRange:
    """Every offset of a set: [K, 2], float for sub-pixel sets."""

    label: str
    text: str
    offsets: Callable[[int], Tensor]
    symbol: str = "m"
    draw: str = "fixed"


def _diagonal(value: int) -> Tensor:
    steps = torch.arange(value + 1)
    return torch.stack((steps, steps), dim=1)


def _grid(value: int) -> Tensor:
    if value < 2:
        raise ValueError(f"the range grid [1, m)^2 with m = {value} is empty: use a larger view")
    steps = torch.arange(1, value)
    return torch.cartesian_prod(steps, steps)


def up_factors(max_up: int) -> list[int]:
    """AFC's up-factors: 1..max_up without those that divide a larger one (3 and 4 for 4)."""
    factors = range(1, max_up + 1)
    return [i for i in factors if not any(j > i and j % i == 0 for j in factors)]


def _fractions(max_up: int) -> Tensor:
    """(-a/u, -b/u) for every up-factor u and a, b in 1..u-1, in AFC's loop order: content moves
    up and left, as ``subpixel_shift`` rolls the upsampled image by -shift."""
    parts = []
    for up in up_factors(max_up):
        steps = torch.arange(1, up, dtype=torch.float64) / up
        parts.append(-torch.cartesian_prod(steps, steps))
    return torch.cat(parts)


RANGES: dict[str, RandomRange | FixedRange] = {
    r.label: r
    for r in (
        RandomRange(
            "[0, D)", "corner per axis in 0..D-1 (np.random.randint(D))", lambda v: (0, v), "D"
        ),
        RandomRange(
            "[-m, m)", "per axis in -m..m-1, asymmetric (randint(-m, m))", lambda v: (-v, v)
        ),
        RandomRange(
            "[-m, m]", "per axis in -m..m, symmetric (randint(-m, m + 1))", lambda v: (-v, v + 1)
        ),
        RandomRange("[1, m)", "per axis in 1..m-1 (randint(1, m))", lambda v: (1, v)),
        FixedRange("diagonal [0, D]", "every diagonal corner (o, o), o = 0..D", _diagonal, "D"),
        FixedRange("grid [1, m)^2", "every (dy, dx) with 1 <= dy, dx < m", _grid),
        FixedRange(
            "fractions a/u, u an up-factor of U",
            "every (-a/u, -b/u), a, b = 1..u-1, for the up-factors u of U (3 and 4 for 4: "
            "thirds, quarters and halves of a pixel); content moves up and left",
            _fractions,
            "U",
        ),
    )
}


# --- the batch a measure sees ----------------------------------------------------------------


@dataclass
class Probe:
    """One batch under one protocol and source: what a `Measure` needs to make its copies.

    Attributes:
        model: the network.
        canvas: canvases [B, C, H, W]; view: the centre window [B, C, V, V] the network sees.
        labels: [B]; logits: the network's scores [B, classes] on the view.
        source, range, value: how copies are made, their offsets and the scaled range value.
        seed, copies, passes: the protocol's.
        fill: the background of "zero" shifts.
    """

    model: Callable[[Tensor], Tensor]
    canvas: Tensor
    view: Tensor
    labels: Tensor
    logits: Tensor
    source: Source
    range: RandomRange | FixedRange
    value: int
    seed: int
    copies: int
    passes: int
    fill: Any = 0.0

    @property
    def clean(self) -> Tensor:
        """Top-1 classes [B] of the unshifted view."""
        return self.logits.argmax(dim=1)

    def draw(self, pass_index: int, copy: int) -> Tensor:
        """Keyed offsets [B, 2] of one copy of one pass (a random range)."""
        assert isinstance(self.range, RandomRange), "draw() needs a random range"
        key = self.seed * 1_000_003 + pass_index * 1_009 + copy
        return self.range.sample(self.view, self.value, key)

    def logits_at(self, offsets: Sequence[Tensor]) -> Tensor:
        """Scores [K, B, classes] of K copies, offsets [B, 2] each, in one forward pass."""
        copies = [
            self.source.make(self.canvas, self.view, o, self.value, self.fill) for o in offsets
        ]
        return self.model(torch.cat(copies)).unflatten(0, (len(offsets), len(self.view)))

    def classes_at_every_offset(self) -> Tensor:
        """Top-1 classes [K, B] at every offset of a fixed range, in passes of bounded size."""
        assert isinstance(self.range, FixedRange), "classes_at_every_offset() needs a fixed range"
        offsets, batch = self.range.offsets(self.value), len(self.view)
        classes = []
        for part in offsets.split(max(1, IMAGES_PER_PASS // batch)):
            k = len(part)
            canvas = self.canvas.repeat(k, 1, 1, 1) if self.source.needs_margin else self.canvas
            copies = self.source.make(
                canvas,
                self.view.repeat(k, 1, 1, 1),
                part.repeat_interleave(batch, 0),
                self.value,
                self.fill,
            )
            classes.append(self.model(copies).argmax(dim=-1).view(k, batch))
        return torch.cat(classes)


def probability_change(before: Tensor, after: Tensor) -> Tensor:
    """Per image |p(c | x) - p(c | shifted x)|, c the top-1 class of x (Azulay & Weiss's MAC)."""
    p, q = before.float().softmax(dim=1), after.float().softmax(dim=1)
    top = p.argmax(dim=1, keepdim=True)
    return (p.gather(1, top) - q.gather(1, top)).abs().squeeze(1)


# --- measures: what is measured --------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """What a protocol measures, as per-image outcomes.

    Attributes:
        name: the measure's name in the tables.
        text: what it measures, in words.
        metrics: the names of its numbers, the headline first (each logged as
            ``<protocol>/<metric>_<source>``).
        consistencies: the metrics that also get a twin over the correctly classified images
            only (``<metric>_among_correct``).
        columns: the metrics a results table shows, the headline first.
        curve: the name of its curve over the offsets, if it measures one.
        run: the per-image outcomes of one batch: metric -> [B, passes] (or [B, K] for the
            curve).
    """

    name: str
    text: str
    metrics: tuple[str, ...]
    run: Callable[[Probe], dict[str, Tensor]]
    consistencies: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    curve: str | None = None

    @property
    def headline(self) -> str | None:
        """The metric that sums the protocol up (``None`` for a curve)."""
        return self.metrics[0] if self.metrics else None


def _pairs(probe: Probe, copies: int) -> list[Tensor]:
    """Top-1 classes [copies, B] of each pass's keyed copies."""
    return [
        probe.logits_at([probe.draw(p, c) for c in range(copies)]).argmax(dim=-1)
        for p in range(probe.passes)
    ]


def _consistency(probe: Probe) -> dict[str, Tensor]:
    agree = [(classes == classes[0]).all(dim=0) for classes in _pairs(probe, probe.copies)]
    return {"consistency": torch.stack(agree, dim=1)}


def _stability(probe: Probe) -> dict[str, Tensor]:
    passes = _pairs(probe, probe.copies)
    agree = [(classes == classes[0]).all(dim=0) for classes in passes]
    stable = [(classes == probe.clean).all(dim=0) for classes in passes]
    return {"consistency": torch.stack(agree, dim=1), "stability": torch.stack(stable, dim=1)}


def _vs_unshifted(probe: Probe) -> dict[str, Tensor]:
    parts: dict[str, list[Tensor]] = {"consistency": [], "mac": [], "acc_shifted": []}
    for p in range(probe.passes):
        (shifted,) = probe.logits_at([probe.draw(p, 0)])
        parts["consistency"].append(shifted.argmax(dim=1) == probe.clean)
        parts["mac"].append(probability_change(probe.logits, shifted))
        parts["acc_shifted"].append(shifted.argmax(dim=1) == probe.labels)
    return {name: torch.stack(values, dim=1) for name, values in parts.items()}


def _worst_case(probe: Probe) -> dict[str, Tensor]:
    classes = probe.classes_at_every_offset()
    correct = (probe.clean == probe.labels) & (classes == probe.labels).all(dim=0)
    unchanged = (classes == probe.clean).all(dim=0)
    return {"worst_acc": correct[:, None], "worst_consistency": unchanged[:, None]}


def _accuracy_at_offsets(probe: Probe) -> dict[str, Tensor]:
    return {"acc_vs_offset": (probe.classes_at_every_offset() == probe.labels).T}


def _flip(probe: Probe) -> dict[str, Tensor]:
    start = probe.draw(0, 0)
    steps = [start, *(start + start.new_tensor(step) for step in FLIP_STEPS.values())]
    out = probe.logits_at(steps)
    outcomes = {}
    for i, step in enumerate(FLIP_STEPS, start=1):
        outcomes[f"flip_rate_{step}"] = (out[0].argmax(1) != out[i].argmax(1))[:, None]
        outcomes[f"mac_{step}"] = probability_change(out[0], out[i])[:, None]
    return outcomes


_FLIPS = tuple(f"flip_rate_{step}" for step in FLIP_STEPS)
MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "consistency",
            "top-1 agreement of the shifted copies (shifted vs shifted)",
            ("consistency",),
            _consistency,
            consistencies=("consistency",),
            columns=("consistency", "consistency_among_correct"),
        ),
        Measure(
            "stability",
            "agreement of the two shifted copies, and stability: the unshifted view and both "
            "copies agree",
            ("stability", "consistency"),
            _stability,
            consistencies=("stability", "consistency"),
            columns=("stability", "consistency", "stability_among_correct"),
        ),
        Measure(
            "vs-unshifted",
            "agreement of the shifted copy with the unshifted prediction, MAC of the unshifted "
            "top-1 probability, and accuracy on the shifted copy",
            ("consistency", "mac", "acc_shifted"),
            _vs_unshifted,
            consistencies=("consistency",),
            columns=("consistency", "consistency_among_correct"),
        ),
        Measure(
            "worst-case",
            "AFC's score: the share correct on the unshifted view and at every offset "
            "(`worst_acc`); and the share whose top-1 never changes (`worst_consistency`)",
            ("worst_acc", "worst_consistency"),
            _worst_case,
            consistencies=("worst_consistency",),
            columns=("worst_acc", "worst_consistency", "worst_consistency_among_correct"),
        ),
        Measure(
            "accuracy-at-offsets",
            "accuracy at each offset (`acc_vs_offset`) and their mean (`mean_acc`)",
            (),
            _accuracy_at_offsets,
            curve="acc_vs_offset",
        ),
        Measure(
            "flip",
            "flip rate and MAC from each image's start to one pixel further, along the width "
            "`(0, 1)` and diagonal `(1, 1)`",
            (*_FLIPS, *(f"mac_{step}" for step in FLIP_STEPS)),
            _flip,
            consistencies=_FLIPS,
            columns=(_FLIPS[0], _FLIPS[0] + AMONG_CORRECT),
        ),
    )
}
