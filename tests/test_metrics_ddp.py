"""Two CPU processes (gloo) on uneven halves give the value of one process on all the data."""

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics import Metric

from invariance_recipes.lightning_modules.metrics import (
    PROTOCOLS,
    AccuracyVsShift,
    EquivarianceError,
    FlipRate,
    MeanAbsoluteChange,
    ProtocolReport,
    ShiftConsistency,
    WorstCaseConsistency,
)
from invariance_recipes.lightning_modules.shifts import offset_sweep

# every test here starts gloo process groups: the full suite runs them, not the inner loop
pytestmark = pytest.mark.slow

SAMPLES = 41
RANK_SPLIT = (26, 15)  # uneven halves; each rank updates in two uneven batches as well


def make_metrics() -> dict[str, Metric]:
    return {
        "consistency": ShiftConsistency(max_shift=3),
        "accuracy_vs_shift": AccuracyVsShift(offset_sweep(2)),
        "flip_rate": FlipRate(),
        "mac": MeanAbsoluteChange(),
        "equivariance": EquivarianceError(stride=2),
        "fourier_equivariance": EquivarianceError(stride=2, mode="fourier"),
        "worst_case": WorstCaseConsistency(),
        "worst_case_accuracy": WorstCaseConsistency(against_target=True),
    }


# Protocols whose numbers do not depend on how the data is split: per-image keyed offsets and
# fixed grids, averaged over images (a mean of batch means depends on the batches).
SPLIT_FREE_PROTOCOLS = tuple(n for n, p in PROTOCOLS.items() if p.aggregation == "over-images")


def protocol_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 8 * 8, 3),
    ).eval()


def protocol_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    canvases = torch.rand(SAMPLES, 1, 20, 20, generator=generator)
    return canvases, torch.randint(0, 3, (SAMPLES,), generator=generator)


def protocol_values(images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    report, model = ProtocolReport(SPLIT_FREE_PROTOCOLS, view_size=16), protocol_model()
    cut = len(images) // 3
    with torch.no_grad():
        report.update(model, images[:cut], labels[:cut])
        report.update(model, images[cut:], labels[cut:])
    return report.compute()


def make_inputs() -> dict[str, tuple[torch.Tensor, ...]]:
    """Per metric, the update arguments for all samples (dim 0 is the sample, except the curve)."""
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(SAMPLES, 3, generator=generator) for _ in range(2)]
    features = [torch.randn(SAMPLES, 2, 4, 4, generator=generator) for _ in range(2)]
    return {
        "consistency": tuple(logits),
        "accuracy_vs_shift": (
            torch.randn(5, SAMPLES, 3, generator=generator).transpose(0, 1),
            torch.randint(0, 3, (SAMPLES,), generator=generator),
        ),
        "flip_rate": tuple(logits),
        "mac": tuple(logits),
        "equivariance": tuple(features),
        "fourier_equivariance": tuple(features),
        "worst_case": (torch.randn(4, SAMPLES, 3, generator=generator).transpose(0, 1),),
        "worst_case_accuracy": (
            torch.randint(0, 3, (4, SAMPLES), generator=generator).transpose(0, 1),
            torch.randint(0, 3, (SAMPLES,), generator=generator),
        ),
    }


def update(metric: Metric, name: str, args: tuple[torch.Tensor, ...]) -> None:
    if name in ("accuracy_vs_shift", "worst_case", "worst_case_accuracy"):
        metric.update(args[0].transpose(0, 1), *args[1:])
    elif name == "equivariance":
        metric.update(*args, (2, -4))
    elif name == "fourier_equivariance":
        metric.update(*args, (1.0, -0.5))
    else:
        metric.update(*args)


def worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        start = sum(RANK_SPLIT[:rank])
        mine = slice(start, start + RANK_SPLIT[rank])
        values = {}
        for name, metric in make_metrics().items():
            args = tuple(t[mine] for t in make_inputs()[name])
            cut = len(args[0]) // 3
            update(metric, name, tuple(t[:cut] for t in args))
            update(metric, name, tuple(t[cut:] for t in args))
            values[name] = metric.compute()
        images, labels = protocol_inputs()
        values["protocols"] = protocol_values(images[mine], labels[mine])
        torch.save(values, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_processes_on_uneven_halves_match_one_process(tmp_path: Path) -> None:
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for name, metric in make_metrics().items():
        update(metric, name, make_inputs()[name])
        expected = metric.compute()
        for values in ranks:
            torch.testing.assert_close(values[name], expected, rtol=1e-6, atol=0.0)
    single = protocol_values(*protocol_inputs())
    assert {key.split("/")[0] for key in single} == set(SPLIT_FREE_PROTOCOLS)
    for values in ranks:
        for key, expected in single.items():
            torch.testing.assert_close(values["protocols"][key], expected, rtol=1e-6, atol=0.0)
