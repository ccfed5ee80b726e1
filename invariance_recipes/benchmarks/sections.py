"""The registry of benchmark sections: adding a section is one :class:`Section` entry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from invariance_recipes.benchmarks.blur_paths import blur_path_rows
from invariance_recipes.benchmarks.comparison import comparison_rows
from invariance_recipes.benchmarks.compiled import compile_rows
from invariance_recipes.benchmarks.imports import import_rows
from invariance_recipes.benchmarks.layers import layer_rows
from invariance_recipes.benchmarks.micro_batch import micro_batch_rows
from invariance_recipes.benchmarks.rows import Config, Row
from invariance_recipes.benchmarks.training import (
    layout_rows,
    training_rows,
    validation_rows,
    variant_rows,
)
from invariance_recipes.benchmarks.translate import translate_rows


@dataclass(frozen=True)
class Section:
    """``rows(config, device, notes)``; ``per_thread_count``: run once per thread count
    (``False``: at the first count only, for what torch's threads do not change, such as
    starting a process, or what takes too long to repeat, such as whole comparison runs);
    ``by_default``: part of a run without ``--only`` (``False`` for measurements that only
    maintainers need, such as those behind a choice table)."""

    rows: Callable[[Config, torch.device, list[str]], list[Row]]
    per_thread_count: bool = True
    by_default: bool = True


SECTIONS: Mapping[str, Section] = MappingProxyType(
    {
        "layers": Section(layer_rows),
        "translate": Section(translate_rows),
        "validation": Section(validation_rows),
        "training": Section(training_rows),
        "layout": Section(layout_rows),
        "variants": Section(variant_rows),
        # the measurements behind each Downsampler.compile: a compilation per variant and
        # thread count (minutes on a 2-core CPU)
        "compile": Section(compile_rows, by_default=False),
        # the measurements behind each Downsampler.micro_batch_values
        "micro-batch": Section(micro_batch_rows, by_default=False),
        "imports": Section(import_rows, per_thread_count=False),
        # a whole comparison run per arm: over an hour at one thread count on a 2-core CPU
        "comparison": Section(comparison_rows, per_thread_count=False),
        # the measurements behind lightning_modules/layers/blur_paths.py
        "blur-paths": Section(blur_path_rows, by_default=False),
    }
)
