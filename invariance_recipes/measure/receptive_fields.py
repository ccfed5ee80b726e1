"""Receptive fields of the project's networks and of trained checkpoints: the table of
theoretical fields per backbone and downsampling method, the effective-field heat maps that
``evaluate.py --receptive_field`` writes, and the columns and plot of the ``receptive-field``
experiment."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.lightning_modules.classifier import InvarianceClassifier
from invariance_recipes.lightning_modules.nets import BACKBONES, DOWNSAMPLERS, build_net
from invariance_recipes.lightning_modules.nets.effective_receptive_field import (
    centre_unit,
    effective_receptive_field,
    random_batches,
)
from invariance_recipes.lightning_modules.nets.receptive_field import (
    Field,
    ReceptiveFieldRow,
    format_rows,
    receptive_field,
)
from invariance_recipes.run.checkpoints import load_checkpoint

REPORT_JSON = "receptive_field.json"
ERF_PNGS = {"random": "erf_random.png", "test": "erf_test.png"}
RF_COLUMN = "rf_fraction"  # theoretical field side over the canvas side
RANDOM_IMAGES = 64  # random inputs averaged for the architecture's effective field
TEST_IMAGES = 256  # test images averaged for a trained network's effective field


def net_field(net: nn.Module) -> Field:
    """The theoretical field of the last feature map of a built network, for its image size."""
    return receptive_field(net, net.image_size)[-1].field


def table(image_size: int) -> str:
    """Markdown: the last feature map's field per backbone and downsampling method."""
    lines = [
        f"| backbone | downsample | field (px) | field / image ({image_size} px) | jump | map side |",
        "|---|---|---|---|---|---|",
    ]
    for backbone in BACKBONES:
        for downsample in DOWNSAMPLERS:
            net = build_net(
                backbone,
                in_channels=1,
                num_classes=10,
                image_size=image_size,
                downsample=downsample,
            )
            f = net_field(net)
            lines.append(
                f"| {backbone} | {downsample} | {f.size:g} | {f.size / image_size:.2f} | "
                f"{f.jump} | {f.side} |"
            )
    return "\n".join(lines)


def centre_square(field: Field) -> tuple[float, float]:
    """``(first edge, side)`` of the centre unit's theoretical square (the same along both
    axes), in image coordinates where pixel ``i`` spans ``i - 0.5 .. i + 0.5``."""
    centre = field.start + centre_unit(field.side) * field.jump
    return centre - field.size / 2, field.size


def plot_erf(erf: Tensor, field: Field, title: str) -> Any:
    """Heat map of an effective field (normalized to its maximum), theoretical square on top."""
    fig, ax = plt.subplots(figsize=(4.2, 4), layout="constrained")
    image = ax.imshow((erf / erf.max().clamp_min(1e-30)).cpu().numpy(), cmap="magma", vmin=0)
    low, side = centre_square(field)
    if math.isfinite(side):
        # pixel i spans i - 0.5 .. i + 0.5 in imshow, and the square's edges are pixel edges
        ax.add_patch(Rectangle((low, low), side, side, fill=False, edgecolor="cyan", lw=1.5))
    ax.set(xlim=(-0.5, erf.shape[1] - 0.5), ylim=(erf.shape[0] - 0.5, -0.5))
    ax.set_title(f"{title}\ncyan: theoretical field, {field.size:g} px", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8, label="|gradient| / max")
    return fig


def save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def erf_of_random_inputs(net: nn.Module, count: int = RANDOM_IMAGES) -> Tensor:
    """Effective field of ``net`` averaged over standard-normal images of its input size."""
    shape = (net.in_channels, net.image_size, net.image_size)
    device = next(net.parameters()).device
    batches = (x.to(device) for x in random_batches(shape, count))
    return effective_receptive_field(net, batches).cpu()


def report_checkpoint(
    ckpt: Path, out: Path, *, test_images: int = TEST_IMAGES, device: str = "cpu"
) -> dict[str, Any]:
    """Theoretical and effective fields of a checkpoint; writes JSON and two heat maps.

    The effective field is averaged over random images (the architecture with these
    weights) and over the first ``test_images`` of its own test split (what it uses).
    """
    model, data_hparams = load_checkpoint(ckpt)
    net = model.net.to(device)
    rows = receptive_field(net, net.image_size)
    field = rows[-1].field
    data = TranslationDataModule(**{**data_hparams, "batch_size": 64, "num_workers": 0})
    data.setup("test")
    batches = (x.to(device) for x, _ in data.test_dataloader())
    limit = math.ceil(test_images / 64)
    erfs = {
        "random": erf_of_random_inputs(net),
        "test": effective_receptive_field(net, islice(batches, limit)).cpu(),
    }
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "checkpoint": str(ckpt),
        "image_size": net.image_size,
        "layers": [
            {"name": r.name, "type": r.layer, "size": r.field.size, "jump": r.field.jump,
             "start": r.field.start, "side": r.field.side}
            for r in rows
        ],
        "field": field.size,
        "field_fraction": field.size / net.image_size,
    }  # fmt: skip
    for source, erf in erfs.items():
        title = f"effective field over {source} images"
        save(plot_erf(erf, field, title), out / ERF_PNGS[source])
        report[f"erf_{source}_half_mass_px"] = mass_side(erf, field, 0.5)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2))
    return report


def mass_side(erf: Tensor, field: Field, share: float) -> int:
    """Side of the smallest square centred like the theoretical field that holds ``share``
    of the effective field's mass: a one-number size to set beside the theoretical one."""
    centre = field.start + centre_unit(field.side) * field.jump
    total = float(erf.sum())
    parity = 0 if centre == int(centre) else 1  # odd sides around a pixel, even around an edge
    for side in range(1 + parity, 2 * max(erf.shape) + 2, 2):
        low, high = math.ceil(centre - (side - 1) / 2), math.floor(centre + (side - 1) / 2)
        if float(erf[max(0, low) : high + 1, max(0, low) : high + 1].sum()) >= share * total:
            return side
    return 2 * max(erf.shape)


def format_report(report: dict[str, Any]) -> str:
    """The per-layer table and the effective-field sizes, for the terminal."""
    rows = [
        ReceptiveFieldRow(r["name"], r["type"], Field(r["size"], r["jump"], r["start"], r["side"]))
        for r in report["layers"]
    ]
    return "\n".join(
        [
            format_rows(rows),
            "",
            f"receptive field of the last feature map: {report['field']:g} px "
            f"({report['field_fraction']:.2f} of the {report['image_size']}-px image)",
            "effective field (side of the centred square holding half the gradient mass): "
            f"{report['erf_random_half_mass_px']} px over random images, "
            f"{report['erf_test_half_mass_px']} px over test images",
        ]
    )


def describe_checkpoint(ckpt: Path, out: Path, device: str = "cpu") -> str:
    """``evaluate.py --receptive_field``: write the report and heat maps, return the text."""
    report = report_checkpoint(ckpt, out, device=device)
    names = ", ".join([REPORT_JSON, *ERF_PNGS.values()])
    return f"{format_report(report)}\nreceptive fields written to {out}: {names}"


def field_columns(model: InvarianceClassifier) -> dict[str, float]:
    """The experiment's receptive-field columns of a trained run: field side in pixels and
    as a fraction of the canvas (the network's input side)."""
    field = net_field(model.net)
    return {"rf_px": field.size, RF_COLUMN: field.size / model.net.image_size}


def readme_table_command(argv: Sequence[str]) -> int:
    """``receptive_fields.py``: print the table; with ``--erf PNG`` also draw the effective
    field of an untrained small CNN over random images."""
    import argparse

    parser = argparse.ArgumentParser(description="theoretical receptive fields per backbone")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--erf", type=Path, default=None, help="also write this PNG")
    parser.add_argument("--downsample", default="max", choices=list(DOWNSAMPLERS))
    args = parser.parse_args(argv)
    if args.image_size < 8:
        parser.error(f"--image_size {args.image_size}: pass at least 8 (resnet18's total stride)")
    print(table(args.image_size))
    if args.erf:
        torch.manual_seed(0)
        net = build_net(
            in_channels=1, num_classes=10, image_size=args.image_size, downsample=args.downsample
        )
        erf = erf_of_random_inputs(net)
        title = f"small-cnn ({args.downsample}), untrained, random images"
        save(plot_erf(erf, net_field(net), title), args.erf)
        print(f"effective field written to {args.erf}")
    return 0
