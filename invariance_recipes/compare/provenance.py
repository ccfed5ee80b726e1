"""Where a results file came from: code, packages, machine, date, time and command.

A number in a table is only reproducible with these; every ``results.md`` ends with them.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path

import torch

PACKAGES = ("torch", "lightning", "torchmetrics", "albumentations")
REPOSITORY = Path(__file__).resolve().parent.parent


def _git(*args: str, repository: Path = REPOSITORY) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=repository, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def commit(repository: Path = REPOSITORY) -> str:
    """The checked-out commit and whether tracked or untracked files differ from it, apart from
    ``docs/results/``, where the comparisons write the very files this provenance goes into."""
    head = _git("rev-parse", "HEAD", repository=repository)
    if head is None:
        return "unknown (not a git checkout)"
    status = ("status", "--porcelain", "--untracked-files=normal", "--", ".", ":!docs/results")
    dirty = _git(*status, repository=repository)
    return f"{head} ({'dirty: uncommitted changes' if dirty else 'clean'})"


def package_versions() -> dict[str, str]:
    """The versions of the packages that change the numbers, as the modules report them
    (torch's includes its build, e.g. ``+cpu``)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = str(import_module(name).__version__)
        except ImportError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> str:
    """CPU model, logical cores, torch's thread count and the GPU if one is used."""
    text = f"{cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def provenance(command: str, wall_s: float, run_s: float | None = None) -> dict[str, str]:
    """Every provenance field by name, measured now.

    Args:
        command: the exact command that produced the file.
        wall_s: wall time of the command that wrote the file.
        run_s: the summed time of all runs in the file (they may span several invocations,
            since a comparison resumes).
    """
    times = f"{wall_s:.0f} s this invocation"
    if run_s is not None:
        times += f"; {run_s:.0f} s summed over all runs"
    return {
        "commit": commit(),
        "packages": ", ".join(f"{k} {v}" for k, v in package_versions().items()),
        "python": platform.python_version(),
        "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall time": times,
        "command": f"`{command}`",
    }


def markdown_block(fields: dict[str, str]) -> str:
    """The provenance as a markdown section."""
    return "## Provenance\n\n" + "".join(f"- {k}: {v}\n" for k, v in fields.items())
