"""Run the recipes as a user does: processes of their own running ``python recipes/<script>``
(forks of a preloaded interpreter, see ``preloaded_python.py``)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# A small slice of digits, one epoch, no loader workers: a whole run in seconds. So few steps
# may not learn yet: the plumbing is what these runs test, so a collapse only warns.
QUICK = [
    "--max_epochs", "1", "--data.max_samples", "100", "--data.batch_size", "50",
    "--data.num_workers", "0", "--model.curve_max_shift", "3",
    "--trainer.enable_progress_bar", "false", "--on_collapse", "warn",
]  # fmt: skip


#: Images per split of a QUICK run (its test images too).
QUICK_IMAGES = int(QUICK[QUICK.index("--data.max_samples") + 1])


def recipe_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(PYTHONUNBUFFERED="1", WANDB_MODE="offline", WANDB_SILENT="true")
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def run_recipe(
    script: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python recipes/SCRIPT ARGS`` in ``cwd``, as a fork of this worker's preloaded
    interpreter (``preloaded_python.py``: the same run without importing the stack again)."""
    return _preloaded_python().run(
        ROOT / "recipes" / script, list(args), cwd=cwd, env=env or recipe_env(), timeout=timeout
    )


@functools.cache
def _preloaded_python() -> Any:
    """This test process's preloaded interpreter, started by its first run_recipe."""
    from preloaded_python import PreloadedPython

    return PreloadedPython()


def run_recipes(
    runs: dict[str, tuple[str, list[str], dict[str, str]]],
    *,
    cwd: Path | dict[str, Path],
    workers: int = 2,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Several independent recipe runs (name -> script, args, env), ``workers`` at a time with
    one torch thread each: the same runs as one after another, in about half the time on
    two cores. ``cwd``: one folder for all, or a folder per run name."""
    from concurrent.futures import ThreadPoolExecutor

    def start(name: str) -> subprocess.CompletedProcess[str]:
        script, args, env = runs[name]
        folder = cwd[name] if isinstance(cwd, dict) else cwd
        return run_recipe(script, *args, cwd=folder, env={**env, "OMP_NUM_THREADS": "1"})

    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(runs, pool.map(start, runs), strict=True))


def read_test_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "test_metrics.json").read_text())


def is_share_of(value: float, images: int) -> bool:
    """Whether ``value`` is ``k / images`` for a whole number ``k``: a share of test images,
    as accuracy, consistency and flip rate must be (float32 rounding allowed)."""
    count = value * images
    return 0 <= round(count) <= images and abs(count - round(count)) < 1e-3
