"""Evaluation of a checkpoint: rebuild a trained model from its checkpoint and report its shift robustness in full.

    python recipes/evaluate.py --ckpt runs/blurpool-seed0/checkpoints/last.ckpt
    python recipes/evaluate.py --ckpt PATH --max_shifts 1 2 4 8 --test_placement top-left
    python recipes/evaluate.py --ckpt PATH --protocols zhang2019 aps-circular afc-worst
    python recipes/evaluate.py --list-protocols

Prints accuracy, shift consistency per mode and max shift, flip rate, MAC, the
accuracy-vs-offset curve and one row per named protocol; writes ``report.json``,
``shift_curve.csv`` and ``shift_curve.png`` next to the run (or to ``--out``) and logs them like
training does. The model, the data and every measure go through one pass over the test set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.lightning_modules.callbacks import write_curve
from invariance_recipes.lightning_modules.classifier import InvarianceClassifier
from invariance_recipes.lightning_modules.metrics import PROTOCOLS, ProtocolReport, ShiftReport
from invariance_recipes.lightning_modules.metrics._utils import evaluating
from invariance_recipes.lightning_modules.metrics.protocols import parse_protocols
from invariance_recipes.lightning_modules.shifts import SHIFT_MODES, offset_sweep
from invariance_recipes.measure.receptive_fields import describe_checkpoint
from invariance_recipes.run.artifacts import download_checkpoint, is_reference
from invariance_recipes.run.checkpoints import load_checkpoint
from invariance_recipes.run.collapse import collapse_reason
from invariance_recipes.run.errors import EXIT_FAILED, UsageError
from invariance_recipes.run.loggers import make_logger

#: The consistency radii (max shift, pixels per axis) evaluate.py reports by default.
MAX_SHIFTS = (1, 2, 4, 8)
#: The stage prefix of the protocols' numbers, as a run's test logs them and the tables read them.
PROTOCOL_PREFIX = "test/"


def evaluate_checkpoint(ckpt: Path, **options: Any) -> dict[str, Any]:
    """The full shift report of a checkpoint on its own test split (or another placement);
    ``options`` are :func:`evaluate_model`'s."""
    model, data_hparams = load_checkpoint(ckpt)
    return {"checkpoint": str(ckpt), **evaluate_model(model, data_hparams, **options)}


def consistency_key(mode: str, max_shift: int) -> str:
    """The one name of a consistency measurement: ``consistency_zero@4`` is the zero-fill
    consistency of two shifts of up to 4 px, as column, outcome and logged key."""
    return f"consistency_{mode}@{max_shift}"


def evaluate_model(
    model: InvarianceClassifier, data_hparams: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """The full shift report of a loaded model on the test split its data options give;
    ``options`` are :func:`evaluation_pass`'s."""
    return evaluation_pass(model, data_hparams, **options)[0]


def evaluation_pass(
    model: InvarianceClassifier,
    data_hparams: dict[str, Any],
    *,
    max_shifts: Sequence[int] = MAX_SHIFTS,
    modes: Sequence[str] = SHIFT_MODES,
    curve_max_shift: int | None = None,
    test_placement: str | None = None,
    protocols: Sequence[str] = (),
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One pass over the test set: the shift report, and the per-image outcomes behind it.

    A `ShiftReport` per radius (the curve, accuracy, flip rate and MAC come from the first)
    and one `ProtocolReport` with every named protocol see each batch once. The outcomes are
    what the reports counted, image by image (ShiftReport's own keyed offsets): ``label``,
    ``prediction``, ``acc``, ``flip_rate`` and one :func:`consistency_key` per mode and radius,
    with ``index`` (position in the test split) and ``images_sha256`` (a fingerprint of the
    images the network saw, so two runs' outcomes can be checked to pair), and with
    ``protocols`` each protocol's per-image outcomes under its ``test/`` key (``[N]``, or
    ``[N, passes]`` / ``[N, K]``). Without ``max_shifts`` only the clean predictions are taken.
    """
    model.to(device)
    overrides: dict[str, Any] = {"batch_size": batch_size, "num_workers": 0}
    if test_placement:
        overrides["test_placement"] = test_placement
    data = TranslationDataModule(**{**data_hparams, **overrides})
    data.setup("test")
    sweep = offset_sweep(curve_max_shift or model.hparams.curve_max_shift, "diagonal")
    seed = model.hparams.shift_seed
    reports = {
        max_shift: ShiftReport(
            max_shift=max_shift, modes=modes, fill=data.fill_value, seed=seed,
            sweep=sweep if i == 0 else sweep[:1],  # the curve does not depend on max_shift
        ).to(device)
        for i, max_shift in enumerate(max_shifts)
    }  # fmt: skip
    named = ProtocolReport(
        protocols, view_size=data.image_size, fill=data.fill_value, keep_outcomes=bool(protocols)
    ).to(device)
    parts: dict[str, list[Tensor]] = {}
    digest = hashlib.sha256()
    with evaluating(model):
        for canvas, labels in data.test_dataloader():
            canvas, labels = canvas.to(device), labels.to(device)
            x = named.view(canvas)
            digest.update(x.detach().cpu().numpy().tobytes())
            logits = model(x)
            batch = {"label": labels, "prediction": logits.argmax(dim=1)}
            batch["acc"] = batch["prediction"] == labels
            for i, (max_shift, report) in enumerate(reports.items()):
                measured = report.update(model, x, labels, logits=logits)
                if i == 0:
                    batch["flip_rate"] = measured["flip_rate"]
                for mode in modes:
                    batch[consistency_key(mode, max_shift)] = measured[f"consistency_{mode}"]
            named.update(model, canvas, labels, logits=logits)
            for key, value in batch.items():
                parts.setdefault(key, []).append(value.cpu())
    outcomes = {key: torch.cat(values).numpy() for key, values in parts.items()}
    if protocols:  # keyed like the run's test logs them: test/<protocol>/<metric>_<source>
        outcomes |= {
            f"{PROTOCOL_PREFIX}{key}": values.numpy()
            for key, values in named.take_outcomes().items()
        }
    outcomes["index"] = np.arange(len(outcomes["label"]))
    outcomes["images_sha256"] = np.array(digest.hexdigest())
    result: dict[str, Any] = {"acc": float(outcomes["acc"].mean())}
    if reports:
        values = {max_shift: report.compute() for max_shift, report in reports.items()}
        first = values[max_shifts[0]]
        result |= {key: float(first[key]) for key in ("acc", "flip_rate", "mac")}
        result["consistency"] = {
            s: {m: float(v[f"consistency_{m}"]) for m in modes} for s, v in values.items()
        }
        result["curve"] = [
            (dy, dx, a)
            for (dy, dx), a in zip(sweep.tolist(), first["acc_vs_shift"].tolist(), strict=True)
        ]
    # how often each class was predicted: what the collapse rule reads
    counts = np.bincount(outcomes["prediction"], minlength=model.hparams.num_classes)
    result["predicted_counts"] = counts.tolist()
    result["protocols"] = protocol_results(named) if protocols else {}
    return result, outcomes


def protocol_scalars(result: dict[str, Any]) -> dict[str, float]:
    """Every scalar number of the protocols of an :func:`evaluation_pass` result, keyed as the
    run's test logs it (``test/<protocol>/<metric>_<source>``): each protocol's own
    aggregation, not a mean of the kept outcomes (a mean of batch means differs from it)."""
    return {
        f"{PROTOCOL_PREFIX}{name}/{key}": float(value)
        for name, measured in result["protocols"].items()
        for key, value in measured["values"].items()
        if not isinstance(value, list)
    }


def protocol_results(report: ProtocolReport) -> dict[str, dict[str, Any]]:
    """Per protocol: its full spec and its values (curves as lists), keyed by protocol name."""
    computed = report.compute()
    results: dict[str, dict[str, Any]] = {}
    for name, spec in report.specs.items():
        prefix = f"{name}/"
        results[name] = {
            "spec": spec.table_row(),
            "values": {
                key[len(prefix) :]: value.tolist()
                for key, value in computed.items()
                if key.startswith(prefix)
            },
        }
    return results


def format_protocol_table(protocols: dict[str, dict[str, Any]]) -> str:
    """One row per protocol: its name and every scalar it measured."""
    if not protocols:
        return ""
    width = max(len(name) for name in protocols)
    lines = [f"{'protocol':<{width}}  values", f"{'-' * width}  ------"]
    for name, result in protocols.items():
        scalars = [
            f"{metric}={value:.4f}"
            for metric, value in result["values"].items()
            if isinstance(value, float)
        ]
        lines.append(f"{name:<{width}}  " + "  ".join(scalars))
    return "\n".join(lines)


def format_protocol_list() -> str:
    """``--list-protocols``: every preset with every choice that changes its number."""
    blocks = []
    for spec in PROTOCOLS.values():
        row = spec.table_row()
        blocks.append(
            "\n".join(
                [f"{spec.name}: {row['description']}"]
                + [
                    f"    {key:<12} {value}"
                    for key, value in row.items()
                    if key not in ("name", "description")
                ]
            )
        )
    return "\n\n".join(blocks)


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
    table = format_protocol_table(report.get("protocols", {}))
    return "\n".join(lines + (["", "named protocols", table] if table else []))


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_curve(report["curve"], out)


def log_report(report: dict[str, Any], args: argparse.Namespace, out: Path) -> None:
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    logger = make_logger(
        args.logger,
        run_dir=out,
        name=f"eval-{args.ckpt.resolve().parent.parent.name}",
        project=args.project,
        group=None,
        tags=["evaluate"],
        config=config,
    )
    if not logger:
        return
    scalars = {
        f"eval/{consistency_key(mode, shift)}": value
        for shift, by_mode in report["consistency"].items()
        for mode, value in by_mode.items()
    }
    scalars |= {
        f"eval/{name}/{metric}": value
        for name, result in report.get("protocols", {}).items()
        for metric, value in result["values"].items()
        if isinstance(value, float)
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
    parser.add_argument(
        "--ckpt",
        type=Path,
        help="checkpoint file (.ckpt), or a W&B model artifact logged with train --log_model: "
        "wandb:ENTITY/PROJECT/model-RUNID:tested (downloaded to ./artifacts)",
    )
    parser.add_argument(
        "--protocols",
        nargs="+",
        default=[],
        metavar="NAME",
        help="named protocols to report as well: NAME NAME or '[NAME, NAME]' (see "
        "--list-protocols)",
    )
    parser.add_argument("--protocol", nargs="+", default=[], help=argparse.SUPPRESS)
    parser.add_argument(
        "--list-protocols", action="store_true", help="print every named protocol and exit"
    )
    parser.add_argument(
        "--max_shifts",
        type=int,
        nargs="+",
        default=list(MAX_SHIFTS),
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
        "--on_collapse",
        default="fail",
        choices=["fail", "warn"],
        help="a model that predicts one class or scores at chance: fail (exit 1), or warn "
        "and report its numbers (smoke tests only)",
    )
    parser.add_argument(
        "--receptive_field",
        action="store_true",
        help="also report the theoretical and effective receptive fields (heat-map PNGs)",
    )
    args = parser.parse_args(argv)
    if args.protocol:  # the spelling of earlier releases
        print("warning: --protocol is deprecated: use --protocols", file=sys.stderr)
        args.protocols = [*args.protocols, *args.protocol]
    if args.ckpt is None and not args.list_protocols:
        parser.error("--ckpt is required (or pass --list-protocols)")
    return args


def evaluate_command(argv: list[str]) -> int:
    """``evaluate.py``: report a checkpoint, write and log the report; returns the exit code."""
    args = parse_args(argv)
    if args.list_protocols:
        print(format_protocol_list())
        return 0
    try:
        protocols = parse_protocols(args.protocols)
        if is_reference(args.ckpt):
            args.ckpt = download_checkpoint(str(args.ckpt), Path("artifacts"))
        with torch.inference_mode():
            report = evaluate_checkpoint(
                args.ckpt,
                max_shifts=args.max_shifts,
                modes=args.modes,
                curve_max_shift=args.curve_max_shift,
                test_placement=args.test_placement,
                protocols=protocols,
                batch_size=args.batch_size,
                device=args.device,
            )
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    num_classes = len(report["predicted_counts"])
    collapsed = collapse_reason(report["predicted_counts"], report["acc"], num_classes)
    if collapsed is not None and args.on_collapse == "fail":
        print(f"error: {args.ckpt}: the model did not learn: {collapsed}", file=sys.stderr)
        return EXIT_FAILED
    if collapsed is not None:
        print(f"warning: {args.ckpt}: the model did not learn: {collapsed}", file=sys.stderr)
    out = args.out or args.ckpt.resolve().parent.parent / "evaluation"
    write_report(report, out)
    log_report(report, args, out)
    print(format_report(report))
    print(f"report written to {out}")
    if args.receptive_field:
        print(describe_checkpoint(args.ckpt, out, device=args.device))
    return 0
