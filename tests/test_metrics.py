"""Shift metrics against plain per-sample loops, ShiftReport against the metrics by hand."""

import math
from collections.abc import Iterator

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invariance_recipes.lightning_modules.metrics import (
    AccuracyVsShift,
    EquivarianceError,
    FlipRate,
    MeanAbsoluteChange,
    ShiftConsistency,
    ShiftReport,
    equivariance_error,
    evaluate_shift_robustness,
    feature_equivariance_error,
)
from invariance_recipes.lightning_modules.shifts import offset_sweep, shifted_pair, translate

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BATCH_SIZES = (7, 13, 1, 20)  # uneven, including a last batch of one


def argmax(row: list[float]) -> int:
    """First index of the largest value, like torch.argmax."""
    return max(range(len(row)), key=lambda i: (row[i], -i))


def softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def batches(
    *tensors: torch.Tensor, dims: tuple[int, ...] | None = None
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Split tensors (along `dims`, default 0) into the uneven BATCH_SIZES."""
    dims = dims or (0,) * len(tensors)
    splits = (t.split(BATCH_SIZES, dim=d) for t, d in zip(tensors, dims, strict=True))
    return zip(*splits, strict=True)


def random_logits(seed: int, classes: int = 4, shape: tuple[int, ...] = ()) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, sum(BATCH_SIZES), classes, generator=generator)


def test_shift_consistency_matches_loop_on_uneven_batches() -> None:
    first, second = random_logits(0, classes=3), random_logits(1, classes=3)
    metric = ShiftConsistency(max_shift=4, mode="zero")
    for a, b in batches(first, second):
        metric.update(a, b)
    agree = [argmax(a) == argmax(b) for a, b in zip(first.tolist(), second.tolist(), strict=True)]
    assert metric.compute().item() == pytest.approx(sum(agree) / len(agree), abs=1e-7)
    # Class indices give the same count as the logits they come from.
    indices = ShiftConsistency(max_shift=4)
    indices.update(first.argmax(dim=1), second.argmax(dim=1))
    assert indices.compute() == metric.compute()


def test_flip_rate_matches_loop_on_uneven_batches() -> None:
    clean, shifted = random_logits(2, classes=3), random_logits(3, classes=3)
    metric = FlipRate()
    for a, b in batches(clean, shifted):
        metric.update(a, b)
    flips = [argmax(a) != argmax(b) for a, b in zip(clean.tolist(), shifted.tolist(), strict=True)]
    assert metric.compute().item() == pytest.approx(sum(flips) / len(flips), abs=1e-7)


@pytest.mark.parametrize("probabilities", [False, True])
def test_mean_absolute_change_matches_loop(probabilities: bool) -> None:
    clean, shifted = random_logits(4), random_logits(5)
    if probabilities:
        clean, shifted = clean.softmax(dim=1), shifted.softmax(dim=1)
    metric = MeanAbsoluteChange(probabilities=probabilities)
    for a, b in batches(clean, shifted):
        metric.update(a, b)
    changes = []
    for a, b in zip(clean.tolist(), shifted.tolist(), strict=True):
        p, q = (a, b) if probabilities else (softmax(a), softmax(b))
        changes.append(abs(p[argmax(p)] - q[argmax(p)]))
    assert metric.compute().item() == pytest.approx(sum(changes) / len(changes), rel=1e-5)


def test_accuracy_vs_shift_matches_loop() -> None:
    sweep = offset_sweep(2)
    logits = random_logits(6, shape=(len(sweep),))
    target = torch.randint(0, 4, (logits.shape[1],), generator=torch.Generator().manual_seed(7))
    metric = AccuracyVsShift(sweep)
    for preds, labels in batches(logits, target, dims=(1, 0)):
        metric.update(preds, labels)
    expected = [
        sum(argmax(row) == label for row, label in zip(per_offset, target.tolist(), strict=True))
        / len(target)
        for per_offset in logits.tolist()
    ]
    assert metric.compute().tolist() == pytest.approx(expected, abs=1e-7)
    indices = AccuracyVsShift([tuple(o) for o in sweep.tolist()])
    indices.update(logits.argmax(dim=-1), target)
    assert torch.equal(indices.compute(), metric.compute())


def reference_equivariance(
    shifted: torch.Tensor, features: torch.Tensor, offset: tuple[int, int], stride: int
) -> list[float]:
    """Per-sample relative error with np.roll (circular) in float64."""
    errors = []
    for f_tx, f_x in zip(shifted.double().numpy(), features.double().numpy(), strict=True):
        moved = np.roll(f_x, (offset[0] // stride, offset[1] // stride), axis=(1, 2))
        errors.append(np.linalg.norm(f_tx - moved) / np.linalg.norm(f_x))
    return errors


def test_equivariance_error_matches_loop() -> None:
    generator = torch.Generator().manual_seed(8)
    features = torch.randn(sum(BATCH_SIZES), 3, 6, 5, generator=generator)
    shifted = torch.randn(features.shape, generator=generator)
    metric = EquivarianceError(stride=2)
    for f_tx, f_x in batches(shifted, features):
        metric.update(f_tx, f_x, (4, -2))
    expected = reference_equivariance(shifted, features, (4, -2), stride=2)
    per_sample = equivariance_error(shifted, features, (4, -2), stride=2)
    assert per_sample.tolist() == pytest.approx(expected, rel=1e-5)
    assert metric.compute().item() == pytest.approx(np.mean(expected), rel=1e-5)


def test_equivariance_error_is_zero_for_exact_equivariance_and_per_sample_offsets() -> None:
    features = torch.randn(5, 2, 8, 8)
    offsets = torch.tensor([[2, 4], [-6, 0], [0, 0], [8, -2], [-14, 14]])
    moved = translate(features, offsets.div(2, rounding_mode="floor"), "circular")
    assert equivariance_error(moved, features, offsets, stride=2).abs().max() < 1e-6


def conv_net(padding_mode: str) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, padding_mode=padding_mode),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular"),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


def test_feature_equivariance_error_reads_the_layer_with_a_hook() -> None:
    x = torch.randn(9, 2, 12, 12)
    exact = conv_net("circular").train()
    exact[3].eval()  # a frozen BatchNorm inside a training model keeps its own mode
    # Circular padding and shifts divisible by the stride: exact equivariance at every layer.
    assert feature_equivariance_error(exact, exact[1], x, (3, -5), stride=1) < 1e-6
    assert feature_equivariance_error(exact, exact[3], x, (4, -2), stride=2) < 1e-5
    assert exact.training and exact[1].training and not exact[3].training
    assert not exact[1]._forward_hooks and not exact[3]._forward_hooks
    # Zero padding in the first layer breaks equivariance at the borders.
    bordered = conv_net("zeros")
    error = feature_equivariance_error(bordered, bordered[3], x, (4, -2), stride=2)
    with torch.no_grad():
        pair = torch.cat((x, translate(x, (4, -2), "circular")))
        features, shifted = bordered.eval()[:4](pair).split(9)
    expected = np.mean(reference_equivariance(shifted, features, (4, -2), stride=2))
    assert error.item() == pytest.approx(expected, rel=1e-5) and error > 0.01


def test_gap_model_is_exactly_circular_shift_invariant_and_a_pixel_reader_is_not() -> None:
    torch.manual_seed(1)
    images = torch.rand(200, 3, 10, 10)
    gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    pixel = nn.Sequential(nn.Flatten(), nn.Linear(300, 10))
    with torch.no_grad():
        pixel[1].weight.zero_()
        pixel[1].weight[:, 0] = torch.linspace(-5.0, 5.0, 10)  # reads pixel (0, 0) of channel 0
        pixel[1].bias.copy_(-(torch.linspace(-5.0, 5.0, 10) ** 2) / 4)
    scores = {}
    for name, model in (("gap", gap), ("pixel", pixel)):
        metric = ShiftConsistency(max_shift=4, mode="circular")
        first, second = shifted_pair(images, 4, "circular", torch.Generator().manual_seed(3))
        with torch.no_grad():
            metric.update(model(first), model(second))
        scores[name] = metric.compute().item()
    assert scores["gap"] == 1.0
    assert scores["pixel"] < 0.6


def tiny_model() -> nn.Module:
    """A small CNN in eval mode; its dropout makes train-mode outputs random."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 5 * 5, 5),
    ).eval()


def digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 2, 10, 10)
    x[:, :, 3:7, 3:7] = torch.rand(n, 2, 4, 4, generator=generator)
    return x, torch.randint(0, 5, (n,), generator=generator)


def test_shift_report_equals_the_metrics_by_hand() -> None:
    model = tiny_model()
    x, y = digits(sum(BATCH_SIZES), seed=4)
    fill = [0.25, -0.5]
    report = ShiftReport(max_shift=3, modes=("zero", "reflect", "circular"), fill=fill, seed=9)
    twin = ShiftReport(max_shift=3, modes=("zero", "reflect", "circular"), seed=9)
    sweep = offset_sweep(3).tolist()
    agree = {mode: 0 for mode in report.modes}
    flips = correct = 0
    changes: list[float] = []
    curve = [0] * len(sweep)
    with torch.no_grad():
        for images, labels in batches(x, y):
            report.update(model, images, labels)
            pairs, steps = twin.draw_offsets(images)
            assert pairs["zero"].abs().max() <= 3 and set(steps.flatten().tolist()) <= {-1, 1}
            clean = model(images).tolist()
            for mode, offsets in pairs.items():
                first = model(translate(images, offsets[: len(images)], mode, fill)).tolist()
                second = model(translate(images, offsets[len(images) :], mode, fill)).tolist()
                agree[mode] += sum(
                    argmax(a) == argmax(b) for a, b in zip(first, second, strict=True)
                )
            stepped = model(translate(images, steps, "zero", fill)).tolist()
            for row, moved, label in zip(clean, stepped, labels.tolist(), strict=True):
                flips += argmax(row) != argmax(moved)
                correct += argmax(row) == label
                p, q = softmax(row), softmax(moved)
                changes.append(abs(p[argmax(row)] - q[argmax(row)]))
            for k, offset in enumerate(sweep):
                swept = model(translate(images, tuple(offset), "zero", fill)).tolist()
                curve[k] += sum(argmax(r) == t for r, t in zip(swept, labels.tolist(), strict=True))
    n = len(x)
    values = report.compute()
    assert set(values) == {
        "acc",
        "consistency_zero",
        "consistency_reflect",
        "consistency_circular",
        "flip_rate",
        "mac",
        "acc_vs_shift",
    }
    for mode in report.modes:
        assert values[f"consistency_{mode}"].item() == pytest.approx(agree[mode] / n, abs=1e-7)
    assert values["flip_rate"].item() == pytest.approx(flips / n, abs=1e-7)
    assert values["acc"].item() == pytest.approx(correct / n, abs=1e-7)
    assert values["mac"].item() == pytest.approx(sum(changes) / n, rel=1e-5)
    assert values["acc_vs_shift"].tolist() == pytest.approx([c / n for c in curve], abs=1e-7)


def test_shift_report_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    model = tiny_model()
    x, y = digits(30, seed=5)
    state = torch.random.get_rng_state()
    reports = [ShiftReport(max_shift=4, seed=seed) for seed in (0, 0, 1)]
    with torch.no_grad():
        for report in reports:
            report.update(model, x, y)
    runs = [report.compute() for report in reports]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
    # reset clears the states and restarts the offsets: the same batch gives the same values.
    reports[0].update(model, x.flip(-1), y)
    reports[0].reset()
    reports[0].update(model, x, y)
    assert all(torch.equal(reports[0].compute()[k], runs[0][k]) for k in runs[0])


def test_shift_report_does_not_depend_on_batching_or_order() -> None:
    # Offsets are keyed by the image, so the same data in other batches gives the same numbers
    # (which is what makes the DDP value equal the single-process value).
    model = tiny_model()
    x, y = digits(sum(BATCH_SIZES), seed=8)
    whole, split = ShiftReport(max_shift=3, seed=4), ShiftReport(max_shift=3, seed=4)
    with torch.no_grad():
        whole.update(model, x, y)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        for images, labels in batches(x[order], y[order]):
            split.update(model, images, labels)
    expected, got = whole.compute(), split.compute()
    for key in expected:
        assert torch.allclose(got[key], expected[key], atol=1e-6), key


def test_shift_report_reads_nothing_back_from_the_device() -> None:
    # Meta tensors have no data: any .item(), .tolist() or data-dependent branch would raise.
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 10 * 10, 5)).to("meta")
    report = ShiftReport(max_shift=3).to("meta")
    x = torch.empty(8, 2, 10, 10, device="meta")
    report.update(model, x, torch.empty(8, dtype=torch.long, device="meta"))
    report.update(model, x, torch.empty(8, dtype=torch.long, device="meta"), logits=model(x))
    assert report.metrics["consistency_zero"].agree.device.type == "meta"


def test_clean_logits_argument_saves_a_pass_without_changing_results() -> None:
    model = tiny_model()
    x, y = digits(16, seed=6)
    with_logits, without = ShiftReport(seed=2), ShiftReport(seed=2)
    with torch.no_grad():
        with_logits.update(model, x, y, logits=model(x))
    without.update(model, x, y)
    first, second = with_logits.compute(), without.compute()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_evaluate_shift_robustness_matches_report_and_restores_mode() -> None:
    model = tiny_model().train()
    x, y = digits(40, seed=7)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    values = evaluate_shift_robustness(model, loader, max_shift=2, seed=3)
    assert model.training and model[4].training
    report = ShiftReport(max_shift=2, seed=3)
    model.eval()  # evaluation must have run in eval mode: dropout would change the values
    for images, labels in loader:
        report.update(model, images, labels)
    expected = report.compute()
    assert all(torch.equal(values[k], expected[k]) for k in expected)
    single = evaluate_shift_robustness(model, (x, y), max_shift=2, seed=3)
    report.reset()
    report.update(model, x, y)
    assert all(torch.equal(single[k], report.compute()[k]) for k in single)


def test_plots_draw_the_values() -> None:
    metric = AccuracyVsShift(offset_sweep(2))
    metric.update(random_logits(10, shape=(5,))[:, :12], torch.arange(12) % 4)
    fig, ax = metric.plot()
    line = ax.lines[0]
    assert line.get_xdata().tolist() == [-2, -1, 0, 1, 2]
    assert line.get_ydata().tolist() == pytest.approx(metric.compute().tolist())
    assert "dy = dx" in ax.get_xlabel()
    plt.close(fig)

    horizontal = AccuracyVsShift(offset_sweep(1, "horizontal"))
    fig, ax = horizontal.plot(torch.tensor([0.5, 1.0, 0.25]))
    assert ax.lines[0].get_xdata().tolist() == [-1, 0, 1] and ax.get_xlabel().startswith("shift dx")
    plt.close(fig)

    grid = AccuracyVsShift([(-1, 0), (0, 1), (1, 1)])
    fig, ax = grid.plot(torch.tensor([0.1, 0.2, 0.3]))
    image = ax.images[0].get_array()
    assert image[0, 0] == pytest.approx(0.1) and image[1, 1] == pytest.approx(0.2)
    assert image[2, 1] == pytest.approx(0.3) and image.mask[0, 1]
    plt.close(fig)

    consistency = ShiftConsistency(max_shift=1)
    consistency.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    fig, ax = consistency.plot()
    assert ax.lines[0].get_ydata().tolist() == pytest.approx([2 / 3])
    low, high = ax.get_ylim()
    assert -0.2 < low <= 0.0 and 1.0 <= high < 1.2  # the metric's bounds 0..1 frame the value
    plt.close(fig)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: ShiftConsistency(2).update(torch.randn(4, 3), torch.randn(5, 3)),
            r"preds_a and preds_b must hold the same samples.*\(4,\) and \(5,\)",
        ),
        (
            lambda: FlipRate().update(torch.randn(4), torch.randn(4)),
            r"preds must be class scores \[B, C\] \(floating\) or class indices \[B\]",
        ),
        (
            lambda: MeanAbsoluteChange().update(torch.randn(3, 2), torch.randn(2, 2)),
            "logits and logits_shifted must hold the same samples",
        ),
        (
            lambda: MeanAbsoluteChange().update(torch.ones(3, dtype=torch.long), torch.ones(3)),
            r"logits must be floating class scores \[B, C\], got shape \(3,\) and dtype torch.int64",
        ),
        (
            lambda: ShiftConsistency(2, mode="mirror"),
            r"unknown mode 'mirror': choose one of zero, reflect",
        ),
        (lambda: ShiftConsistency(-1), "max_shift=-1"),
        (
            lambda: AccuracyVsShift(offset_sweep(2)).update(torch.randn(3, 4, 2), torch.zeros(4)),
            r"\[K=5, B\].*\(3, 4, 2\)",
        ),
        (lambda: AccuracyVsShift([(0.5, 1.0)]), "integer pairs"),
        (lambda: AccuracyVsShift(torch.zeros(0, 2, dtype=torch.long)), "offsets is empty"),
        (lambda: EquivarianceError(stride=0), "stride=0"),
        (
            lambda: equivariance_error(torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4), (1, 2), 2),
            r"offset \(1, 2\) is not a multiple of stride=2",
        ),
        (
            lambda: feature_equivariance_error(
                tiny_model(), nn.ReLU(), torch.ones(1, 2, 10, 10), (0, 0), 1
            ),
            "ReLU ran 0 times",
        ),
        (lambda: ShiftReport(modes=("zero", "zero")), "each once"),
        (
            lambda: ShiftReport(modes=("linear",)),
            r"unknown modes 'linear': choose one of .*circular",
        ),
        (lambda: ShiftReport(flip_mode="roll"), "unknown flip_mode 'roll'"),
        (
            lambda: ShiftReport(max_shift=10).update(tiny_model(), *digits(2, seed=0)),
            "max_shift=10 does not fit images of size 10x10",
        ),
        (
            lambda: ShiftReport().update(tiny_model(), digits(3, 0)[0], torch.zeros(2)),
            r"y labels \[B\].*\(2,\)",
        ),
        (
            lambda: ShiftReport(max_shift=2, sweep=torch.tensor([[0, 11]])).update(
                tiny_model(), *digits(2, seed=0)
            ),
            r"\|dx\|=11 do not fit images of size 10x10",
        ),
        (lambda: evaluate_shift_robustness(tiny_model(), []), "data yielded no batches"),
        (
            lambda: evaluate_shift_robustness(tiny_model(), [{"x": 1}]),
            "data must yield \\(images, labels\\) pairs, got a dict",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
