"""The training command line: LightningCLI plus named variants, run folders and loggers.

``train.py`` and ``compare.py`` both run training through :func:`train`, so a comparison
trains exactly what ``train.py`` trains.
"""

from __future__ import annotations

import json
import os
import re
import sys
from argparse import RawDescriptionHelpFormatter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ActionYesNo, ArgumentError, DefaultHelpFormatter
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from datamodules import TranslationDataModule
from invariance_recipes.graceful_stop import GracefulStop
from invariance_recipes.loggers import define_summaries, make_logger
from lightning_modules import InvarianceClassifier
from lightning_modules.callbacks import ShiftReportLogger
from lightning_modules.nets import ARCHITECTURE_KEYS
from lightning_modules.variants import VARIANTS, describe_variants, get_variant

RUN_DIR_ENV = "INVARIANCE_RUN_DIR"  # hands the run folder to DDP worker processes
CHECKPOINTS = "checkpoints"
TEST_METRICS = "test_metrics.json"


class UsageError(Exception):
    """A mistake in the command line, reported as one line without a traceback."""


class StoppedEarly(Exception):
    """Training was stopped by Ctrl-C at an epoch boundary; its checkpoints are saved."""


class _HelpFormatter(DefaultHelpFormatter, RawDescriptionHelpFormatter):
    """Keeps the variant table of ``--help`` one line per variant."""


class TrainCLI(LightningCLI):
    """LightningCLI with ``--variant`` presets and short option names.

    ``--variant NAME`` sets the preset's options as defaults before parsing, so anything on
    the command line or in a ``--config`` file still wins. Short names of unique options are
    accepted (``--head gap`` for ``--model.head gap``, ``--devices 2`` for
    ``--trainer.devices 2``).
    """

    def __init__(self, args: Sequence[str] | None = None) -> None:
        super().__init__(
            InvarianceClassifier,
            TranslationDataModule,
            args=list(sys.argv[1:] if args is None else args),
            run=False,
            save_config_callback=None,
            seed_everything_default=0,
            trainer_defaults={"max_epochs": 10, "devices": 1, "log_every_n_steps": 5},
            parser_kwargs={
                "description": "Train one variant, then test its accuracy and shift robustness.",
                "epilog": "variants:\n" + describe_variants(),
                "formatter_class": _HelpFormatter,
            },
            load_from_checkpoint_support=False,
            auto_configure_optimizers=False,  # the model's own --optimizer/--scheduler options
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--variant",
            default="baseline",
            choices=list(VARIANTS),
            help="named preset of model and data options (listed below)",
        )
        parser.add_argument(
            "--logger",
            default="wandb",
            choices=["wandb", "csv", "none"],
            help="wandb (offline by itself without a login), csv or none",
        )
        parser.add_argument("--project", default="invariance-recipes", help="W&B project")
        parser.add_argument(
            "--experiment",
            default=None,
            type=str | None,
            help="W&B group that runs of one comparison share",
        )
        parser.add_argument(
            "--run_name",
            default=None,
            type=str | None,
            help="run folder and W&B run name (default: VARIANT-seedN)",
        )
        parser.add_argument("--runs_dir", default="runs", help="where run folders are created")
        parser.add_argument(
            "--resume",
            action=ActionYesNo,
            default=False,
            help="continue the latest run of this name from its last.ckpt",
        )
        parser.add_argument(
            "--ckpt_path",
            default=None,
            type=str | None,
            help="checkpoint to resume from; 'last' means --resume",
        )
        for key in ("num_classes", "in_channels", "image_size", "fill_value"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse once to learn the variant (from the command line or ``--config``), then
        again with the variant's preset as defaults, so explicit options still win."""
        args = expand_short_options(parser, list(args))
        parser.exit_on_error = False  # a bad option is one line, not the whole usage text
        # --print_config prints and exits during a parse: only the second one may see it.
        first = [a for a in args if a.partition("=")[0] != "--print_config"]
        try:
            self.config = parser.parse_args(first)
            preset = get_variant(self.config.variant).defaults()
            if preset or first != args:
                parser.set_defaults(preset)
                self.config = parser.parse_args(args)
        except ArgumentError as err:
            raise UsageError(f"{err} (see --help)") from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self.config
        check_cpu_devices(cfg.trainer.accelerator, cfg.trainer.devices)
        self.run_name = cfg.run_name or f"{cfg.variant}-seed{cfg.seed_everything}"
        resume = cfg.resume or cfg.ckpt_path == "last"
        self.run_dir = resolve_run_dir(Path(cfg.runs_dir), self.run_name, resume)
        self.ckpt_path = _resume_checkpoint(self.run_dir, cfg.ckpt_path, resume)
        if self.ckpt_path is not None:
            check_checkpoint(self.ckpt_path, self.model)
        ckpt_dir = self.run_dir / CHECKPOINTS
        self.graceful_stop = GracefulStop(ckpt_dir / "last.ckpt")
        callbacks = [
            ModelCheckpoint(
                ckpt_dir, filename="best-{epoch}", monitor="val/acc", mode="max", save_last=True
            ),
            ShiftReportLogger(self.run_dir),
            self.graceful_stop,
        ]
        logger = make_logger(
            cfg.logger,
            run_dir=self.run_dir,
            name=self.run_name,
            project=cfg.project,
            group=cfg.experiment,
            tags=[cfg.variant, cfg.data.dataset, cfg.model.backbone],
            config=self.resolved_config(),
        )
        return super().instantiate_trainer(
            default_root_dir=str(self.run_dir), logger=logger, callbacks=callbacks, **kwargs
        )

    def resolved_config(self) -> dict[str, Any]:
        """The full parsed configuration as plain values (what W&B shows and YAML saves)."""
        return json.loads(self.parser.dump(self.config, format="json", skip_none=False))

    def save_config(self) -> Path:
        path = self.run_dir / "config.yaml"
        self.parser.save(self.config, path, overwrite=True, skip_none=False)
        return path


def check_cpu_devices(accelerator: Any, devices: Any) -> None:
    """More CPU processes than cores only slows a run down: say so instead of starting them."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    cores = os.cpu_count() or 1
    count = int(devices) if str(devices).isdigit() else None  # "auto", -1 and lists pass
    if on_cpu and count is not None and count > cores:
        raise UsageError(
            f"--devices {count}: this machine has {cores} CPU cores and no GPU; "
            f"pass --devices {cores} or fewer"
        )


def expand_short_options(parser: LightningArgumentParser, args: list[str]) -> list[str]:
    """Rewrite ``--head`` to ``--model.head`` where exactly one group has that option."""
    known = {f"--{key}" for key in parser.get_defaults().keys()}  # noqa: SIM118 (not a dict)
    out = []
    for arg in args:
        flag, sep, value = arg.partition("=")
        if flag.startswith("--") and flag not in known and "." not in flag:
            matches = [
                f"--{group}.{flag[2:]}"
                for group in ("model", "data", "trainer")
                if f"--{group}.{flag[2:]}" in known
            ]
            if len(matches) == 1:
                flag = matches[0]
        out.append(flag + sep + value)
    return out


def resolve_run_dir(runs_dir: Path, name: str, resume: bool) -> Path:
    """The run folder: a fresh ``NAME``, ``NAME-v2``, ... or, to resume, the latest one.

    A new run never overwrites an older one. DDP workers re-run this script, so rank 0
    hands them its choice through the environment.
    """
    if int(os.environ.get("LOCAL_RANK", "0")) > 0 and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    pattern = re.compile(rf"^{re.escape(name)}(-v(\d+))?$")
    versions = sorted(
        (int(m.group(2) or 1), p)
        for p in (runs_dir.iterdir() if runs_dir.is_dir() else [])
        if (m := pattern.match(p.name))
    )
    if resume:
        if not versions:
            raise UsageError(
                f"--resume: no run named {name!r} under {runs_dir}/ to continue; "
                "start it without --resume, or pass --run_name/--runs_dir of the stopped run"
            )
        run_dir = versions[-1][1]
    else:
        n = versions[-1][0] + 1 if versions else 1
        run_dir = runs_dir / (name if n == 1 else f"{name}-v{n}")
        run_dir.mkdir(parents=True)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def _resume_checkpoint(run_dir: Path, ckpt_path: str | None, resume: bool) -> Path | None:
    if ckpt_path and ckpt_path != "last":
        path = Path(ckpt_path)
        if not path.is_file():
            raise UsageError(f"--ckpt_path: no checkpoint file at {path}")
        return path
    if not resume:
        return None
    path = run_dir / CHECKPOINTS / "last.ckpt"
    if not path.is_file():
        raise UsageError(
            f"--resume: {run_dir} has no {CHECKPOINTS}/last.ckpt (the run stopped before its "
            "first checkpoint); start it again without --resume"
        )
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a training checkpoint, or fail in one line saying why it is not one."""
    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure means the file is not a readable checkpoint
        raise UsageError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise UsageError(f"{path} is not a checkpoint written by recipes/train.py")
    return ckpt


def check_checkpoint(path: Path, model: InvarianceClassifier) -> None:
    """Fail early, in one line, on a corrupt checkpoint or one of a different architecture."""
    saved = read_checkpoint(path)["hyper_parameters"]
    diff = {
        k: (saved.get(k), model.hparams[k])
        for k in ARCHITECTURE_KEYS
        if _plain(saved.get(k)) != _plain(model.hparams[k])
    }
    if diff:
        details = ", ".join(
            f"{k}: checkpoint {a!r} vs this run {b!r}" for k, (a, b) in diff.items()
        )
        raise UsageError(
            f"checkpoint {path} was trained with a different model ({details}); pass the "
            "same --variant and model options as the run that wrote it"
        )


def load_checkpoint(path: Path) -> tuple[InvarianceClassifier, dict[str, Any]]:
    """The trained model (eval mode, CPU) and the DataModule options it was trained with."""
    ckpt = read_checkpoint(path)
    model = InvarianceClassifier(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), dict(ckpt.get("datamodule_hyper_parameters", {}))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def train(args: Sequence[str] | None = None) -> tuple[Path, dict[str, float]]:
    """Fit, then test the best checkpoint; returns the run folder and the test metrics."""
    cli = TrainCLI(args)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    if trainer.is_global_zero:
        cli.save_config()
        print(f"run folder: {cli.run_dir}")
        if isinstance(trainer.logger, WandbLogger):
            define_summaries(trainer.logger)
    trainer.fit(model, datamodule=data, ckpt_path=cli.ckpt_path)
    if cli.graceful_stop.requested:
        raise StoppedEarly(
            f"stopped after epoch {trainer.current_epoch}; continue with the same command "
            "plus --resume"
        )
    results = trainer.test(model, datamodule=data, ckpt_path="best", verbose=False)
    metrics = {k: float(v) for k, v in results[0].items()} if results else {}
    if trainer.is_global_zero:
        (cli.run_dir / TEST_METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return cli.run_dir, metrics


def run_cli(args: Sequence[str]) -> tuple[Path, dict[str, float]] | int:
    """:func:`train` for a command line: bad input becomes one line on stderr and exit 2."""
    try:
        return train(args)
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except MisconfigurationException as err:  # Lightning's word on trainer options
        print(
            f"error: trainer options (--accelerator/--devices/--strategy ...): {err}",
            file=sys.stderr,
        )
        return 2
    except StoppedEarly as stop:
        print(stop, file=sys.stderr)
        return 130


def format_metrics(metrics: dict[str, float]) -> str:
    """A small two-column table of the scalar test metrics (the curve is in its own file)."""
    rows = [(k, v) for k, v in sorted(metrics.items()) if "/acc_at_shift/" not in k]
    width = max((len(k) for k, _ in rows), default=6)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v:.4f}" for k, v in rows]
    return "\n".join(lines)
