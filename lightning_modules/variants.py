"""The registry of named variants: one place that says what each one changes.

Every variant is a preset of options on top of the same baseline, so a comparison
isolates one strategy. Presets only set defaults: any option can still be overridden
(``--variant blurpool --head gap`` is legal). The training CLI, the comparison recipe
and the tests all read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Variant:
    """A named strategy: the model and data options it sets on top of the baseline."""

    name: str
    summary: str
    model: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """The preset as dotted CLI keys (``model.head``, ``data.policy``, ...)."""
        return {
            **{f"model.{key}": value for key, value in self.model.items()},
            **{f"data.{key}": value for key, value in self.data.items()},
        }


BASELINE = Variant(
    name="baseline",
    summary="conv-BN-ReLU blocks, MaxPool(2) downsampling, flatten -> one linear layer; "
    "light translation augmentation",
)  # the constructors' defaults: every other variant changes them

_VARIANTS = (
    BASELINE,
    Variant(
        "global-pooling",
        "baseline with a global-average-pooling head: position is averaged away",
        model={"head": "gap"},
    ),
    Variant(
        "fc-head",
        "baseline with an MLP head (hidden FC layers, dropout) over the flattened map",
        model={"head": "mlp"},
    ),
    Variant(
        "blurpool",
        "anti-aliased downsampling: MaxPool(stride 1) + BlurPool(stride 2) (Zhang 2019)",
        model={"downsample": "blur"},
    ),
    Variant(
        "aug-heavy",
        "baseline network trained with heavy translation augmentation (large random shifts)",
        data={"policy": "heavy"},
    ),
    Variant(
        "aps",
        "adaptive polyphase sampling: keep the stride-2 phase of largest norm "
        "(Chaman & Dokmanic 2021), no blur (filt_size 1) so it isolates APS from BlurPool",
        model={"downsample": "aps", "filt_size": 1},
    ),
    Variant(
        "aps-circular",
        "APS in its exact setting: circular padding and a global-average-pooling head, "
        "exactly invariant to circular shifts (Chaman & Dokmanic 2021)",
        model={"downsample": "aps", "filt_size": 1, "padding_mode": "circular", "head": "gap"},
    ),
    Variant(
        "max-circular",
        "control for aps-circular: MaxPool(2) downsampling with the same circular padding "
        "and global-average-pooling head, so the comparison isolates the sampling",
        model={"padding_mode": "circular", "head": "gap"},
    ),
    Variant(
        "lps",
        "learnable polyphase sampling: a scoring network picks the stride-2 phase, a "
        "Gumbel-softmax mixture in training (Rojas-Gomez et al. 2022), no blur",
        model={"downsample": "lps", "filt_size": 1},
    ),
    Variant(
        "lps-circular",
        "LPS in its exact setting: circular padding and a global-average-pooling head, "
        "exactly invariant to circular shifts in evaluation (Rojas-Gomez et al. 2022)",
        model={"downsample": "lps", "filt_size": 1, "padding_mode": "circular", "head": "gap"},
    ),
    Variant(
        "alias-free",
        "alias-free CNN: ideal (FFT) low-pass downsampling, polynomial activations on a 2x "
        "grid, circular padding, global-average-pooling head (Michaeli, Michaeli & Soudry 2023)",
        # No batch size of its own: one chosen on test accuracy for this arm only is not a
        # setting a comparison may use; the comparisons tune every arm on validation alike.
        model={"downsample": "alias-free", "padding_mode": "circular", "head": "gap"},
    ),
    Variant(
        "pyramid-pooling",
        "baseline with a spatial-pyramid-pooling head (max over 1x1, 2x2, 4x4 grids; He et al. "
        "2014): between global pooling and flattening",
        model={"head": "spp"},
    ),
)

VARIANTS: Mapping[str, Variant] = MappingProxyType({v.name: v for v in _VARIANTS})


def get_variant(name: str) -> Variant:
    """Look a variant up by name, with an error that lists the valid names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown variant {name!r}: choose one of {', '.join(VARIANTS)} (--variant NAME)"
        ) from None


def preset_flags(variant: Variant) -> str:
    """The preset as the command-line options it stands for (``--model.head gap ...``)."""
    return " ".join(f"--{key} {value}" for key, value in variant.defaults().items())


def variants_markdown() -> str:
    """The README's variant table, generated from :data:`VARIANTS` so it cannot drift."""
    rows = [
        f"| `{v.name}` | {v.summary} | {f'`{preset_flags(v)}`' if v.defaults() else '(defaults)'} |"
        for v in VARIANTS.values()
    ]
    return "\n".join(["| variant | what it is | what it sets |", "|---|---|---|", *rows]) + "\n"


def describe_variants() -> str:
    """One line per variant, for ``--help`` and the README."""
    width = max(map(len, VARIANTS))
    return "\n".join(f"{v.name:<{width}}  {v.summary}" for v in VARIANTS.values())
