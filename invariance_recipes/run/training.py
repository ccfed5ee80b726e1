"""Train one run: fit, then test the best checkpoint, and record how the run ended.

``train.py`` and ``compare.py`` both run training through :func:`train`, so a comparison
trains exactly what ``train.py`` trains. The command line is in :mod:`.cli`, run folders in
:mod:`.run_folders`, checkpoints in :mod:`.checkpoints`, exit codes in :mod:`.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from invariance_recipes.common.atomic_write import atomic_write_json
from invariance_recipes.run.artifacts import log_checkpoints
from invariance_recipes.run.checkpoints import INTERRUPTED, LAST
from invariance_recipes.run.cli import TrainCLI
from invariance_recipes.run.errors import (
    EXIT_FAILED,
    Interrupted,
    RunFailed,
    StoppedEarly,
)
from invariance_recipes.run.loggers import define_summaries, finish_wandb
from invariance_recipes.run.noise import silence_known_noise
from invariance_recipes.run.requeue import requeue_job, under_slurm_batch_job
from invariance_recipes.run.run_folders import (
    CHECKPOINTS,
    remove_unstarted,
    write_status,
)

TEST_METRICS = "test_metrics.json"
# What a folder that cannot take a write says: read-only, no permission, no space, no quota.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def train(args: Sequence[str] | None = None) -> tuple[Path, dict[str, float]]:
    """Fit, then test the best checkpoint; returns the run folder and the test metrics.

    Raises :class:`StoppedEarly` when a signal stopped it (what was saved is in the
    message), :class:`RunFailed` when it diverged; neither writes ``test_metrics.json``.
    """
    silence_known_noise()
    cli = TrainCLI(args)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    run_dir, stop = cli.run_dir, cli.graceful_stop
    assert run_dir is not None
    stage = "fit"
    try:
        stop.install()
        if trainer.is_global_zero:
            cli.save_config()
            print(f"run folder: {run_dir}")
            if cli.resume_note:
                print(cli.resume_note)
            if isinstance(trainer.logger, WandbLogger):
                define_summaries(trainer.logger)
        trainer.fit(model, datamodule=data, ckpt_path=cli.ckpt_path, weights_only=True)
        # read now: the test's checkpoint load gives the timer that checkpoint's training time
        training_s = cli.timer.time_elapsed("train")
        if trainer.is_global_zero:
            remove_leftover_checkpoints(run_dir)
        if stop.stop_after_epoch:
            raise StoppedEarly(
                f"stopped after epoch {trainer.current_epoch}; {CHECKPOINTS}/{LAST} is saved; "
                "continue with the same command plus --resume (exactly as if uninterrupted)",
                signal.SIGINT,
            )
        stage = "test"
        best = trainer.checkpoint_callback.best_model_path  # the first one: best val/acc
        if not best:  # no validation ran: the step budget ended within the first epoch
            best = str(run_dir / CHECKPOINTS / LAST)
            if trainer.is_global_zero:
                print(
                    "no epoch ended before --trainer.max_steps, so no validation chose a "
                    f"checkpoint: testing the last weights ({CHECKPOINTS}/{LAST})"
                )
        results = trainer.test(
            model, datamodule=data, ckpt_path=best, verbose=False, weights_only=True
        )
        collapsed = cli.collapse_check.reason
        if collapsed is not None and cli.config.on_collapse == "fail":
            raise RunFailed(f"the model did not learn: {collapsed}")
    except (Interrupted, SIGTERMException) as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGTERM
        message = _stopped_message(signum, stage, stop.saved, trainer)
        if signum == signal.SIGUSR1 and under_slurm_batch_job():
            stop.ignore_sigterm()  # every rank: the requeue signals them all
            if trainer.is_global_zero:
                message += "; " + requeue_job()  # the time limit is near: run again, resumed
        stopped = StoppedEarly(message, signum)
        _record(cli, "stopped", str(stopped), stopped.exit_code, signum == signal.SIGTERM)
        if stop.saved is None and stage == "fit" and cli.created_run_dir:
            remove_unstarted(run_dir)  # stopped before training: nothing to resume
        raise stopped from None
    except StoppedEarly as err:
        _record(cli, "stopped", str(err), err.exit_code)
        raise
    except RunFailed as err:
        _record(cli, "failed", str(err), EXIT_FAILED)
        raise
    except OSError as err:
        if err.errno not in UNWRITABLE:
            _abandon(cli)
            raise
        doing = "testing" if stage == "test" else "training"
        failed = RunFailed(
            f"cannot change {err.filename or run_dir} ({err.strerror}) while {doing}; the "
            f"checkpoints saved before are intact: make {run_dir} writable (or free space) and "
            "continue with the same command plus --resume"
        )
        _record(cli, "failed", str(failed), EXIT_FAILED)
        raise failed from None
    except BaseException:
        _abandon(cli)
        raise
    finally:
        stop.uninstall()
    metrics = {k: float(v) for k, v in results[0].items()} if results else {}
    if trainer.is_global_zero:
        atomic_write_json(run_dir / TEST_METRICS, metrics)
        seconds = {"train": training_s, "test": cli.timer.time_elapsed("test")}
        reason = f"collapsed: {collapsed}" if collapsed else ""
        write_status(run_dir, "finished", reason, seconds=seconds)
        if collapsed:
            print(
                f"warning: the model did not learn (--on_collapse warn): {collapsed}",
                file=sys.stderr,
            )
        if isinstance(trainer.logger, WandbLogger) and cli.config.log_model != "false":
            meta = {"variant": cli.config.variant, "test_metrics": metrics}
            log_checkpoints(trainer.logger.experiment, cli.config.log_model, Path(best), meta)
    return run_dir, metrics


def _abandon(cli: TrainCLI) -> None:
    """An error that is no run's failure: W&B shows it failed, a start leaves no folder."""
    finish_wandb(cli.trainer.logger, EXIT_FAILED)
    if cli.created_run_dir and cli.run_dir is not None:
        remove_unstarted(cli.run_dir)  # a start that failed before its first checkpoint


def _record(
    cli: TrainCLI, status: str, reason: str, exit_code: int, preempted: bool = False
) -> None:
    """Mark the run as failed or stopped in its folder and in W&B."""
    if cli.trainer.is_global_zero and cli.run_dir is not None and cli.run_dir.is_dir():
        # a read-only or full folder: the message still says how it ended
        with contextlib.suppress(OSError):
            write_status(cli.run_dir, status, reason, exit_code)
    finish_wandb(cli.trainer.logger, exit_code, preempted=preempted)


def remove_leftover_checkpoints(run_dir: Path) -> None:
    """Training is complete: a mid-epoch ``interrupted.ckpt`` and any ``hpc_ckpt_N.ckpt`` (what
    Lightning's own SLURM handler saved, in runs from before ``requeue``) are older than
    ``last.ckpt`` and never used again."""
    for path in [run_dir / CHECKPOINTS / INTERRUPTED, *run_dir.glob("hpc_ckpt_*.ckpt")]:
        path.unlink(missing_ok=True)


def _stopped_message(signum: int, stage: str, saved: Path | None, trainer: object) -> str:
    name = signal.Signals(signum).name
    if stage == "test":
        return (
            f"stopped by {name} while testing; training is complete: the same command plus "
            "--resume tests it again"
        )
    if saved is None:
        return f"stopped by {name} before training started; nothing to resume: start it again"
    return (
        f"stopped by {name} mid-epoch at step {getattr(trainer, 'global_step', '?')}; saved "
        f"{saved} ({CHECKPOINTS}/{LAST} still holds the last epoch boundary); continue with "
        "the same command plus --resume (exactly as if uninterrupted)"
    )
