"""Where a results file came from: code, packages, machine, date, time and command.

A number in a table is only reproducible with these; every ``results.md`` ends with them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path
from typing import Any

import torch

# The packages that build the data, train, measure and compute the statistics: the name a
# reader installs, and the module that reports its version.
PACKAGES = {
    "torch": "torch",
    "lightning": "lightning",
    "torchmetrics": "torchmetrics",
    "albumentations": "albumentations",
    "numpy": "numpy",
    "scikit-learn": "sklearn",
    "scipy": "scipy",
    "opencv": "cv2",
    "matplotlib": "matplotlib",
}
REPOSITORY = Path(__file__).resolve().parents[2]
STARTED_JSON = "started.json"  # in a run folder: the code the run started from


def _git(*args: str, repository: Path = REPOSITORY) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=repository, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def code_state(repository: Path = REPOSITORY) -> dict[str, Any]:
    """The checked-out commit (``None`` outside a git checkout) and whether tracked or
    untracked files differ from it, apart from ``docs/results/``, where the comparisons write
    the very files this provenance goes into."""
    head = _git("rev-parse", "HEAD", repository=repository)
    if head is None:
        return {"commit": None, "dirty": True}
    status = ("status", "--porcelain", "--untracked-files=normal", "--", ".", ":!docs/results")
    return {"commit": head, "dirty": bool(_git(*status, repository=repository))}


def commit(repository: Path = REPOSITORY) -> str:
    """The commit and the dirty flag in words."""
    state = code_state(repository)
    if state["commit"] is None:
        return "unknown (not a git checkout)"
    return f"{state['commit']} ({'dirty: uncommitted changes' if state['dirty'] else 'clean'})"


def record_start(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The code a run started from: written into its folder at its first start (``state``,
    measured before it trained), read back when it resumes, so a resumed run keeps the commit
    it started from."""
    path = run_dir / STARTED_JSON
    if path.is_file():
        return json.loads(path.read_text())
    path.write_text(json.dumps(state))
    return state


def mixed_code(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the runs of a table do not come from one clean commit, or ``None`` when they do."""
    commits = sorted({str(r.get("commit") or "unknown") for r in rows})
    dirty = [str(r["run"]) for r in rows if r.get("dirty", 1) not in (0, 0.0, False)]
    problems = []
    if len(commits) > 1 or commits == ["unknown"]:
        problems.append(f"runs from {len(commits)} commits ({', '.join(c[:12] for c in commits)})")
    if dirty:
        problems.append(f"{len(dirty)} run(s) from a dirty tree or unknown code ({dirty[0]}, ...)")
    return "; ".join(problems) or None


def code_markdown(rows: Sequence[Mapping[str, Any]], allowed: bool) -> str:
    """One line for the provenance: the commit every run started from, or what is mixed."""
    problem = mixed_code(rows)
    if problem is None:
        return f"all {len(rows)} runs started from commit {rows[0]['commit']}, clean"
    note = " (merged with --allow-mixed-code)" if allowed else ""
    return f"NOT ONE CLEAN COMMIT{note}: {problem}; the table does not repeat from one commit"


def package_versions() -> dict[str, str]:
    """The versions of the packages that change the numbers, as the modules report them
    (torch's includes its build, e.g. ``+cpu``)."""
    versions = {}
    for name, module in PACKAGES.items():
        try:
            versions[name] = str(import_module(module).__version__)
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


def provenance(
    command: str, wall_s: float, run_s: float | None = None, runs_code: str | None = None
) -> dict[str, str]:
    """Every provenance field by name, measured now.

    Args:
        command: the exact command that produced the file.
        wall_s: wall time of the command that wrote the file.
        run_s: the summed time of all runs in the file (they may span several invocations,
            since a comparison resumes).
        runs_code: the commit the runs started from (:func:`code_markdown`); ``commit`` is
            the code of this invocation.
    """
    times = f"{wall_s:.0f} s this invocation"
    if run_s is not None:
        times += f"; {run_s:.0f} s summed over all runs"
    return {
        "commit": commit(),
        **({"runs' code": runs_code} if runs_code else {}),
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
