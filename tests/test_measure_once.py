"""One measurement per trained run: ShiftReport's per-image outcomes are exactly what its
metrics count, and every consistency column is named by one key builder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invariance_recipes.compare.experiments import EXPERIMENTS
from invariance_recipes.lightning_modules.metrics import ShiftReport
from invariance_recipes.lightning_modules.shifts import sample_offset_pair, translate
from invariance_recipes.measure.evaluation import consistency_key


def test_per_image_outcomes_average_to_the_reported_shares() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    )
    report = ShiftReport(max_shift=3, modes=("zero", "circular"), seed=7)
    counted: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for _ in range(3):
            x, y = torch.rand(16, 1, 12, 12), torch.randint(0, 5, (16,))
            outcomes = report.update(model, x, y)
            for key, value in outcomes.items():
                assert value.dtype == torch.bool and value.shape == (16,)
                counted.setdefault(key, []).append(value)
            # an independent reference for one mode: the same keyed offsets, by hand
            first, second = translate(
                x.repeat(2, 1, 1, 1), sample_offset_pair(x, 3, 7), "zero", 0.0
            ).chunk(2)
            agree = model(first).argmax(1) == model(second).argmax(1)
            assert torch.equal(outcomes["consistency_zero"], agree)
    values = report.compute()
    for key in ("acc", "flip_rate", "consistency_zero", "consistency_circular"):
        assert torch.cat(counted[key]).float().mean().item() == pytest.approx(values[key].item())


def test_consistency_columns_come_from_one_key_builder() -> None:
    assert consistency_key("circular", 8) == "consistency_circular@8"
    for experiment in EXPERIMENTS.values():
        keys = [consistency_key(m, s) for m in experiment.modes for s in experiment.max_shifts]
        if not experiment.regions:  # the placement tables show accuracy per region instead
            assert set(keys) <= set(experiment.columns())
        assert experiment.scatter()[0] == consistency_key("zero", experiment.consistency_max_shift)
