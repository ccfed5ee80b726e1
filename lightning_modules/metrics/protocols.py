"""Named shift protocols: every choice that changes a published shift-robustness number.

Papers report "consistency" under protocols that differ in the shift source, the offset range
and its semantics, what is compared, how many copies must agree, how many passes are made and
how results are averaged. A number means nothing without them, so each preset below states all
of them and cites the file of its authors' code it follows. `PROTOCOLS` is the one place a new
preset goes (its source, range and measure are objects of `protocol_parts`); `ProtocolReport`
measures any of them.

Sizes: a paper's range is given at the paper's image side (`paper_size`) and scaled to the view
side V the network sees by ``round(paper_range * V / paper_size)`` (at least 1). Offsets are
drawn per image, keyed by its pixels and the protocol's seed, never per batch: a number does not
depend on the batch size (the authors draw one offset per batch from an unseeded or global RNG;
the expected value is the same, ours has less variance and is reproducible).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.metrics.protocol_parts import (
    AMONG_CORRECT,
    MEASURES,
    RANGES,
    SOURCES,
    FixedRange,
    Measure,
    RandomRange,
    Source,
)
from invariance_recipes.lightning_modules.metrics.worst_case import AGGREGATIONS

#: The per-protocol numbers beside each measure's own: clean accuracy of the images it saw, and
#: the number of outcomes (image x pass: the pairs of a consistency) behind its shares.
ACCURACY, COUNT = "acc", "n"


@dataclass(frozen=True)
class ProtocolSpec:
    """One named protocol: every choice that changes its number.

    Attributes:
        name: the ``--protocols`` name and the prefix of every key it logs.
        paper: the publication whose number this reproduces.
        code: the repository and file of the authors' code it follows.
        description: the protocol in words, with the size rule and any deviation.
        measure: what is measured (`protocol_parts.MEASURES`).
        sources: how the copies are made, each reported separately (`protocol_parts.SOURCES`).
        range: the offsets and their semantics (`protocol_parts.RANGES`).
        paper_range: m or D in the paper's pixels (0: the whole margin H - V of the canvas).
        paper_size: the image side the paper's range refers to (0: the range is size-free).
        reference: what a shifted prediction is compared with.
        copies: how many predictions must agree (2 for a pair, N for N-way).
        passes: passes over the data, each with fresh keyed offsets.
        aggregation: "over-images" (agreeing images / images) or "mean-of-batch-means".
        seed: the seed of the per-image keys (the authors' where their code fixes one).
    """

    name: str
    paper: str
    code: str
    description: str
    measure: Measure
    sources: tuple[Source, ...]
    range: RandomRange | FixedRange
    paper_range: int
    paper_size: int
    reference: str
    copies: int
    passes: int
    aggregation: str
    seed: int

    def __post_init__(self) -> None:
        check_choice(f"aggregation of protocol {self.name}", self.aggregation, AGGREGATIONS)

    @property
    def draw(self) -> str:
        """ "per image" (keyed offsets) or "fixed" (every offset of the range)."""
        return self.range.draw

    def scaled_range(self, canvas_size: int, view_size: int) -> int:
        """The range value (m or D) for a V-px view of an H-px canvas."""
        if self.paper_range == 0:
            return canvas_size - view_size
        if self.paper_size == 0:
            return self.paper_range
        return max(1, round(self.paper_range * view_size / self.paper_size))

    def size_rule(self) -> str:
        """How the range value follows the view side V, in words."""
        if self.paper_range == 0:
            return f"{self.range.symbol} = H - V"
        if self.paper_size == 0:
            return f"{self.range.symbol} = {self.paper_range} at every size"
        return f"{self.range.symbol} = round({self.paper_range} V / {self.paper_size})"

    def table_row(self) -> dict[str, str]:
        """Every field as text, for ``--list-protocols`` and ``report.json``."""
        row = {f.name: _text(getattr(self, f.name)) for f in fields(self)}
        return row | {"draw": self.draw}


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Measure | Source):
        return value.name
    if isinstance(value, RandomRange | FixedRange):
        return value.label
    return str(value)


ZHANG = "Zhang, Making Convolutional Networks Shift-Invariant Again, ICML 2019"
APS = "Chaman & Dokmanic, Truly Shift-Invariant CNNs, CVPR 2021"
AFC = "Michaeli, Michaeli & Soudry, Alias-Free Convnets, CVPR 2023"
_PRESETS = (
    ProtocolSpec(
        name="zhang2019",
        paper=ZHANG,
        code="adobe/antialiased-cnns main.py validate_shift",
        description="Zhang's proportion: a canvas of round(V x 256/224) px centred in the test "
        "canvas (256 for a 224 view in the paper), two V crops of it with corners per axis in "
        "[0, D), D = round(32 V / 224); top-1 agreement of the two crops over images; 5 passes "
        "(--epochs-shift 5 in the authors' README), offsets keyed per image (the code draws "
        "one pair per batch from numpy's unseeded RNG). Needs a canvas at least V + D wide "
        "(--data.view_size).",
        measure=MEASURES["consistency"],
        sources=(SOURCES["crop"],),
        range=RANGES["[0, D)"],
        paper_range=32,
        paper_size=224,
        reference="shifted vs shifted",
        copies=2,
        passes=5,
        aggregation="over-images",
        seed=0,  # the authors' code draws from numpy's unseeded global RNG
    ),
    ProtocolSpec(
        name="zhang2019-diagonal",
        paper=ZHANG,
        code="adobe/antialiased-cnns main.py validate_diagonal",
        description="accuracy at each of the D + 1 diagonal crops (o, o), o = 0..D with "
        "D = H - V (33 crops in the paper), and their mean. Needs --data.view_size.",
        measure=MEASURES["accuracy-at-offsets"],
        sources=(SOURCES["crop"],),
        range=RANGES["diagonal [0, D]"],
        paper_range=0,
        paper_size=256,
        reference="label",
        copies=1,
        passes=1,
        aggregation="over-images",
        seed=0,
    ),
    ProtocolSpec(
        name="aps-circular",
        paper=APS,
        code="achaman2/truly_shift_invariant_cnns main.py (validate, ImageNet)",
        description="two torch.roll copies of the centre view, offsets per axis in [-m, m) "
        "(randint(-32, 32) at 224 px: m = round(32 V / 224)); top-1 agreement of the two "
        "copies over images; offsets keyed per image with seed 0 (the code seeds 0 and draws "
        "one pair per batch).",
        measure=MEASURES["consistency"],
        sources=(SOURCES["circular"],),
        range=RANGES["[-m, m)"],
        paper_range=32,
        paper_size=224,
        reference="shifted vs shifted",
        copies=2,
        passes=1,
        aggregation="over-images",
        seed=0,
    ),
    ProtocolSpec(
        name="aps-cifar",
        paper=APS,
        code="achaman2/truly_shift_invariant_cnns cifar10_training/utils/"
        "for_circular_pad_exps/train_validate_circular.py evaluate_circular and "
        "for_randomcrop_exps/train_validate_random_crop.py evaluate_random_crop",
        description="the CIFAR-10 protocol: randint(-3, 3) per axis (-3..2, asymmetric; "
        "m = round(3 V / 32)), two copies keyed per image (the code draws per batch), either "
        "rolled or zero-padded by m in normalized input space and sliced (content moves by "
        "-o); the mean of batch means (batch 256 in the paper).",
        measure=MEASURES["consistency"],
        sources=(SOURCES["circular"], SOURCES["pad-crop"]),
        range=RANGES["[-m, m)"],
        paper_range=3,
        paper_size=32,
        reference="shifted vs shifted",
        copies=2,
        passes=1,
        aggregation="mean-of-batch-means",
        seed=0,
    ),
    ProtocolSpec(
        name="lps-nway",
        paper="Rojas-Gomez, Lim, Schwing, Do & Yeh, Learnable Polyphase Sampling, NeurIPS 2022",
        code="raymondyeh07/learnable_polyphase_sampling learn_poly_sampling/models/core.py "
        "eval_consistency_step and agreement",
        description="N = 3 rolled copies (--shift_samples, default 2 in the code) must all "
        "agree; offsets per axis in [-m, m) with m = round(32 V / 224), keyed per image and "
        "copy (the code draws per copy per batch); over images; eval.py's --shift_seed 7. The "
        "code's crop mode is zhang2019 with N copies.",
        measure=MEASURES["consistency"],
        sources=(SOURCES["circular"],),
        range=RANGES["[-m, m)"],
        paper_range=32,
        paper_size=224,
        reference="shifted vs shifted",
        copies=3,
        passes=1,
        aggregation="over-images",
        seed=7,
    ),
    ProtocolSpec(
        name="tips",
        paper="Saha & Gokhale, TIPS: Translation Invariant Polyphase Sampling, 2024",
        code="sourajitcs/tips train_test.py evaluate_module",
        description="zero-filled (RandomCrop with padding m, i.e. pad-crop) and circular "
        "shifts, offsets per axis in [-m, m] inclusive (m = 4 at 32 px: m = round(4 V / 32)), "
        "keyed per image; consistency of two shifted copies and 'stability': the unshifted "
        "and both shifted predictions agree; mean of batch means; seed 42. The file calls a "
        "feat_transform that the repository does not define: the draw is our reading.",
        measure=MEASURES["stability"],
        sources=(SOURCES["pad-crop"], SOURCES["circular"]),
        range=RANGES["[-m, m]"],
        paper_range=4,
        paper_size=32,
        reference="shifted vs shifted, and unshifted vs both",
        copies=2,
        passes=1,
        aggregation="mean-of-batch-means",
        seed=42,
    ),
    ProtocolSpec(
        name="afc-random",
        paper=AFC,
        code="hmichaeli/alias_free_convnets shift_eval.py evaluate_random_shift_metrics",
        description="one torch.roll copy, offsets per axis in [1, m) (randint(1, 32) at "
        "224 px: m = round(32 V / 224)) keyed per image (the code draws per batch), compared "
        "with the unshifted prediction: consistency, MAC of the unshifted top-1 probability "
        "and shifted accuracy, over images.",
        measure=MEASURES["vs-unshifted"],
        sources=(SOURCES["circular"],),
        range=RANGES["[1, m)"],
        paper_range=32,
        paper_size=224,
        reference="shifted vs unshifted",
        copies=2,
        passes=1,
        aggregation="over-images",
        seed=0,
    ),
    ProtocolSpec(
        name="afc-worst",
        paper=AFC,
        code="hmichaeli/alias_free_convnets shift_eval.py evaluate_full_adversarial_shift_metrics",
        description="every roll (dy, dx) with 1 <= dy, dx < m (m = round(32 V / 224)); "
        "headline: the share correct unshifted and at every shift (shift_robust_score, the "
        "paper's 'adversarial' score); beside it, the share whose top-1 never changes; over "
        "images.",
        measure=MEASURES["worst-case"],
        sources=(SOURCES["circular"],),
        range=RANGES["grid [1, m)^2"],
        paper_range=32,
        paper_size=224,
        reference="unshifted and every shift",
        copies=0,
        passes=1,
        aggregation="over-images",
        seed=0,
    ),
    ProtocolSpec(
        name="afc-fractional",
        paper=AFC,
        code="hmichaeli/alias_free_convnets shift_eval.py "
        "evaluate_fraction_adversarial_shift_metrics, models/ideal_lpf.py subpixel_shift",
        description="every band-limited (ideal) shift by (-a/u, -b/u), a, b in 1..u-1, for "
        "the up-factors u = 3 and 4 of max_up 4 (thirds, quarters and halves of a pixel, 13 "
        "shifts; subpixel_shift rolls the upsampled image by -shift); headline: the share "
        "correct unshifted and at every fractional shift (sub_shift_robust_score); beside "
        "it, the share whose top-1 never changes; over images. Size-free. At a side H = 2 "
        "mod 4 AFC's up-3 filter weighs the Nyquist row twice; ours keeps its real part.",
        measure=MEASURES["worst-case"],
        sources=(SOURCES["fourier"],),
        range=RANGES["fractions a/u, u an up-factor of U"],
        paper_range=4,
        paper_size=0,
        reference="unshifted and every shift",
        copies=0,
        passes=1,
        aggregation="over-images",
        seed=0,
    ),
    ProtocolSpec(
        name="azulay-weiss",
        paper="Azulay & Weiss, Why do deep convolutional networks generalize so poorly to "
        "small image transformations?, JMLR 2019",
        code="the paper, section 2 (P(top-1 change) and mean absolute change between frames one "
        "pixel apart, the image embedded in a black canvas)",
        description="each image starts at its own keyed offset o uniform in [-m, m] per axis "
        "(m = round(4 V / 32)), zero-filled; flip rate and MAC between o and o + (0, 1) "
        "(one pixel along the width) and between o and o + (1, 1) (diagonal); both reported.",
        measure=MEASURES["flip"],
        sources=(SOURCES["zero"],),
        range=RANGES["[-m, m]"],
        paper_range=4,
        paper_size=32,
        reference="start vs start plus one pixel",
        copies=2,
        passes=1,
        aggregation="over-images",
        seed=0,
    ),
)

#: What a training run's test reports by default: a few extra forward passes per batch.
FAST_PROTOCOLS = ("aps-circular", "azulay-weiss")

#: The registry: a new preset is one entry of `_PRESETS`.
PROTOCOLS: Mapping[str, ProtocolSpec] = MappingProxyType({p.name: p for p in _PRESETS})


def get_protocol(name: str, option: str = "protocol") -> ProtocolSpec:
    """The preset `name`; a one-line error lists the valid names."""
    check_choice(option, name, PROTOCOLS)
    return PROTOCOLS[name]


def parse_protocols(values: Iterable[str], option: str = "--protocols") -> list[str]:
    """Protocol names from a command line: ``a b``, ``a,b`` or ``'[a, b]'`` (train.py's list
    syntax), each checked; a one-line error names the option and the valid names."""
    names = [n for value in values for n in re.split(r"[\s,\[\]]+", value) if n]
    for name in names:
        check_choice(option, name, PROTOCOLS)
    return list(dict.fromkeys(names))


# --- the keys a protocol logs ------------------------------------------------------------------


def metric_key(name: str, metric: str, source: str | None = None) -> str:
    """``<protocol>/<metric>_<source>``: the one builder of a protocol's keys (first source by
    default)."""
    spec = get_protocol(name)
    return f"{name}/{metric}_{source or spec.sources[0].name}"


def headline_key(name: str) -> str | None:
    """The key that sums the named protocol up in one number (of its first source), or
    ``None`` for a protocol that only measures a curve."""
    headline = get_protocol(name).measure.headline
    return None if headline is None else metric_key(name, headline)


def protocol_columns(name: str) -> list[str]:
    """The keys of the protocol's results-table columns (its headline first), of its first
    source: e.g. AFC's score and, beside it, the consistency variant."""
    return [metric_key(name, metric) for metric in get_protocol(name).measure.columns]


def column_label(key: str) -> str:
    """A short header for ``[test/]<protocol>/<metric>_<source>``: the protocol's name for its
    headline, with the metric's name after it for any other column."""
    name, _, rest = key.removeprefix("test/").partition("/")
    spec = PROTOCOLS.get(name)
    if spec is None or key.removeprefix("test/") == headline_key(name):
        return name
    metric = rest.rsplit("_", 1)[0]
    short = metric.replace(AMONG_CORRECT, " if correct").replace("_", " ")
    return f"{name} {short}"


def legend(names: Iterable[str]) -> str:
    """What the protocol columns of a results table measure, one clause per protocol."""
    clauses = [
        f"{name}, {spec.measure.text} ({'; '.join(s.text for s in spec.sources)}; "
        f"{spec.range.label}, {spec.size_rule()})"
        for name in names
        if (spec := get_protocol(name)).measure.headline is not None
    ]
    return (
        "Protocol columns (`python recipes/evaluate.py --list-protocols`), headed by the "
        "protocol's name for its headline and by the metric after it otherwise (`if correct`: "
        "among the correctly classified images): " + "; ".join(clauses) + "."
    )


# --- the README table ----------------------------------------------------------------------


def _range_cell(spec: ProtocolSpec) -> str:
    sources = " and ".join(s.name for s in spec.sources)
    return f"{sources}; `{spec.range.label}`: {spec.range.text}; {spec.size_rule()}"


def protocol_table() -> str:
    """The README's protocol table, generated from `PROTOCOLS` (ends with a newline)."""
    lines = [
        "| preset | source, range | draw, copies, passes | measures | aggregation, seed "
        "| authors' code |",
        "|---|---|---|---|---|---|",
    ]
    for spec in PROTOCOLS.values():
        draw = f"{spec.draw}, {spec.copies or 'every offset'}, {spec.passes}"
        cells = [
            f"`{spec.name}`",
            _range_cell(spec),
            draw,
            spec.measure.text,
            f"{spec.aggregation}, {spec.seed}",
            spec.code,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
