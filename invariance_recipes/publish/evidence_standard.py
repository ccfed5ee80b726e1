"""The standard the arms behind a published claim must meet, whatever their intervals say.

The design's convergence, tuning and statistics rules: every arm a claim reads has at least
``PUBLISHED_SEEDS`` seeds that trained, every run records whether its validation accuracy
plateaued at the step budget (``results.csv``'s ``plateaued``), and the arm's learning rate was
tuned on validation (``tuning.json``). A table short of any of these measures the training
budget or the draw of a few seeds as much as the method, so a claim read from it is reported
with its numbers but is not established.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from invariance_recipes.compare.results import Row
from invariance_recipes.compare.run_rule import parse_flag
from invariance_recipes.compare.tuning import untuned_arms

#: The fewest seeds of an arm a published claim rests on (runs left out by the run rule do not
#: count).
PUBLISHED_SEEDS = 5


def arm_shortfalls(
    rows: Sequence[Row], tuning: Mapping[str, Any] | None, variant: str, setting: str
) -> dict[str, int]:
    """What one arm lacks, keyed by shortfall (the value: the arm's seeds, for ``seeds``)."""
    lacking: dict[str, int] = {}
    if len(rows) < PUBLISHED_SEEDS:
        lacking["seeds"] = len(rows)
    if any(parse_flag(row.get("plateaued", "")) == "" for row in rows):
        lacking["plateau record"] = 1
    if tuning is None or untuned_arms(tuning, [(variant, setting)]):
        lacking["tuning"] = 1
    return lacking


def describe_shortfalls(experiment: str, per_arm: Sequence[Mapping[str, int]]) -> str:
    """One experiment's shortfalls over the arms a claim reads, in words ("" if none)."""
    parts = []
    seeds = [lacking["seeds"] for lacking in per_arm if "seeds" in lacking]
    if seeds:
        parts.append(f"{min(seeds)} seeds an arm, {PUBLISHED_SEEDS} needed")
    if any("plateau record" in lacking for lacking in per_arm):
        parts.append("runs without a plateau record")
    if any("tuning" in lacking for lacking in per_arm):
        parts.append("arms not tuned on validation")
    return f"{experiment}: {', '.join(parts)}" if parts else ""
