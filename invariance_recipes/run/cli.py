"""The training command line: LightningCLI with ``--variant`` presets, short option names,
one-line errors and the exit codes of :mod:`invariance_recipes.run.errors`."""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import sys
import threading
from argparse import RawDescriptionHelpFormatter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ActionYesNo, ArgumentError, DefaultHelpFormatter
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.lightning_modules import InvarianceClassifier
from invariance_recipes.lightning_modules.callbacks import LearningCurve, ShiftReportLogger
from invariance_recipes.lightning_modules.variants import VARIANTS, describe_variants, get_variant
from invariance_recipes.run.artifacts import LOG_MODEL
from invariance_recipes.run.checkpoints import (
    INTERRUPTED,
    LAST,
    check_checkpoint,
    resume_checkpoint,
)
from invariance_recipes.run.collapse_check import CollapseCheck
from invariance_recipes.run.divergence import DivergenceGuard
from invariance_recipes.run.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    Interrupted,
    RunFailed,
    StoppedEarly,
    UsageError,
)
from invariance_recipes.run.graceful_stop import SIGNALS, GracefulStop
from invariance_recipes.run.loggers import finish_wandb, make_logger
from invariance_recipes.run.run_folders import CHECKPOINTS, remove_unstarted, resolve_run_dir


class _HelpFormatter(DefaultHelpFormatter, RawDescriptionHelpFormatter):
    """Keeps the variant table of ``--help`` one line per variant."""


class TrainCLI(LightningCLI):
    """LightningCLI with ``--variant`` presets and short option names.

    ``--variant NAME`` sets the preset's options as defaults before parsing, so anything on
    the command line or in a ``--config`` file still wins. Short names of unique options are
    accepted (``--head gap`` for ``--model.head gap``, ``--devices 2`` for
    ``--trainer.devices 2``). The run folder is created only after the options and the
    checkpoint to resume pass their checks, and removed again if the trainer cannot start.
    """

    def __init__(self, args: Sequence[str] | None = None) -> None:
        self.run_dir: Path | None = None
        self.created_run_dir = False
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
            help="wandb (offline by itself without a login or a server), csv or none",
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
            "--log_model",
            default="false",
            choices=list(LOG_MODEL),
            help="log the tested checkpoint (best) or every checkpoint (all) as a W&B model "
            "artifact with aliases tested, best, latest (invariance_recipes/run/artifacts.py)",
        )
        parser.add_argument(
            "--resume",
            action=ActionYesNo,
            default=False,
            help="continue the newest run of this name that has a checkpoint",
        )
        parser.add_argument(
            "--ckpt_path",
            default=None,
            type=str | None,
            help="checkpoint to resume from; 'last' means --resume",
        )
        parser.add_argument(
            "--on_collapse",
            default="fail",
            choices=["fail", "warn"],
            help="a tested model that predicts one class or scores at chance: fail the run "
            "(exit 1), or warn and keep its numbers marked as collapsed (smoke tests only)",
        )
        for key in ("num_classes", "in_channels", "image_size", "fill_value"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse once to learn the variant (from the command line or ``--config``), then
        again with the variant's preset as defaults, so explicit options still win."""
        args = expand_short_options(parser, list(args))
        check_config_files(args)
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
            raise UsageError(f"{err}{did_you_mean(parser, str(err))} (see --help)") from None
        check_optimizer_options(self.config.model)
        cap_workers(self.config.data)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self.config
        check_cpu_devices(cfg.trainer.accelerator, cfg.trainer.devices)
        self.run_name = cfg.run_name or f"{cfg.variant}-seed{cfg.seed_everything}"
        resume = cfg.resume or cfg.ckpt_path == "last"
        explicit = cfg.ckpt_path not in (None, "last")
        if explicit:  # checked before a run folder exists
            self.ckpt_path, self.resume_note = resume_checkpoint(None, cfg.ckpt_path, False)
            check_checkpoint(self.ckpt_path, self.model)
        self.run_dir = resolve_run_dir(Path(cfg.runs_dir), self.run_name, resume)
        self.created_run_dir = not resume and rank_zero_only.rank == 0
        logger: Any = None
        try:
            if not explicit:
                self.ckpt_path, self.resume_note = resume_checkpoint(self.run_dir, None, resume)
                if self.ckpt_path is not None:
                    check_checkpoint(self.ckpt_path, self.model)
            ckpt_dir = self.run_dir / CHECKPOINTS
            self.graceful_stop = GracefulStop(ckpt_dir / INTERRUPTED)
            self.collapse_check = CollapseCheck()
            configured = self.configured_callbacks()
            self.timer = self.training_timer(configured)
            callbacks = [
                # chosen where val/acc is logged: the epoch end that a resume at an epoch
                # boundary replays has no validation, and would warn that val/acc is missing
                ModelCheckpoint(
                    ckpt_dir,
                    filename="best-{epoch}",
                    monitor="val/acc",
                    mode="max",
                    save_on_train_epoch_end=False,
                ),
                # Every epoch boundary, improved or not (save_last=True would write last.ckpt
                # only when a best checkpoint is written, and --resume would go back epochs).
                ModelCheckpoint(
                    ckpt_dir, filename=LAST.removesuffix(".ckpt"), enable_version_counter=False
                ),
                ShiftReportLogger(self.run_dir),
                LearningCurve(self.run_dir),
                DivergenceGuard(),
                self.collapse_check,
                self.graceful_stop,
                *([] if self.timer in configured else [self.timer]),
                *configured,
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
                default_root_dir=str(self.run_dir),
                logger=logger,
                callbacks=callbacks,
                **{**kwargs, "max_time": None},  # self.timer enforces it
            )
        except BaseException:
            self.abandon_start(logger)
            raise

    def training_timer(self, configured: list[Callback]) -> Timer:
        """Lightning's Timer: its training time travels in the checkpoints, so a resumed run
        counts every attempt. It enforces ``--trainer.max_time`` as Lightning's own would (the
        trainer adds none beside it); a Timer in ``--trainer.callbacks`` is used as it is."""
        given = next((c for c in configured if isinstance(c, Timer)), None)
        if given is not None:
            return given
        max_time = self._get(self.config_init, "trainer", default={}).get("max_time")
        return Timer(duration=max_time, interval="step")

    def configured_callbacks(self) -> list[Callback]:
        """The user's ``--trainer.callbacks`` (Lightning's CLI drops them when callbacks are
        passed to the trainer in code, as the run's own are)."""
        configured = self._get(self.config_init, "trainer", default={}).get("callbacks")
        if configured is None:
            return []
        return [configured] if isinstance(configured, Callback) else list(configured)

    def abandon_start(self, logger: Any) -> None:
        """A start that failed before training leaves nothing behind (W&B shows it failed)."""
        finish_wandb(logger, EXIT_FAILED)
        if self.created_run_dir and self.run_dir is not None:
            remove_unstarted(self.run_dir)

    def resolved_config(self) -> dict[str, Any]:
        """The full parsed configuration as plain values (what W&B shows and YAML saves)."""
        return json.loads(self.parser.dump(self.config, format="json", skip_none=False))

    def save_config(self) -> Path:
        assert self.run_dir is not None
        path = self.run_dir / "config.yaml"
        self.parser.save(self.config, path, overwrite=True, skip_none=False)
        return path


def check_config_files(args: list[str]) -> None:
    """A ``--config`` file must be a YAML mapping of options; say so in one line."""
    paths = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    paths += [a.partition("=")[2] for a in args if a.startswith("--config=")]
    for path in paths:
        if not os.path.isfile(path):
            continue  # jsonargparse also accepts a YAML string here, and reports bad ones
        try:
            content = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise UsageError(
                f"--config {path}: not valid YAML{where}; fix the file (options as `key: value`)"
            ) from None
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--config {path}: cannot read it ({err})") from None
        if not isinstance(content, dict):
            raise UsageError(
                f"--config {path}: holds a {type(content).__name__}, not options; write them "
                "as `key: value` lines (see --print_config)"
            )


def did_you_mean(parser: LightningArgumentParser, message: str) -> str:
    """``; did you mean --max_epochs?`` for a misspelled option in a parser error."""
    match = re.search(r"(?:Unrecognized arguments|unrecognized arguments):\s*(--[\w.\-]+)", message)
    if match is None:
        return ""
    flag = match.group(1)
    known = [f"--{key}" for key in parser.get_defaults().keys()]  # noqa: SIM118 (not a dict)
    short = [f"--{key.rsplit('.', 1)[-1]}" for key in parser.get_defaults().keys()]  # noqa: SIM118
    close = difflib.get_close_matches(flag, sorted(set(known + short)), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def check_optimizer_options(model: Any) -> None:
    """Optimizer settings fail inside torch with messages that name no option."""
    if not model.lr > 0:
        raise UsageError(f"--model.lr {model.lr}: use a positive learning rate (default 3e-3)")
    if model.weight_decay < 0:
        raise UsageError(f"--model.weight_decay {model.weight_decay}: use 0 or more")
    if not 0 <= model.momentum < 1:
        raise UsageError(f"--model.momentum {model.momentum}: use a value in [0, 1)")


def cap_workers(data: Any) -> None:
    """More loader workers than cores only compete with training for them: use one per core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if data.num_workers > cores:
        print(
            f"warning: --data.num_workers {data.num_workers}: this machine has {cores} CPU "
            f"cores; using {cores} workers",
            file=sys.stderr,
        )
        data.num_workers = cores


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


def run_cli(train: Callable[[Sequence[str]], Any], args: Sequence[str]) -> Any:
    """Run ``train(args)`` for a command line: bad input is one line on stderr and exit 2,
    a failed run exit 1, a stopped one 128 + the signal (130 SIGINT, 143 SIGTERM), also
    when the signal comes while the run starts (its folder is removed then)."""
    on_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _stop_starting) for s in SIGNALS} if on_main else {}
    try:
        return train(args)
    except Interrupted as err:  # a signal before training's own handling took over
        name = signal.Signals(err.signum).name
        print(
            f"stopped by {name} while starting; nothing to resume: start it again", file=sys.stderr
        )
        return 128 + err.signum
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except MisconfigurationException as err:  # Lightning's word on trainer options
        first = (str(err).strip().splitlines() or [""])[0]
        print(
            f"error: trainer options: {first}; fix --accelerator, --devices or --strategy "
            "(without a GPU: --accelerator cpu)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except RunFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except StoppedEarly as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_starting(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def format_metrics(metrics: dict[str, float]) -> str:
    """A small two-column table of the scalar test metrics (the curve is in its own file)."""
    rows = [(k, v) for k, v in sorted(metrics.items()) if "/acc_at_shift/" not in k]
    width = max((len(k) for k, _ in rows), default=6)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v:.4f}" for k, v in rows]
    return "\n".join(lines)
