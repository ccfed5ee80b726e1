"""The imports section: what ``import invariance_recipes.lightning_modules.layers`` costs a user's process,
against ``import torch`` (which it needs anyway), timed as whole fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from invariance_recipes.benchmarks.rows import Config, Row, compare
from invariance_recipes.benchmarks.timing import alternate

TARGET = 1.3  # the layers may cost at most this many times ``import torch``


def import_seconds(module: str) -> float:
    """Wall seconds of a fresh ``python -c "import MODULE"``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def import_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """``import invariance_recipes.lightning_modules.layers`` against ``import torch``, alternating processes."""
    timings = alternate(
        {
            "import invariance_recipes.lightning_modules.layers": lambda: import_seconds(
                "invariance_recipes.lightning_modules.layers"
            ),
            "import torch": lambda: import_seconds("torch"),
        },
        cfg.import_runs,
    )
    setting = f"fresh interpreter, median of {cfg.import_runs}"
    return [
        compare(
            timings,
            "imports",
            setting,
            "import invariance_recipes.lightning_modules.layers",
            "import torch",
            TARGET,
            "the layers need only torch; Lightning and torchmetrics stay unimported",
        )
    ]
