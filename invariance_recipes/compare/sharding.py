"""Split a comparison into ``n`` disjoint shards that run as separate jobs, then merge them.

Each shard trains the runs whose position in the plan's *sorted run names* is ``i`` modulo
``n``, so the slices are disjoint, cover the plan, are balanced to within one run and do not
depend on which job starts first. A shard writes its rows to ``shards/shard-I-of-N.csv`` beside
the comparison's options and its full plan (``shard-I-of-N.json``); the merge refuses shards
whose options or plan differ from the comparison being merged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from invariance_recipes.common.atomic_write import atomic_write_json
from invariance_recipes.compare.results import Row, read_rows

SHARDS_DIR = "shards"


class Named(Protocol):
    @property
    def name(self) -> str: ...


RunT = TypeVar("RunT", bound=Named)


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (from 0) of ``count`` slices of a comparison's runs."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def stem(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def csv(self, out: Path) -> Path:
        return out / SHARDS_DIR / f"{self.stem}.csv"

    def manifest(self, out: Path) -> Path:
        return out / SHARDS_DIR / f"{self.stem}.json"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (``0 <= I < N``) as a :class:`Shard`, or a one-line error."""
    index, sep, count = text.partition("/")
    if sep and index.isdigit() and count.isdigit() and int(index) < int(count):
        return Shard(int(index), int(count))
    raise ValueError(
        f"--shard {text!r}: pass I/N with 0 <= I < N, e.g. --shard 0/4 "
        "(in a SLURM array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
    )


def select(runs: Sequence[RunT], shard: Shard) -> list[RunT]:
    """The shard's runs, in plan order: every ``count``-th of the sorted run names."""
    position = {name: i for i, name in enumerate(sorted(run.name for run in runs))}
    return [run for run in runs if position[run.name] % shard.count == shard.index]


def write_manifest(out: Path, shard: Shard, options: dict[str, Any], plan: Sequence[str]) -> None:
    """Record what the shard belongs to: the comparison's options and its whole plan."""
    path = shard.manifest(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"shard": shard.label, "options": options, "plan": list(plan)}
    atomic_write_json(path, manifest)


def shard_rows(out: Path, options: dict[str, Any], plan: Sequence[str]) -> tuple[list[Row], int]:
    """All rows the shards under ``out`` wrote, in plan order, and how many shards made them.

    Refuses shards of another comparison (other options or another plan) and a mix of
    different shard counts. Returns no rows and 0 when there are no shards.
    """
    manifests = sorted((out / SHARDS_DIR).glob("shard-*-of-*.json"))
    counts = set()
    by_run: dict[str, Row] = {}
    for path in manifests:
        manifest = json.loads(path.read_text())
        shard = parse_shard(manifest["shard"])
        if manifest["options"] != options or manifest["plan"] != list(plan):
            what = "options" if manifest["options"] != options else "runs (variants or seeds)"
            raise ValueError(
                f"{path} was made by a comparison with other {what}; merge it with the "
                "same compare.py options it ran with, or delete that shard"
            )
        counts.add(shard.count)
        by_run |= {row["run"]: row for row in read_rows(shard.csv(out))}
    if len(counts) > 1:
        raise ValueError(
            f"{out / SHARDS_DIR} mixes shards of {sorted(counts)} slices; keep the files of one "
            "--shard I/N split and delete the others"
        )
    return [by_run[name] for name in plan if name in by_run], counts.pop() if counts else 0


def missing_shards(out: Path, count: int) -> list[str]:
    """The ``I/N`` labels of shards that have not written their manifest yet."""
    return [
        Shard(i, count).label for i in range(count) if not Shard(i, count).manifest(out).is_file()
    ]
