"""Two CPU processes (gloo) on uneven halves give the value of one process on all the data."""

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics import Metric

from lightning_modules.metrics import (
    AccuracyVsShift,
    EquivarianceError,
    FlipRate,
    MeanAbsoluteChange,
    ShiftConsistency,
)
from lightning_modules.shifts import offset_sweep

SAMPLES = 41
RANK_SPLIT = (26, 15)  # uneven halves; each rank updates in two uneven batches as well


def make_metrics() -> dict[str, Metric]:
    return {
        "consistency": ShiftConsistency(max_shift=3),
        "accuracy_vs_shift": AccuracyVsShift(offset_sweep(2)),
        "flip_rate": FlipRate(),
        "mac": MeanAbsoluteChange(),
        "equivariance": EquivarianceError(stride=2),
    }


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
    }


def update(metric: Metric, name: str, args: tuple[torch.Tensor, ...]) -> None:
    if name == "accuracy_vs_shift":
        metric.update(args[0].transpose(0, 1), args[1])
    elif name == "equivariance":
        metric.update(*args, (2, -4))
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
