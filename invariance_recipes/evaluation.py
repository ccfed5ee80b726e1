"""Evaluation of a checkpoint: rebuild a trained model from its checkpoint and report its shift robustness in full.

    python recipes/evaluate.py --ckpt runs/blurpool-seed0/checkpoints/last.ckpt
    python recipes/evaluate.py --ckpt PATH --max_shifts 1 2 4 8 --test_placement top-left

Prints accuracy, shift consistency per mode and max shift, flip rate, MAC and the
accuracy-vs-offset curve; writes ``report.json``, ``shift_curve.csv`` and
``shift_curve.png`` next to the run (or to ``--out``) and logs them like training does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import WandbLogger

from datamodules import TranslationDataModule
from invariance_recipes.loggers import make_logger
from invariance_recipes.receptive_fields import describe_checkpoint
from invariance_recipes.training import UsageError, load_checkpoint
from lightning_modules.callbacks import write_curve
from lightning_modules.metrics import evaluate_shift_robustness
from lightning_modules.shifts import SHIFT_MODES, offset_sweep


def evaluate_checkpoint(
    ckpt: Path,
    *,
    max_shifts: Sequence[int] = (1, 2, 4, 8),
    modes: Sequence[str] = SHIFT_MODES,
    curve_max_shift: int | None = None,
    test_placement: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The full shift report of a checkpoint on its own test split (or another placement)."""
    model, data_hparams = load_checkpoint(ckpt)
    model.to(device)
    overrides: dict[str, Any] = {"batch_size": batch_size, "num_workers": 0}
    if test_placement:
        overrides["test_placement"] = test_placement
    data = TranslationDataModule(**{**data_hparams, **overrides})
    data.setup("test")
    loader = data.test_dataloader()
    sweep = offset_sweep(curve_max_shift or model.hparams.curve_max_shift, "diagonal")
    report: dict[str, Any] = {"checkpoint": str(ckpt), "consistency": {}}
    for i, max_shift in enumerate(max_shifts):
        values = evaluate_shift_robustness(
            model, loader, max_shift=max_shift, modes=modes, fill=data.fill_value,
            sweep=sweep if i == 0 else sweep[:1],  # the curve does not depend on max_shift
            seed=model.hparams.shift_seed,
        )  # fmt: skip
        report["consistency"][max_shift] = {m: float(values[f"consistency_{m}"]) for m in modes}
        if i == 0:  # accuracy, flip rate, MAC and the curve do not depend on max_shift
            report |= {key: float(values[key]) for key in ("acc", "flip_rate", "mac")}
            curve = values["acc_vs_shift"].tolist()
    report["curve"] = [(dy, dx, a) for (dy, dx), a in zip(sweep.tolist(), curve, strict=True)]
    return report


def format_report(report: dict[str, Any]) -> str:
    modes = list(next(iter(report["consistency"].values())))
    lines = [
        f"accuracy {report['acc']:.4f}   flip rate {report['flip_rate']:.4f}   "
        f"MAC {report['mac']:.4f}",
        "",
        "shift consistency",
        "max_shift  " + "  ".join(f"{m:>9}" for m in modes),
    ]
    lines += [
        f"{s:>9}  " + "  ".join(f"{c[m]:>9.4f}" for m in modes)
        for s, c in report["consistency"].items()
    ]
    lines += ["", "accuracy vs offset", "    dy    dx  accuracy"]
    lines += [f"{dy:>6}{dx:>6}  {a:>8.4f}" for dy, dx, a in report["curve"]]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_curve(report["curve"], out)


def log_report(report: dict[str, Any], args: argparse.Namespace, out: Path) -> None:
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    logger = make_logger(
        args.logger, run_dir=out, name=f"eval-{args.ckpt.resolve().parent.parent.name}",
        project=args.project, group=None, tags=["evaluate"], config=config,
    )  # fmt: skip
    if not logger:
        return
    scalars = {
        f"eval/consistency_{mode}@{shift}": value
        for shift, by_mode in report["consistency"].items()
        for mode, value in by_mode.items()
    }
    logger.log_metrics(scalars | {f"eval/{k}": report[k] for k in ("acc", "flip_rate", "mac")})
    if isinstance(logger, WandbLogger):
        import wandb

        table = wandb.Table(
            columns=["dy", "dx", "accuracy"], data=[list(r) for r in report["curve"]]
        )
        logger.experiment.log({"eval/acc_vs_shift": wandb.plot.line(table, "dx", "accuracy")})
    logger.finalize("success")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, type=Path, help="checkpoint file (.ckpt)")
    parser.add_argument(
        "--max_shifts",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="max offsets (pixels per axis) of the consistency pairs",
    )
    parser.add_argument("--modes", nargs="+", default=list(SHIFT_MODES), choices=SHIFT_MODES)
    parser.add_argument(
        "--curve_max_shift",
        type=int,
        default=None,
        help="diagonal sweep range (default: the model's curve_max_shift)",
    )
    parser.add_argument(
        "--test_placement", default=None, help="evaluate objects placed elsewhere than in training"
    )
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: RUN/evaluation next to the checkpoint)",
    )
    parser.add_argument("--logger", default="wandb", choices=["wandb", "csv", "none"])
    parser.add_argument("--project", default="invariance-recipes")
    parser.add_argument(
        "--receptive_field",
        action="store_true",
        help="also report the theoretical and effective receptive fields (heat-map PNGs)",
    )
    return parser.parse_args(argv)


def evaluate_command(argv: list[str]) -> int:
    """``evaluate.py``: report a checkpoint, write and log the report; returns the exit code."""
    args = parse_args(argv)
    try:
        with torch.inference_mode():
            report = evaluate_checkpoint(
                args.ckpt, max_shifts=args.max_shifts, modes=args.modes,
                curve_max_shift=args.curve_max_shift, test_placement=args.test_placement,
                batch_size=args.batch_size, device=args.device,
            )  # fmt: skip
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.ckpt.resolve().parent.parent / "evaluation"
    write_report(report, out)
    log_report(report, args, out)
    print(format_report(report))
    print(f"report written to {out}")
    if args.receptive_field:
        print(describe_checkpoint(args.ckpt, out, device=args.device))
    return 0
