"""Comparison of variants under one experiment: same data, seeds and budget; one table and plots.

(the command lines are in ``recipes/compare.py``)

Every run is a ``train.py`` run (options after ``--`` go to each of them), grouped in W&B
under the experiment. Results go to ``results/EXPERIMENT/`` (``-DATASET`` and ``-quick``
appended when used): ``results.csv`` (one row per run, written after each run),
``results.md`` (mean ± std per variant) and PNG plots. A rerun skips finished runs and
resumes interrupted ones, so a failed or stopped comparison continues where it ended.

``--shard I/N`` trains only the I-th of N disjoint slices of the runs (one job of a SLURM
array) into ``shards/``; ``--merge`` (or a plain rerun) folds all shards into the results, and
refuses runs that did not start from one clean commit unless ``--allow-mixed-code``.

``--tune`` first trains every arm once per point of the experiment's grid (seed 0) and records
the choice by validation accuracy in ``tuning.json``, which the comparison's runs then read
(``invariance_recipes.compare.tuning``). Each run writes its learning curve (``curve.csv``);
whether it trained is judged by ``invariance_recipes.compare.convergence``.
"""

from __future__ import annotations

import argparse
import json
import numbers
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from invariance_recipes.common.atomic_write import atomic_write_json, atomic_write_text
from invariance_recipes.common.file_lock import file_lock
from invariance_recipes.compare.adoption import adopt, run_folders
from invariance_recipes.compare.convergence import (
    LEARNING_CURVES_PNG,
    convergence_markdown,
    plot_learning_curves,
    training_columns,
)
from invariance_recipes.compare.experiments import (
    EXPERIMENTS,
    QUICK,
    Experiment,
    get_experiment,
    measure,
)
from invariance_recipes.compare.provenance import (
    code_markdown,
    code_state,
    markdown_block,
    mixed_code,
    provenance,
    record_start,
)
from invariance_recipes.compare.results import (
    README_BLOCK,
    RESULTS_CSV,
    RESULTS_MD,
    TIMED,
    Row,
    columns_of,
    markdown,
    read_rows,
    write_plots,
    write_rows,
)
from invariance_recipes.compare.sharding import (
    SHARDS_DIR,
    Shard,
    missing_shards,
    parse_shard,
    select,
    shard_rows,
    write_manifest,
)
from invariance_recipes.compare.tuning import (
    TUNING_JSON,
    TUNING_SEED,
    arm_of,
    chosen_trial,
    read_tuning,
    trial_record,
    trials,
    tuned_args,
    tuning_document,
    tuning_markdown,
    tuning_runs,
    untuned_arms,
)
from invariance_recipes.datamodules import DATASETS
from invariance_recipes.lightning_modules.metrics.protocols import parse_protocols
from invariance_recipes.lightning_modules.nets import BACKBONES, DEFAULTS
from invariance_recipes.lightning_modules.variants import VARIANTS
from invariance_recipes.measure.outcomes import (
    load_outcomes,
    outcomes_of_rows,
    save_outcomes,
)
from invariance_recipes.run.collapse import collapse_reason
from invariance_recipes.run.errors import (
    EXIT_FAILED,
    Interrupted,
    RunFailed,
    StoppedEarly,
    UsageError,
)
from invariance_recipes.run.loggers import run_id, start_wandb, wandb_mode
from invariance_recipes.run.run_folders import (
    has_checkpoint,
    recorded_seconds,
    resolve_run_dir,
    versions,
    write_status,
)
from invariance_recipes.run.training import TEST_METRICS, train

COMPARISON_JSON = "comparison.json"  # the options a results folder was made with
STARTING_DIR = ".started"  # per run name: the code a run started from, until its folder exists
UNKNOWN_CODE = {"commit": None, "dirty": True}
# Options compare.py sets for every run itself; passing them after "--" would break its
# bookkeeping (run names, folders, W&B groups) or the scaling of the presets.
RESERVED = (
    "--variant",
    "--seed_everything",
    "--run_name",
    "--runs_dir",
    "--experiment",
    "--logger",
    "--project",
    "--resume",
    "--ckpt_path",
    "--data.dataset",
    "--dataset",
    "--model.backbone",
    "--backbone",
    "--model.protocols",
    "--protocols",
)
USER_ERRORS = (UsageError, ValueError, FileNotFoundError, MisconfigurationException, RunFailed)


@dataclass(frozen=True)
class Run:
    """One training run of the comparison; ``name`` is its W&B name and run folder."""

    variant: str
    setting: str
    seed: int
    name: str
    args: tuple[str, ...]
    trial: str | None = None  # the tuning run that trained the same options, if any


def check_extra(extra: list[str]) -> None:
    """Reject training options after ``--`` that compare.py sets itself."""
    for arg in extra:
        flag = arg.partition("=")[0]
        if flag in RESERVED:
            raise ValueError(
                f"{flag} after '--' is set by compare.py for every run; use its own options "
                "(--variants, --seeds, --dataset, --backbone, --protocols, --logger, --project, "
                "--out)"
            )


def label_of(args: argparse.Namespace) -> str:
    """The comparison's name: the W&B group and the default results folder."""
    dataset = "" if args.dataset == EXPERIMENTS[args.experiment].dataset else f"-{args.dataset}"
    return f"{args.experiment}{dataset}{'-quick' if args.quick else ''}"


def command_of(
    args: argparse.Namespace, experiment: Experiment, extra: list[str], rows: Sequence[Row] = ()
) -> str:
    """The command line that reproduces the comparison (without output and logger choices):
    with ``rows``, the variants and seeds of the table they make, which other processes
    writing to the same folder (other variants, more seeds) may have added to."""
    parts = ["python recipes/compare.py", "--experiment", args.experiment]
    variants, seeds = list(args.variants or experiment.variants), args.seeds
    if rows:
        present = {r["variant"] for r in rows}
        variants = [v for v in experiment.variants if v in present]
        variants += sorted(present - set(variants))
        seeds = max(int(r["seed"]) for r in rows) + 1
    if set(variants) != set(experiment.variants):
        parts += ["--variants", *variants]
    if seeds != 1:
        parts += ["--seeds", str(seeds)]
    if args.dataset != EXPERIMENTS[args.experiment].dataset:
        parts += ["--dataset", args.dataset]
    if args.backbone != "small-cnn":
        parts += ["--backbone", args.backbone]
    if args.protocols is not None:
        parts += ["--protocols", *experiment.protocols]
    if args.quick:
        parts.append("--quick")
    return " ".join(parts + (["--", *extra] if extra else []))


def check_comparison(out: Path, options: dict[str, object]) -> None:
    """A results folder holds one comparison: refuse to mix in runs made with other options."""
    path = out / COMPARISON_JSON
    if path.is_file():
        saved = json.loads(path.read_text())
        diff = {k: (saved.get(k), v) for k, v in options.items() if saved.get(k) != v}
        if diff:
            details = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(
                f"--out {out} holds a comparison made with other options ({details}); "
                "pass another --out, or delete that folder to start over"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, options)  # shards of one comparison may start at once


def common_args(
    args: argparse.Namespace, experiment: Experiment, extra: list[str], out: Path
) -> list[str]:
    """Training options of every run: the preset, then --quick, then the user's, then the
    bookkeeping that ties the runs together (later options win)."""
    return [
        *experiment.train_args(), "--data.dataset", args.dataset, "--model.backbone",
        args.backbone, "--trainer.enable_progress_bar", "false", *(QUICK if args.quick else ()),
        *extra, "--runs_dir", str(out / "runs"), "--experiment", label_of(args), "--logger",
        args.logger, "--project", args.project,
    ]  # fmt: skip


def plan(
    experiment: Experiment,
    label: str,
    variants: list[str],
    seeds: int,
    common: list[str],
    tuning: dict[str, Any] | None = None,
) -> list[Run]:
    """Every (setting, variant, seed) of the comparison, settings outermost; each arm with
    the options ``tuning`` chose for it (options after ``--`` still win).

    Run names are fixed by these four, so a rerun finds its runs again.
    """
    runs = []
    for setting, setting_args in experiment.settings().items():
        for variant in variants:
            tuned = tuned_args(tuning, variant, setting)
            trial = chosen_trial(tuning, variant, setting)
            for seed in range(seeds):
                parts = [label, variant, *([] if setting == "default" else [setting])]
                name = "-".join([*parts, f"seed{seed}"])
                args = ("--variant", variant, "--seed_everything", str(seed), "--run_name", name)
                options = (*tuned, *common, *setting_args, *args)
                same = trial if seed == TUNING_SEED else None
                runs.append(Run(variant, setting, seed, name, options, same))
    return runs


def train_or_reuse(
    args: tuple[str, ...], name: str, runs_dir: Path, candidates: Sequence[Path] = ()
) -> tuple[Path, dict]:
    """Train a run, resume it, or reuse its finished training (its own, or that of the first
    of the ``candidates`` run folders that trained the same options: :mod:`.adoption`);
    returns its folder and test metrics. The folder records the code the run started from
    (``started.json``): measured before a fresh start and kept under the run's name until its
    folder exists, so a run resumed after a crash or a preemption keeps the commit it started
    from."""
    done = finished_run(runs_dir, name)
    if done is not None and (metrics := finished_metrics(done)) is not None:
        return done, metrics
    if (source := adopt(args, name, candidates, runs_dir)) is not None:
        print(f"{name}: trained already as {source} (same options and seed); testing it")
    try:  # the latest folder of this run name that holds a checkpoint, if any
        run_dir: Path | None = resolve_run_dir(runs_dir, name, resume=True)
    except UsageError:
        run_dir = None
    resume = run_dir is not None and has_checkpoint(run_dir)
    pending = runs_dir / STARTING_DIR / f"{name}.json"
    if resume:  # recorded at its first start (unknown if that predates the record)
        start = json.loads(pending.read_text()) if pending.is_file() else UNKNOWN_CODE
    else:
        start = code_state()
        pending.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(pending, start)
    run_dir, metrics = train([*args, *(["--resume"] if resume else [])])
    record_start(run_dir, start)
    return run_dir, metrics


def execute(run: Run, experiment: Experiment, runs_dir: Path, reuse: Sequence[Path] = ()) -> Row:
    """Train a run (or resume it, or reuse its finished training, or adopt the same run's
    from its tuning or from the ``reuse`` results folders) and measure it once: the table's
    columns, the per-image outcomes for the paired tests, and whether it trained."""
    start = time.monotonic()
    trial = finished_run(tuning_runs(runs_dir.parent), run.trial) if run.trial else None
    candidates = [*([trial] if trial else []), *run_folders(reuse)]
    run_dir, metrics = train_or_reuse(run.args, run.name, runs_dir, candidates)
    trained = time.monotonic()
    # training and test over every attempt (a resumed run began in another invocation), as
    # the run recorded them; runs trained before they did count this invocation's
    recorded = recorded_seconds(run_dir)
    measured, outcomes = measure(experiment, run_dir)
    path = save_outcomes(outcomes, run_dir)
    num_classes = DATASETS[experiment.dataset].num_classes or int(outcomes["label"].max()) + 1
    check_learned(run_dir, outcomes, num_classes, warn_only=warns_on_collapse(run.args))
    started = record_start(run_dir, UNKNOWN_CODE)  # a run trained before runs recorded it
    row: Row = {
        "experiment": experiment.name,
        "variant": run.variant,
        "setting": run.setting,
        "seed": run.seed,
        "run": run.name,
        "outcomes": str(path.relative_to(runs_dir.parent)),
        "commit": started["commit"] or "unknown",
        "dirty": float(started["dirty"]),
    }
    row |= training_columns(run_dir, outcomes["label"], outcomes["prediction"], num_classes)
    active = active_wandb_run()
    if active is not None:  # the dashboard shows the comparison's numbers too
        active.summary.update({f"compare/{k}": v for k, v in measured.items()})
    trained_s = trained - start if recorded is None else recorded
    wall = {"wall_s": trained_s + time.monotonic() - trained, TIMED: float(recorded is not None)}
    return row | measured | metrics | wall


def measured_intact(row: Row, out: Path) -> bool:
    """Whether the per-image outcomes a results row names are there and intact."""
    name = row.get("outcomes", "")
    return not name or readable_outcomes(out / name)


def finished_metrics(run_dir: Path) -> dict[str, float] | None:
    """The test metrics of a finished run; None when it has none or they are damaged (then
    the run is tested again from its checkpoint)."""
    path = run_dir / TEST_METRICS
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
        if isinstance(metrics, dict) and all(isinstance(v, float) for v in metrics.values()):
            return metrics
    except (ValueError, OSError):
        pass
    print(f"warning: {path} is damaged; testing the run again", file=sys.stderr, flush=True)
    path.unlink(missing_ok=True)
    return None


def readable_outcomes(path: Path) -> bool:
    """Whether ``path`` holds intact outcomes; a damaged file says so and is measured again."""
    if not path.is_file():
        return False
    try:
        missing = {"prediction", "acc", "images_sha256"} - load_outcomes(path).keys()
        if missing:
            raise ValueError(f"{path} lacks {', '.join(sorted(missing))}")
    except ValueError as err:
        print(f"warning: {err}; measuring it again now", file=sys.stderr, flush=True)
        return False
    return True


def warns_on_collapse(args: Sequence[str]) -> bool:
    """Whether the training options say ``--on_collapse warn`` (the last one given wins)."""
    value = None
    for i, arg in enumerate(args):
        flag, sep, given = arg.partition("=")
        if flag == "--on_collapse":
            value = given if sep else (args[i + 1] if i + 1 < len(args) else None)
    return value == "warn"


def check_learned(
    run_dir: Path, outcomes: dict[str, np.ndarray], num_classes: int, warn_only: bool = False
) -> None:
    """Fail a run whose model collapsed on its own test split (``collapse_reason``): its
    consistency would read as the most shift-stable variant. Marks the run folder failed;
    ``warn_only`` (``-- --on_collapse warn``, smoke tests of the plumbing) only warns."""
    counts = np.bincount(outcomes["prediction"].astype(np.int64), minlength=num_classes)
    reason = collapse_reason(counts.tolist(), float(outcomes["acc"].mean()), num_classes)
    if reason is not None and warn_only:
        print(
            f"warning: {run_dir.name}: the model did not learn (--on_collapse warn): {reason}",
            file=sys.stderr,
            flush=True,
        )
    elif reason is not None:
        message = f"the model did not learn: {reason}"
        write_status(run_dir, "failed", message, EXIT_FAILED)
        raise RunFailed(message)


def active_wandb_run() -> Any:
    """The W&B run a training left open, if any (without importing wandb when unused)."""
    return sys.modules["wandb"].run if "wandb" in sys.modules else None


def finish_wandb(failed: bool) -> None:
    """End the W&B run a training left open, so the next run starts its own."""
    if active_wandb_run() is not None:
        sys.modules["wandb"].finish(exit_code=1 if failed else 0)


def log_summary(out: Path, label: str, project: str, rows: list[Row], pngs: list[Path]) -> None:
    """One W&B run of job type ``summary`` in the comparison's group: the table and the plots.

    It starts like a training's W&B run: offline when the server fails, nothing at all when
    ``WANDB_MODE=disabled``."""
    if wandb_mode() == "disabled":
        return
    init = {
        "project": project, "group": label, "job_type": "summary", "name": f"{label}-summary",
        "id": run_id(out), "resume": "allow", "dir": str(out), "tags": ["summary"],
    }  # fmt: skip
    run = start_wandb(init, out)
    import wandb

    columns = columns_of(rows)
    try:
        run.log(
            {
                "results": wandb.Table(columns=columns, data=table_data(rows, columns)),
                **{f"plots/{p.stem}": wandb.Image(str(p)) for p in pngs},
            }
        )
        run.finish()
    except Exception as err:  # the results are on disk already: W&B must not fail them
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        print(
            f"warning: W&B summary not logged ({type(err).__name__}: {reason}); the "
            f"results are in {out}",
            file=sys.stderr,
        )


def table_data(rows: Sequence[Row], columns: Sequence[str]) -> list[list[Any]]:
    """The rows as a W&B table takes them: one type per column (a W&B table refuses a column
    that mixes numbers and text): whole numbers stay ints, other numbers become floats and
    blanks None; a column with any text is all text, blanks empty."""
    cells = [[r.get(c, "") for c in columns] for r in rows]
    for i in range(len(columns)):
        values = [row[i] for row in cells if row[i] != ""]
        if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            convert: Any = int
        elif all(isinstance(v, numbers.Real) for v in values):
            convert = float
        else:
            convert = str
        for row in cells:
            blank = None if convert is not str else ""
            row[i] = blank if row[i] == "" else convert(row[i])
    return cells


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def experiment_of(args: argparse.Namespace) -> Experiment:
    """The experiment's preset for the chosen dataset, with ``--protocols`` when given."""
    experiment = get_experiment(args.experiment, args.dataset)
    if args.protocols is None:
        return experiment
    return replace(experiment, protocols=tuple(parse_protocols(args.protocols)))


def compare(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the comparison; returns the exit code (1 if a run failed, 130 or 143 if a signal
    stopped it)."""
    experiment = experiment_of(args)
    variants = list(dict.fromkeys(args.variants or experiment.variants))
    experiment.check_variants(variants)
    check_extra(extra)
    shard = parse_shard(args.shard) if args.shard else None
    label = label_of(args)
    out = args.out or Path("results") / label
    options = {
        "experiment": args.experiment, "dataset": args.dataset, "backbone": args.backbone,
        "quick": args.quick, "training_options": extra,
        "protocols": None if args.protocols is None else list(experiment.protocols),
    }  # fmt: skip
    check_comparison(out, options)
    start = time.monotonic()
    common = common_args(args, experiment, extra, out)
    if args.tune:
        return tune(experiment, label, variants, common, out, shard, args.reuse_runs)
    tuning = read_tuning(out)
    arms = [(variant, setting) for setting in experiment.settings() for variant in variants]
    if tuning is not None and (untuned := untuned_arms(tuning, arms)):
        raise ValueError(
            f"{out / TUNING_JSON}: {tuning['finished']} of {tuning['trials']} tuning runs have "
            f"finished; finish --tune (every shard) for {', '.join(untuned)} before their "
            "comparison runs, or compare the tuned arms only (--variants)"
        )
    runs = plan(experiment, label, variants, args.seeds, common, tuning)
    names = [run.name for run in runs]
    if shard is not None:
        return run_shard(shard, runs, experiment, out, options, args.reuse_runs)
    absorb_shards(out, options, names, merge=args.merge)
    if args.merge:
        rows, stopped = read_rows(out / RESULTS_CSV), 0
        done = {row["run"] for row in rows}
        failures = [f"{name}: no row in any shard" for name in names if name not in done]
        problem = mixed_code(rows)
        if rows and problem and not args.allow_mixed_code:
            raise ValueError(
                f"--merge: the runs do not come from one clean commit ({problem}), so the "
                "table would not repeat from one commit; rerun them at one committed state, "
                "or pass --allow-mixed-code to merge anyway (results.md will say so)"
            )
    else:
        rows, failures, stopped = run_all(runs, experiment, out, reuse=args.reuse_runs)
    if rows:
        rows = [row | experiment.derived(row) for row in rows]
        command = command_of(args, experiment, extra, rows)
        overrides = [*(QUICK if args.quick else ()), *extra]
        setup = f"{args.dataset}, {experiment.describe(overrides)}"
        setup += " (--quick)" if args.quick else ""
        exact = shlex.join(["python", "recipes/compare.py", *args.argv])
        run_s = sum(float(r["wall_s"]) for r in rows)
        code = code_markdown(rows, args.allow_mixed_code)
        origin = markdown_block(provenance(exact, time.monotonic() - start, run_s, code))
        arms = list(dict.fromkeys((r["variant"], r["setting"]) for r in rows))
        sections = [
            *convergence_markdown(rows, experiment.budget(overrides)),
            *tuning_markdown(read_tuning(out), arms),
        ]
        md = markdown(
            args.experiment,
            experiment.summary,
            setup,
            command,
            rows,
            experiment.columns(),
            outcomes_of_rows(out, rows),
            "\n".join(sections) + "\n" + origin,
        )
        md = mark_incomplete(md, names, rows)
        atomic_write_text(out / RESULTS_MD, md)
        have = {row["run"] for row in rows}
        done = sum(name in have for name in names)
        note = f"incomplete: {done} of {len(names)} runs" if done < len(names) else ""
        pngs = write_plots(
            out, rows, experiment.scatter(), experiment.regions, experiment.placement, note
        )
        pngs.append(save_figure(plot_learning_curves(out, rows), out / LEARNING_CURVES_PNG))
        if args.logger == "wandb" and not stopped:
            log_summary(out, label, args.project, rows, pngs)
        print(md)
        print(f"results in {out}: {RESULTS_CSV}, {RESULTS_MD}, {', '.join(p.name for p in pngs)}")
    print(f"total time {_duration(time.monotonic() - start)}")
    if failures:
        print(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return stopped or (1 if failures else 0)


def mark_incomplete(md: str, names: list[str], rows: list[Row]) -> str:
    """Say at the top of the report, and in the part the README copies, that runs are missing
    (a stopped comparison, a failed run, a merge without every shard), and which."""
    have = {row["run"] for row in rows}
    missing = [name for name in names if name not in have]
    if not missing:
        return md
    note = (
        f"**incomplete: {len(names) - len(missing)} of {len(names)} runs**; missing: "
        f"{', '.join(missing)}\n"
    )
    marker = README_BLOCK[0] + "\n"
    if marker in md:
        return md.replace(marker, marker + note + "\n", 1)
    return note + "\n" + md


def save_figure(fig: Any, path: Path) -> Path:
    """Write a figure as PNG and free it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tune(
    experiment: Experiment,
    label: str,
    variants: list[str],
    common: list[str],
    out: Path,
    shard: Shard | None = None,
    reuse: Sequence[Path] = (),
) -> int:
    """Train every arm once per grid point (seed 0, no test; with ``shard``, its slice only)
    and record the choices by validation accuracy in ``tuning.json``, rebuilt after each run
    from every finished tuning run, so shards share it; returns the exit code. A trial that
    a run in the ``reuse`` results folders trained already is adopted from there."""
    arms = [(variant, setting) for setting in experiment.settings() for variant in variants]
    names = {arm_of(*arm) for arm in arms}
    rows = read_rows(out / RESULTS_CSV)
    if trained := [r for r in rows if arm_of(r["variant"], r["setting"]) in names]:
        raise ValueError(
            f"--tune: {out} already holds {len(trained)} comparison run(s) of "
            f"{', '.join(sorted({arm_of(r['variant'], r['setting']) for r in trained}))}, "
            "trained before this tuning; tune an arm before its comparison runs (or delete "
            "that folder to start over)"
        )
    grid = experiment.tuning_grid
    found = trials(label, grid, arms)
    runs_dir = tuning_runs(out)
    settings = experiment.settings()
    mine = select(found, shard) if shard is not None else found
    candidates = run_folders(reuse)
    failures = []
    for i, trial in enumerate(mine, 1):
        print(f"[{i}/{len(mine)}] tuning {trial.name}", flush=True)
        args = (
            *common,
            *settings[trial.setting],
            *trial.args(),
            "--runs_dir",
            str(runs_dir),
            "--trainer.limit_test_batches",
            "0",
            "--variant",
            trial.variant,
            "--seed_everything",
            str(TUNING_SEED),
            "--run_name",
            trial.name,
        )
        try:
            train_or_reuse(args, trial.name, runs_dir, candidates)
        except StoppedEarly:
            print("tuning stopped; rerun the same command to resume it", file=sys.stderr)
            return 130
        except USER_ERRORS as err:
            failures.append(f"{trial.name}: {err}")
            print(f"error: {trial.name} failed: {err}", file=sys.stderr, flush=True)
            continue
        finally:
            finish_wandb(failed=False)
        record_tuning(out, experiment, label, variants)
    tuning = read_tuning(out)
    print("\n".join(tuning_markdown(tuning, arms)))
    print(f"choices in {out / TUNING_JSON}; the comparison's runs read them from there")
    if failures:
        print(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return 1 if failures else 0


def record_tuning(out: Path, experiment: Experiment, label: str, variants: list[str]) -> None:
    """Rebuild ``tuning.json`` from every finished tuning run of ``variants``' arms and of the
    arms the file lists already, so that shards, and processes tuning different
    ``--variants``, add up to one file instead of overwriting each other's arms."""
    listed = read_tuning(out) or {"arms": {}}
    wanted = {*variants, *(arm.split("/")[0] for arm in listed["arms"])}
    arms = [(v, s) for s in experiment.settings() for v in VARIANTS if v in wanted]
    found = trials(label, experiment.tuning_grid, arms)
    runs_dir = tuning_runs(out)
    records: dict[str, list[dict]] = {arm_of(v, s): [] for v, s in arms}
    for trial in found:
        if (done := finished_run(runs_dir, trial.name)) is not None:
            records[trial.arm].append(trial_record(trial, done))
    document = tuning_document(experiment.tuning_grid, experiment.steps, records, len(found))
    atomic_write_json(out / TUNING_JSON, document)


def finished_run(runs_dir: Path, name: str) -> Path | None:
    """The newest folder of run ``name`` whose training finished (its test metrics written),
    if any, with or without its checkpoints: a published run keeps its record, not its
    weights, so a comparison continued from a fresh clone reuses it instead of training it
    again."""
    for _, run_dir in reversed(versions(runs_dir, name)):
        if (run_dir / TEST_METRICS).is_file():
            return run_dir
    return None


def run_shard(
    shard: Shard,
    runs: list[Run],
    experiment: Experiment,
    out: Path,
    options: dict[str, object],
    reuse: Sequence[Path] = (),
) -> int:
    """Train one shard's runs into its own CSV; its manifest marks it finished for the merge."""
    mine = select(runs, shard)
    print(f"shard {shard.label}: {len(mine)} of {len(runs)} runs", flush=True)
    shard.csv(out).parent.mkdir(parents=True, exist_ok=True)
    _, failures, stopped = run_all(mine, experiment, out, shard.csv(out), reuse)
    if stopped:
        return stopped
    write_manifest(out, shard, options, [run.name for run in runs])
    print(
        f"shard {shard.label} finished: rows in {shard.csv(out)}; merge all shards with the "
        "same command, --shard replaced by --merge"
    )
    if failures:
        print(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return 1 if failures else 0


def absorb_shards(out: Path, options: dict[str, object], names: list[str], merge: bool) -> None:
    """Fold the finished shards' rows into ``results.csv`` (in plan order).

    With ``merge``, every shard of the split must have finished.
    """
    rows, count = shard_rows(out, options, names)
    if merge and count == 0:
        raise ValueError(
            f"--merge: no finished shard under {out / SHARDS_DIR}; run the comparison with "
            "--shard I/N first (or without --merge to run it whole)"
        )
    if merge and (missing := missing_shards(out, count)):
        raise ValueError(
            f"--merge: shard(s) {', '.join(missing)} have not finished; run them with the same "
            "command and --shard I/N, then merge"
        )
    existing = read_rows(out / RESULTS_CSV)
    have = {row["run"] for row in existing}
    new = [row for row in rows if row["run"] not in have]
    if new:
        order = {name: i for i, name in enumerate(names)}
        merged = sorted(existing + new, key=lambda row: order.get(row["run"], len(order)))
        write_rows(out / RESULTS_CSV, merged)


def run_all(
    runs: list[Run],
    experiment: Experiment,
    out: Path,
    csv_path: Path | None = None,
    reuse: Sequence[Path] = (),
) -> tuple[list[Row], list[str], int]:
    """Execute the runs not in ``csv_path`` (``results.csv``) yet, adding each row to it.

    Each run is trained under its own lock, so two processes given the same runs (two jobs of
    one shard) never train one twice: the second waits, then takes the first one's row.
    Returns all rows, the failed runs with their reasons, and the exit code of the signal that
    stopped it (0 when none did).
    """
    csv_path = csv_path or out / RESULTS_CSV
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    rows = read_rows(csv_path)
    done = {r["run"] for r in rows if measured_intact(r, out)}  # else measured again
    todo = sum(run.name not in done for run in runs)
    failures: list[str] = []
    durations: list[float] = []
    start = time.monotonic()
    for i, run in enumerate(runs, 1):
        where = f"[{i}/{len(runs)}] {run.name}"
        if run.name in done:
            print(f"{where}: finished before, skipped", flush=True)
            continue
        left = (
            f"about {_duration(sum(durations) / len(durations) * todo)} left"
            if durations
            else "time left known after the first run"
        )
        print(
            f"{where}: {run.variant} seed {run.seed} ({run.setting}), "
            f"elapsed {_duration(time.monotonic() - start)}, {left}",
            flush=True,
        )
        run_start, row = time.monotonic(), None
        waiting = partial(print, f"{where}: another process is training it; waiting", flush=True)
        try:
            with file_lock(runs_dir / f".{run.name}.lock", on_wait=waiting):
                rows = read_rows(csv_path)  # another process may have finished it meanwhile
                if any(r["run"] == run.name and measured_intact(r, out) for r in rows):
                    print(f"{where}: finished by another process, skipped", flush=True)
                    continue
                row = execute(run, experiment, runs_dir, reuse)
                rows = add_row(csv_path, row)
        except StoppedEarly as stop:
            print(f"{where}: stopped; rerun the same command to resume it", file=sys.stderr)
            return rows, failures, stop.exit_code
        except Interrupted as stop:  # a signal outside training (measuring, starting)
            print(
                f"{where}: stopped by {stop}; rerun the same command to resume it", file=sys.stderr
            )
            return rows, failures, 128 + stop.signum
        except (Exception, SystemExit) as err:  # one failed run must not lose the others
            if not isinstance(err, (*USER_ERRORS, SystemExit)):
                traceback.print_exc()
            reason = "invalid training options" if isinstance(err, SystemExit) else str(err)
            failures.append(f"{run.name}: {type(err).__name__}: {reason}")
            print(f"error: {where} failed: {reason}", file=sys.stderr, flush=True)
        finally:
            finish_wandb(failed=row is None)
            todo -= 1
        if row is not None:
            durations.append(time.monotonic() - run_start)
    return rows, failures, 0


def add_row(csv_path: Path, row: Row) -> list[Row]:
    """Add a run's row to a results CSV shared with other processes (re-read under a lock,
    written atomically): appended, or in place of the run's older row; returns every row."""
    with file_lock(csv_path.with_name(f".{csv_path.name}.lock")):
        rows = read_rows(csv_path)
        same = [i for i, r in enumerate(rows) if r["run"] == row["run"]]
        if same:
            rows[same[0]] = row
        else:
            rows.append(row)
        write_rows(csv_path, rows)
    return rows


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The comparison's options, and the training options after ``--``."""
    ours, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="experiments:\n"
        + "\n".join(f"  {e.name:<19} {e.summary}" for e in EXPERIMENTS.values())
        + "\n\ntraining options for every run follow '--' (see recipes/train.py --help)",
    )
    parser.add_argument("--experiment", required=True, choices=list(EXPERIMENTS))
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="variants to compare (default: the experiment's)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="seeds 0 .. N-1 per variant (initialisation and augmentation; the split is fixed)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        choices=[d for d in DATASETS if d != "folder"],
        help="default: the experiment's ("
        + ", ".join(f"{e.dataset} for {e.name}" for e in EXPERIMENTS.values())
        + ")",
    )
    parser.add_argument("--backbone", default=DEFAULTS.backbone, choices=list(BACKBONES))
    parser.add_argument(
        "--protocols",
        nargs="+",
        default=None,
        metavar="NAME",
        help="named protocols measured on each run's tested checkpoint, with per-image outcomes "
        "(default: the experiment's; "
        "see recipes/evaluate.py --list-protocols)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke test of the pipeline, not numbers to report: {' '.join(QUICK)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: results/EXPERIMENT[-DATASET][-quick])",
    )
    parser.add_argument("--logger", default="wandb", choices=["wandb", "csv", "none"])
    parser.add_argument("--project", default="invariance-recipes", help="W&B project")
    jobs = parser.add_mutually_exclusive_group()
    jobs.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help="train only the I-th (from 0) of N disjoint slices of the runs, into shards/",
    )
    jobs.add_argument(
        "--merge",
        action="store_true",
        help="train nothing: fold the finished shards into results.csv, the table and plots",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="train every arm once per point of the experiment's grid (seed 0) and record "
        "the choice by validation accuracy in tuning.json, which the comparison then reads",
    )
    parser.add_argument(
        "--reuse-runs",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="results folders of other comparisons: a run or tuning run of this one that a "
        "finished run there trained already (same options and seed, checkpoints kept) is "
        "adopted from there and only tested",
    )
    parser.add_argument(
        "--allow-mixed-code",
        action="store_true",
        help="let --merge fold runs from different commits or a dirty tree (results.md says so)",
    )
    args = parser.parse_args(ours)
    args.argv = list(argv)  # the exact command, for the provenance
    args.dataset = args.dataset or EXPERIMENTS[args.experiment].dataset
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: pass at least 1")
    for folder in args.reuse_runs:
        if not folder.is_dir():
            parser.error(f"--reuse-runs {folder}: no such folder; pass a comparison's --out")
    if args.tune and args.merge:
        parser.error("--tune trains the tuning runs; --merge trains nothing: pass one of them")
    return args, extra


def compare_command(argv: list[str]) -> int:
    """``compare.py``: run a comparison, errors as one line; returns the exit code (SIGTERM
    stops it as a training stops: the run in progress saves its state, exit 143)."""
    args, extra = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return compare(args, extra)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        print(
            f"\nstopped by {signal.Signals(signum).name}: results so far are in {RESULTS_CSV}; "
            "rerun the same command to continue",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)
