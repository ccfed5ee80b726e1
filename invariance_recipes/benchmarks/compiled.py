"""The compile section: every variant's small CNN trained with ``--model.compile`` against the
same network run eagerly, and what the compilation costs: the measurement behind each
downsampling method's ``Downsampler.compile`` default.

A compiled step only pays when the steps it saves outweigh the compilation, so each row's note
gives the seconds the first compiled step took beyond an eager one (inductor's caches off: a
fresh machine's cost) and the steps after which the compilation has paid for itself.
"""

from __future__ import annotations

import itertools
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from invariance_recipes.benchmarks.rows import Config, Row, compare, device_sync
from invariance_recipes.benchmarks.timing import alternate
from invariance_recipes.benchmarks.training import LAYOUT_INPUTS, model_options, timed_batches
from invariance_recipes.lightning_modules import InvarianceClassifier
from invariance_recipes.lightning_modules.variants import VARIANTS


def compile_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """Every variant's compiled training step against its eager one (the one-quadrant
    comparisons' 3x48x48 input, each variant's default memory layout). A variant whose
    compilation fails gets a note with the compiler's first line instead of a row: a failure
    is a measurement too, and the other variants still run."""
    rows = []
    for name in VARIANTS:
        try:
            rows.append(compile_row(cfg, device, name))
        except Exception as err:  # inductor raises many types; each is a failed compilation
            first = (str(err).strip().splitlines() or [""])[0][:200]
            notes.append(
                f"compile: {name} failed at {torch.get_num_threads()} threads "
                f"({type(err).__name__}: {first})"
            )
        finally:
            torch.compiler.reset()
    return rows


def compile_row(cfg: Config, device: torch.device, variant: str) -> Row:
    channels, side = LAYOUT_INPUTS["small-cnn"]
    models = {}
    for compiled in (False, True):
        torch.manual_seed(0)  # the same initial weights in both
        models[compiled] = InvarianceClassifier(
            **model_options(variant),
            in_channels=channels,
            image_size=side,
            scheduler="none",
            compile=compiled,
        ).to(device)
    initial = {key: value.clone() for key, value in models[False].state_dict().items()}
    x = torch.randn(cfg.layout_batch_size, channels, side, side, device=device)
    y = torch.randint(0, 10, (cfg.layout_batch_size,), device=device)
    sync = device_sync(device)

    def steps(model: InvarianceClassifier, count: int) -> float:
        """Seconds per step of ``count`` AdamW steps from the initial weights."""
        model.load_state_dict(initial)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(images: Tensor, labels: Tensor) -> None:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()

        return timed_batches(itertools.repeat((x, y), count + cfg.skip), cfg.skip, device, step)

    torch.compiler.reset()  # a fresh compilation, whatever this process compiled before
    with torch._inductor.config.patch(force_disable_caches=True):
        sync()
        start = time.perf_counter()
        steps(models[True], 1)  # its first step compiles forward and backward
        first = time.perf_counter() - start
    timings = alternate(
        {
            "compiled step": lambda: steps(models[True], cfg.layout_batches),
            "eager step": lambda: steps(models[False], cfg.layout_batches),
        },
        cfg.run_rounds,
    )
    eager = timings.median("eager step")
    compilation = max(first - (cfg.skip + 1) * eager, 0.0)  # those steps' own work, eagerly
    ratio, _, _ = timings.ratio("compiled step", "eager step")
    saved = eager * (1 - ratio)  # per step, from the paired ratio the row reports
    payback = (
        f"pays for itself after {math.ceil(compilation / saved):,} steps"
        if saved > 0
        else "never pays for itself"
    )
    setting = (
        f"{variant} small-cnn, {cfg.layout_batch_size}x{channels}x{side}x{side}, "
        f"{cfg.layout_batches} AdamW steps"
    )
    note = f"compilation {compilation:.3g} s (caches off); {payback}"
    return compare(timings, "compile", setting, "compiled step", "eager step", 1.0, note)
