"""Named shift protocols: every choice that changes a published shift-robustness number.

Papers report "consistency" under protocols that differ in the shift source, the offset range
and its semantics, when offsets are drawn, what is compared, how many copies must agree, how
many passes are made and how results are averaged. A number means nothing without them, so
each preset below states all of them and cites the file of its authors' code it follows.
`PROTOCOLS` is the one place a new preset goes; `ProtocolReport` measures any of them.

Sizes: a paper's range is given at the paper's image side (`paper_size`) and scaled to the view
side V the network sees by ``round(paper_range * V / paper_size)`` (at least 1); crop ranges are
the margin the view leaves on the canvas (D = H - V), which is exactly the paper's 256 - 224.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

from invariance_recipes.lightning_modules.metrics.worst_case import AGGREGATIONS

from invariance_recipes.common.checks import check_choice

#: How the copies are made. "crop": a V window of the larger canvas at a corner in the range
#: (content from outside the view enters); "circular": ``torch.roll`` of the centre view;
#: "zero": the centre view shifted, vacated pixels take the background; "pad-crop": zero-pad the
#: view by m in model-input space and cut a V window at (m + o), which moves content by -o (the
#: CIFAR crop variant of APS, LPS and TIPS); "fourier": band-limited sub-pixel roll of the view.
SOURCES = ("crop", "circular", "zero", "pad-crop", "fourier")
#: What is measured. "consistency": top-1 agreement of `copies` shifted copies (shifted vs
#: shifted); "stability": the unshifted view and the shifted copies all agree; "vs-unshifted":
#: each shifted copy agrees with the unshifted view (plus MAC and shifted accuracy);
#: "worst-case": over every offset of the range, the share of images whose top-1 never changes
#: and the share that is correct at every offset (and unshifted); "accuracy-at-offsets": accuracy
#: at each offset of the range; "flip": flip rate and MAC from a random start to one pixel further.
MEASURES = (
    "consistency",
    "stability",
    "vs-unshifted",
    "worst-case",
    "accuracy-at-offsets",
    "flip",
)
#: Offset ranges per axis, for a scaled range value r (m or D). Tuples are (low, high) inclusive.
RANGES: Mapping[str, str] = MappingProxyType(
    {
        "[0, D)": "window corner per axis uniform in 0..D-1 (np.random.randint(D))",
        "[-m, m)": "offset per axis uniform in -m..m-1, asymmetric (randint(-m, m))",
        "[-m, m]": "offset per axis uniform in -m..m, symmetric (randint(-m, m + 1))",
        "[1, m)": "offset per axis uniform in 1..m-1 (randint(1, m))",
        "diagonal [0, D]": "every diagonal corner (o, o), o = 0..D, D + 1 offsets",
        "grid [1, m)^2": "every (dy, dx) with 1 <= dy, dx < m",
        "quarter pixels": "every (-a/u, -b/u), a, b in 1..u-1 with u = 4: content moves up/left",
    }
)
DRAWS = ("per-batch", "per-sample", "fixed")


@dataclass(frozen=True)
class ProtocolSpec:
    """One named protocol: every choice that changes its number.

    Attributes:
        name: the ``--protocol`` name and the prefix of every key it logs.
        paper: the publication whose number this reproduces.
        code: the repository and file of the authors' code it follows.
        description: the protocol in words, with the size rule and any deviation.
        measure: what is measured (`MEASURES`).
        sources: the shift sources, each reported separately (`SOURCES`).
        range: the offset range and its semantics (a key of `RANGES`).
        paper_range: m or D in the paper's pixels (0: the crop margin H - V).
        paper_size: the image side the paper's range refers to (0: the range is size-free).
        draw: "per-batch": one offset per copy for the whole batch, drawn from a
            ``torch.Generator`` seeded with ``seed + pass`` in the order copy 0 (dy, dx), copy 1
            ...; "per-sample": every image its own offsets keyed by its pixels and the seed
            (`invariance_recipes.lightning_modules.shifts.sample_integers`); "fixed": every offset of the range.
        reference: what a shifted prediction is compared with.
        copies: how many predictions must agree (2 for a pair, N for N-way).
        passes: passes over the data, each with fresh offsets.
        aggregation: "over-images" (agreeing images / images) or "mean-of-batch-means".
        seed: the seed of the offsets (the authors' where their code fixes one).
    """

    name: str
    paper: str
    code: str
    description: str
    measure: str
    sources: tuple[str, ...]
    range: str
    paper_range: int
    paper_size: int
    draw: str
    reference: str
    copies: int
    passes: int
    aggregation: str
    seed: int

    def __post_init__(self) -> None:
        check_choice(f"measure of protocol {self.name}", self.measure, MEASURES)
        check_choice(f"range of protocol {self.name}", self.range, RANGES)
        check_choice(f"draw of protocol {self.name}", self.draw, DRAWS)
        check_choice(f"aggregation of protocol {self.name}", self.aggregation, AGGREGATIONS)
        for source in self.sources:
            check_choice(f"source of protocol {self.name}", source, SOURCES)

    def scaled_range(self, canvas_size: int, view_size: int) -> int:
        """The range value (m or D) for a V-px view of an H-px canvas."""
        if self.paper_range == 0:
            return canvas_size - view_size
        if self.paper_size == 0:
            return self.paper_range
        return max(1, round(self.paper_range * view_size / self.paper_size))

    def table_row(self) -> dict[str, str]:
        """Every field as text, for ``--list-protocols`` and the README."""
        return {f.name: _text(getattr(self, f.name)) for f in fields(self)}


def _text(value: object) -> str:
    return ", ".join(value) if isinstance(value, tuple) else str(value)


ZHANG = "Zhang, Making Convolutional Networks Shift-Invariant Again, ICML 2019"
APS = "Chaman & Dokmanic, Truly Shift-Invariant CNNs, CVPR 2021"
AFC = "Michaeli, Michaeli & Soudry, Alias-Free Convnets, CVPR 2023"
_PRESETS = (
    ProtocolSpec(
        name="zhang2019",
        paper=ZHANG,
        code="adobe/antialiased-cnns main.py validate_shift",
        description="two V crops of the H canvas (224 of 256 in the paper), corners uniform in "
        "[0, D) per axis with D = H - V, drawn per batch; top-1 agreement of the two crops, "
        "weighted by batch size; 5 passes (--epochs-shift 5 in the authors' README). Needs a "
        "canvas larger than the view (--data.view_size).",
        measure="consistency",
        sources=("crop",),
        range="[0, D)",
        paper_range=0,
        paper_size=256,
        draw="per-batch",
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
        measure="accuracy-at-offsets",
        sources=("crop",),
        range="diagonal [0, D]",
        paper_range=0,
        paper_size=256,
        draw="fixed",
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
        "(randint(-32, 32) at 224 px: m = round(32 V / 224)), drawn per batch; top-1 agreement "
        "of the two copies, weighted by batch size; the code seeds 0 before evaluating.",
        measure="consistency",
        sources=("circular",),
        range="[-m, m)",
        paper_range=32,
        paper_size=224,
        draw="per-batch",
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
        "m = round(3 V / 32)), two copies drawn per batch, either rolled or zero-padded by m in "
        "normalized input space and sliced (content moves by -o); the mean of batch means "
        "(batch 256 in the paper).",
        measure="consistency",
        sources=("circular", "pad-crop"),
        range="[-m, m)",
        paper_range=3,
        paper_size=32,
        draw="per-batch",
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
        "agree; offsets per axis in [-m, m) with m = round(32 V / 224), drawn per copy per "
        "batch; Lightning's epoch mean weighted by batch size; eval.py's --shift_seed 7. The "
        "code's crop mode is zhang2019 with N copies.",
        measure="consistency",
        sources=("circular",),
        range="[-m, m)",
        paper_range=32,
        paper_size=224,
        draw="per-batch",
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
        "shifts, offsets per axis in [-m, m] inclusive (m = 4 at 32 px: m = round(4 V / 32)); "
        "consistency of two shifted copies and 'stability': the unshifted and both shifted "
        "predictions agree; mean of batch means; seed 42. The file calls a feat_transform that "
        "the repository does not define: one draw per batch is our reading.",
        measure="stability",
        sources=("pad-crop", "circular"),
        range="[-m, m]",
        paper_range=4,
        paper_size=32,
        draw="per-batch",
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
        description="one torch.roll copy per batch, offsets per axis in [1, m) "
        "(randint(1, 32) at 224 px: m = round(32 V / 224)), compared with the unshifted "
        "prediction: consistency, MAC of the unshifted top-1 probability and shifted "
        "accuracy, weighted by batch size.",
        measure="vs-unshifted",
        sources=("circular",),
        range="[1, m)",
        paper_range=32,
        paper_size=224,
        draw="per-batch",
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
        description="every roll (dy, dx) with 1 <= dy, dx < m (m = round(32 V / 224)): the "
        "share correct unshifted and at every shift (the paper's 'adversarial' score) and the "
        "share whose top-1 never changes; weighted by batch size.",
        measure="worst-case",
        sources=("circular",),
        range="grid [1, m)^2",
        paper_range=32,
        paper_size=224,
        draw="fixed",
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
        description="every band-limited (ideal) shift by (-a/4, -b/4), a, b in 1..3 (up = 4: "
        "quarter and half pixels; subpixel_shift rolls the upsampled image by -shift): the "
        "share correct unshifted and at every fractional shift, and the share whose top-1 "
        "never changes; weighted by batch size. Size-free.",
        measure="worst-case",
        sources=("fourier",),
        range="quarter pixels",
        paper_range=4,
        paper_size=0,
        draw="fixed",
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
        measure="flip",
        sources=("zero",),
        range="[-m, m]",
        paper_range=4,
        paper_size=32,
        draw="per-sample",
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
