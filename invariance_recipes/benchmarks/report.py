"""The report: the machine that measured, the rows as CSV and as a Markdown table."""

from __future__ import annotations

import csv
import os
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import lightning as L
import torch

from invariance_recipes.benchmarks.layers import PEERS
from invariance_recipes.benchmarks.rows import COLUMNS, Row


def describe_machine(device: torch.device) -> str:
    """CPU model and cores, the GPU if used, and the versions that set the numbers."""
    parts = [f"{_cpu_model()}, {os.cpu_count()} logical cores"]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    parts += [f"torch {torch.__version__}", f"lightning {L.__version__}"]
    parts += [f"{name} {_version(name)}" for name in PEERS]
    parts.append(f"Python {platform.python_version()}")
    return "; ".join(parts)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            values = asdict(row) | {"holds": row.verdict}
            for key in ("ours_ms", "baseline_ms", "ratio", "ratio_q1", "ratio_q3", "target"):
                values[key] = f"{values[key]:.4g}"
            writer.writerow(values)


def markdown(rows: list[Row], command: str, machine: str, notes: list[str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine}",
        "",
        "ratio = ours' time per call / the baseline's, the median over interleaved rounds "
        "(lower is faster); spread = interquartile range of the per-round ratios; target = "
        "the largest ratio aimed for (none: a cost measured, not a goal).",
        "",
        "| section | threads | setting | ours | baseline | ours ms | baseline ms | ratio "
        "| spread | target | holds? | note |",
        "|---|---:|---|---|---|---:|---:|---:|---|---:|---|---|",
    ]
    for row in rows:
        cells = [
            row.section,
            str(row.threads),
            row.setting,
            row.ours,
            row.baseline,
            f"{row.ours_ms:.3g}",
            f"{row.baseline_ms:.3g}",
            f"{row.ratio:.3g}",
            f"{row.ratio_q1:.3g}-{row.ratio_q3:.3g}",
            row.target_text,
            "**no**" if row.verdict == "no" else row.verdict,
            row.note,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"
