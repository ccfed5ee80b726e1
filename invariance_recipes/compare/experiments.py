"""The comparison experiments: one table of named presets, and how one run of them is measured.

Each experiment fixes the data, the training budget (optimizer steps, the same for every arm),
the tuning grid and the evaluation; ``compare.py`` trains the variants it lists, and no others
unless asked, under it with the same seeds. Sizes are written for the embedded digits
(16-px objects) and scale with the object side of the chosen dataset (CIFAR-10's 32-px images:
every canvas, shift and offset doubles), so a GPU run of a preset asks the same question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from invariance_recipes.compare.results import Row, curve_accuracy
from invariance_recipes.datamodules import DATASETS, digits_m, syndigits
from invariance_recipes.datamodules.translation import DIGITS_OBJECT_SIZE
from invariance_recipes.lightning_modules.metrics.protocols import protocol_columns
from invariance_recipes.lightning_modules.metrics.report import REPORTED_MODES
from invariance_recipes.lightning_modules.shifts import CONSISTENCY_MAX_SHIFT
from invariance_recipes.lightning_modules.variants import VARIANTS
from invariance_recipes.measure.evaluation import MAX_SHIFTS, consistency_key
from invariance_recipes.measure.outcomes import measure_run
from invariance_recipes.measure.receptive_fields import RF_COLUMN, field_columns

REFERENCE_OBJECT = DIGITS_OBJECT_SIZE  # the object side the presets are written for
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
#: The object side of each dataset whose object is not its whole image: the presets scale by
#: it, and their canvases never go below the dataset's own image (a photo canvas is not cut).
#: Any other dataset's object is its whole image.
OBJECT_SIZES: Mapping[str, int] = MappingProxyType(
    {
        "digits": DIGITS_OBJECT_SIZE,
        "digits-m": digits_m.DIGIT_SIZE,
        "syndigits": syndigits.DIGIT_SIZE,
        # the 24-px centre patch holds the 16-px digit with a margin: it fits a quadrant of the
        # 48-px canvas the one-quadrant presets use
        "syndigits-patch": syndigits.DIGIT_SIZE,
    }
)
#: The tuning grid every arm of every experiment gets (``compare.py --tune``): the model
#: option and its values. Batch size is not in it: it stays the same for every arm.
TUNING_GRID: Mapping[str, tuple[float, ...]] = MappingProxyType({"lr": (1e-3, 3e-3, 1e-2)})
# --quick: a smoke test of the whole pipeline in a few minutes, not numbers to report. Its 6
# steps do not learn, so a collapse warns instead of failing every run (the run rule still
# leaves such runs out of the table, saying why).
QUICK = (
    "--trainer.max_steps", "6", "--data.max_samples", "300", "--data.batch_size", "50",
    "--on_collapse", "warn",
)  # fmt: skip


@dataclass(frozen=True)
class Experiment:
    """A named preset of data, training budget and evaluation (pixel sizes for 16-px objects).

    Args:
        name: the ``--experiment`` name; also the W&B group and the results folder.
        summary: the question it answers, with its reference.
        variants: the variants compared by default, listed by name: the arms the experiment's
            claims need plus the baseline. A variant added to the registry joins no
            experiment until it is listed here.
        excluded: variants that cannot take part, with the reason (shown on request).
        dataset: the dataset ``compare.py`` uses unless ``--dataset`` says otherwise.
        canvas: canvas side; the object sits on it at ``placement``.
        view_size: the network sees the centre ``view_size`` window of the canvas, so that a
            shift brings in real canvas content (Zhang's 224-of-256 crops); ``None``: all of it.
        placement: where training (and own-test) objects sit.
        policy: translation augmentation of every variant; ``None`` keeps each variant's own.
        train_shifts: the augmentation ranges swept (``--data.max_shift``); empty: no sweep.
        steps: the step budget, in optimizer steps, of every arm (``--trainer.max_steps``): the
            largest any arm needs to plateau. Training never stops below it to save time; cut
            arms, image or dataset size instead.
        batch_size: the batch of every arm (so the same steps see the same images).
        tuning_grid: model options and the values ``--tune`` tries for every arm.
        max_shifts: max offsets of the consistency pairs reported.
        modes: shift modes of the consistency reported.
        curve_max_shift: the accuracy-vs-offset curve sweeps the diagonal up to this offset.
        regions: test placements evaluated one by one (accuracy per region).
        consistency_max_shift: radius of ``val/consistency`` and of the ``zero`` consistency on
            the accuracy-vs-consistency plot.
        consistency_every_n_epochs: validations that measure ``val/consistency`` (every Nth
            epoch and the last). Only the W&B curve reads it, not the tables, the tuning or the
            plateau rule, and its pair of shifted copies costs two forward passes per
            validation image.
        networks: the networks swept, each a name and its training options (``--model.*``);
            their receptive fields become columns of the results table.
        protocols: named shift protocols (``lightning_modules.metrics.PROTOCOLS``) measured on
            every run's tested checkpoint, with their per-image outcomes; their headline
            numbers become columns.
    """

    name: str
    summary: str
    variants: tuple[str, ...]
    excluded: Mapping[str, str] = field(default_factory=dict)
    dataset: str = "syndigits"
    canvas: int = 32
    view_size: int | None = None
    placement: str = "center"
    policy: str | None = None
    train_shifts: tuple[int, ...] = ()
    # 10 epochs of syndigits' 20,400 training images: at 600 steps the baseline was still
    # rising by 3 points per epoch (unseen-position, lr 1e-3 and 3e-3); the tuning runs check
    # this budget against the plateau rule and say when to raise it
    steps: int = 1600
    batch_size: int = 128
    tuning_grid: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: TUNING_GRID)
    max_shifts: tuple[int, ...] = MAX_SHIFTS
    modes: tuple[str, ...] = REPORTED_MODES
    curve_max_shift: int = 8
    regions: tuple[str, ...] = ()
    consistency_max_shift: int = CONSISTENCY_MAX_SHIFT
    # every 5th epoch: 2 of the 10 validations of a 1,600-step run (the last included), so 8
    # skip the pair: 57,600 forward passes of syndigits' 3,600 validation images fewer
    consistency_every_n_epochs: int = 5
    networks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    protocols: tuple[str, ...] = ()

    def scaled(self, object_size: int) -> Experiment:
        """The preset with every pixel size scaled from 16-px objects to ``object_size``."""

        def px(value: int) -> int:
            return max(1, round(value * object_size / REFERENCE_OBJECT)) if value else 0

        return replace(
            self,
            canvas=px(self.canvas),
            view_size=px(self.view_size) if self.view_size else None,
            train_shifts=tuple(px(s) for s in self.train_shifts),
            max_shifts=tuple(px(s) for s in self.max_shifts),
            curve_max_shift=px(self.curve_max_shift),
            consistency_max_shift=px(self.consistency_max_shift),
        )

    def describe(self, overrides: Sequence[str] = ()) -> str:
        """The setup in words, for the results report; ``overrides``: training options given
        after the preset's (``--quick``'s, the user's after ``--``), which win."""
        if self.train_shifts:
            shifts = ", ".join(map(str, self.train_shifts))
            augmentation = f"every training image shifted by up to S px per axis, S in {{{shifts}}}"
        elif self.policy is None:
            augmentation = "each variant's own translation augmentation"
        else:
            augmentation = f"translation augmentation policy {self.policy}"
        view = f" seen through its centre {self.view_size}-px view" if self.view_size else ""
        return (
            f"objects placed {self.placement} on a {self.canvas}-px canvas{view}, "
            f"{augmentation}, {self.budget(overrides)}"
        )

    def budget(self, overrides: Sequence[str] = ()) -> str:
        """The training budget in words, as the runs get it (``overrides`` win)."""
        options = [*self.train_args(), *overrides]
        given = {a: options[i + 1] for i, a in enumerate(options[:-1]) if a.startswith("--")}
        text = (
            f"{given['--trainer.max_steps']} optimizer steps of {given['--data.batch_size']} "
            "images for every arm"
        )
        epochs = given.get("--trainer.max_epochs", "-1")
        if epochs != "-1":
            text += f", or {epochs} epochs if fewer"
        if "--data.max_samples" in given:
            text += f", at most {given['--data.max_samples']} images per split"
        return text

    def settings(self) -> dict[str, list[str]]:
        """The swept settings by name, each as its training options."""
        if self.networks:
            return {name: list(options) for name, options in self.networks.items()}
        if not self.train_shifts:
            return {"default": []}
        return {f"shift{s}": ["--data.max_shift", str(s)] for s in self.train_shifts}

    def train_args(self) -> list[str]:
        """Training options shared by every run of the experiment."""
        args = [
            "--data.canvas_size", str(self.canvas),
            "--data.placement", self.placement,
            "--trainer.max_steps", str(self.steps), "--trainer.max_epochs", "-1",
            "--data.batch_size", str(self.batch_size),
            "--model.curve_max_shift", str(self.curve_max_shift),
            "--model.consistency_max_shift", str(self.consistency_max_shift),
            "--model.consistency_every_n_epochs", str(self.consistency_every_n_epochs),
        ]  # fmt: skip
        if self.view_size:
            args += ["--data.view_size", str(self.view_size)]
        # the protocols are measured once, with their per-image outcomes, by `measure`: the
        # runs' own tests skip their passes
        args += ["--model.protocols", "[]"]
        return args if self.policy is None else [*args, "--data.policy", self.policy]

    def columns(self) -> list[str]:
        """The metrics of the results table, in order."""
        if self.regions:
            fields = [RF_COLUMN] if self.networks else []
            return [*fields, *(f"acc@{r}" for r in self.regions), "acc@unseen", "unseen_drop"]
        consistency = [consistency_key(m, s) for m in self.modes for s in self.max_shifts]
        ranges = ["acc_in_range", "acc_beyond_range"] if self.train_shifts else []
        return ["acc", *ranges, "flip_rate", *consistency, *self.protocol_columns()]

    def derived(self, row: Row) -> dict[str, float]:
        """Columns read from a run's accuracy-vs-offset curve: in a sweep, the accuracy within
        the range the run was trained with and beyond it."""
        trained = {f"shift{s}": s for s in self.train_shifts}.get(row["setting"])
        if trained is None:
            return {}
        return {
            "acc_in_range": curve_accuracy(row, 0, trained),
            "acc_beyond_range": curve_accuracy(row, trained + 1, self.curve_max_shift),
        }

    def protocol_columns(self) -> list[str]:
        """Each protocol's columns (its headline first), keyed as a run's test logs them."""
        return [f"test/{key}" for name in self.protocols for key in protocol_columns(name)]

    def scatter(self) -> tuple[str, str]:
        """(x, y) columns of the accuracy-vs-consistency plot."""
        return (
            consistency_key("zero", self.consistency_max_shift),
            "acc@unseen" if self.regions else "acc",
        )

    def check_variants(self, variants: list[str]) -> None:
        """Raise ``ValueError`` for a variant that is unknown or cannot take part."""
        for name in variants:
            if name in self.excluded:
                raise ValueError(
                    f"--variants {name}: not part of {self.name}, because {self.excluded[name]}; "
                    f"choose from {', '.join(v for v in VARIANTS if v not in self.excluded)}"
                )
            if name not in VARIANTS:
                raise ValueError(
                    f"--variants {name}: unknown variant; choose from {', '.join(VARIANTS)}"
                )


# Small CNNs (3x3 convs, MaxPool(2) per stage) whose last feature map sees, on the 48-px
# canvas: 10 px (two stages, 21%), then 22 and 50 px (three stages of 1 and 3 conv blocks, 46%
# and 104%: the first field that covers the canvas). The claim compares the smallest field with
# the widest; three stages of 2 and 4 blocks (36 and 64 px) were cut for the budget (the two
# costliest networks; the 4-block one also trained worst in the earlier short runs).
RECEPTIVE_FIELD_NETWORKS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        f"stages{len(widths)}-blocks{blocks}": (
            "--model.widths",
            str(list(widths)),
            "--model.blocks_per_stage",
            str(blocks),
        )
        for widths, blocks in [((32, 64), 1), *(((32, 64, 128), b) for b in (1, 3))]
    }
)

# Trained in one quadrant without augmentation, tested in every quadrant.
_ONE_QUADRANT: dict = {
    "excluded": {
        "aug-heavy": "the experiment trains without augmentation (policy none) so that "
        "other positions are never seen, which leaves aug-heavy identical to baseline"
    },
    "dataset": "syndigits-patch",  # a 24-px object that fits one quadrant of the 48-px canvas
    "canvas": 48,
    "placement": "top-left",
    "policy": "none",
    "max_shifts": (4,),
    "modes": ("zero",),
    "regions": QUADRANTS,
}

_EXPERIMENTS = (
    Experiment(
        name="small-shift",
        summary="objects centred on a photograph, each variant with its own augmentation: clean "
        "accuracy and consistency under small shifts by the protocols of Zhang (ICML 2019), "
        "Chaman & Dokmanic (CVPR 2021), Michaeli et al. (CVPR 2023) and Azulay & Weiss (JMLR "
        "2019)",
        # the anti-aliasing, APS, LPS and AFC claims' arms, plus global pooling, which the
        # circular variants build on
        variants=(
            "baseline",
            "global-pooling",
            "blurpool",
            "aps-circular",
            "lps-circular",
            "alias-free",
        ),
        excluded={"pyramid-pooling": "it is a control of the receptive-field experiment"},
        canvas=48,
        view_size=32,  # Zhang's crops: a 32-px view moves by up to 8 px over real content
        # 20 epochs: at 1600 steps aps-circular had not plateaued at any learning rate of the
        # grid (lr 1e-2: the last quarter still gained 0.75 points); the arms it shows least
        # about, lps-circular and alias-free, learned slowest in the earlier short runs
        steps=3200,
        max_shifts=(2, 4, 8),
        protocols=("zhang2019", "aps-circular", "afc-fractional", "afc-worst", "azulay-weiss"),
    ),
    Experiment(
        name="unseen-position",
        summary="objects only in the top-left quadrant and no augmentation, tested in every "
        "quadrant: does the network recognise them where it never saw them?",
        variants=("baseline", "global-pooling", "fc-head"),  # the pooling claim's arms
        **_ONE_QUADRANT,
    ),
    Experiment(
        name="augmentation-sweep",
        summary="translation augmentation of increasing range, tested inside and beyond the "
        "trained range (Azulay & Weiss, JMLR 2019)",
        variants=("baseline", "global-pooling"),  # the augmentation claim's arms
        excluded={
            "aug-heavy": "the sweep sets the augmentation range itself, which leaves aug-heavy "
            "identical to baseline"
        },
        canvas=48,
        policy="heavy",  # every image shifted (zero fill), by up to the swept --data.max_shift
        train_shifts=(0, 4),  # the claim compares 4 px with none; 8 px cut for the budget
        max_shifts=(2, 4, 8, 12),
        modes=("zero",),
        curve_max_shift=16,
        consistency_max_shift=8,
    ),
    Experiment(
        name="receptive-field",
        summary="objects only in the top-left quadrant, small CNNs whose last receptive field "
        "grows from a fifth of the canvas to beyond it: does a field covering the image "
        "rescue the flatten head on unseen positions? (GAP and SPP heads as controls with "
        "--variants)",
        variants=("baseline",),  # the claim reads the flatten head at every field size
        **_ONE_QUADRANT,
        networks=RECEPTIVE_FIELD_NETWORKS,
    ),
)

EXPERIMENTS: Mapping[str, Experiment] = MappingProxyType({e.name: e for e in _EXPERIMENTS})


def get_experiment(name: str, dataset: str | None = None) -> Experiment:
    """The named preset scaled to ``dataset``'s objects (default: the preset's own dataset);
    ``ValueError`` lists the valid names."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"--experiment {name}: unknown experiment; choose one of {', '.join(EXPERIMENTS)}"
        )
    dataset = dataset or EXPERIMENTS[name].dataset
    native = DATASETS[dataset].native_size if dataset in DATASETS else None
    if native is None:
        choices = ", ".join(d for d, info in DATASETS.items() if info.native_size)
        raise ValueError(f"--dataset {dataset}: presets need a known image size; choose {choices}")
    scaled = replace(EXPERIMENTS[name], dataset=dataset).scaled(OBJECT_SIZES.get(dataset, native))
    return replace(scaled, canvas=max(scaled.canvas, native))


def measure(
    experiment: Experiment, run_dir: Path
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The experiment's columns of a trained run and the per-image outcomes they are the means
    of, from one load of the checkpoint its test used (:func:`measure_run`); with networks, the
    receptive field of the network measured."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    measured = measure_run(
        run_dir,
        max_shifts=experiment.max_shifts,
        modes=experiment.modes,
        regions=experiment.regions,
        seen=experiment.placement,
        protocols=experiment.protocols,
        device=device,
    )
    columns = dict(measured.columns)
    if experiment.networks:
        columns |= field_columns(measured.model)
    return columns, measured.outcomes
