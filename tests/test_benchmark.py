"""The benchmark recipe: a quick run as a user starts it with its CSV and Markdown read back,
the interleaved timing against a hand computation, and the fast paths it measures against the
plain computations they replace (so every row compares like with like)."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from invariance_recipes.benchmarks.suite import COLUMNS, per_sample_rolls, per_sample_slices, run
from invariance_recipes.benchmarks.timing import Timings, alternate, interleaved
from lightning_modules.layers import PAD_TYPES, BlurPool2d, MaxBlurPool2d, binomial_filter, pad2d
from lightning_modules.layers.blur_pool import DENSE_MAX_SIDE
from lightning_modules.shifts import random_offsets, translate
from recipe_runs import run_recipe

SECTIONS = {"blurpool", "translate", "validation", "training", "data"}
PEERS = ("timm", "kornia", "antialiased-cnns")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("benchmarks")
    return run_recipe("benchmark.py", "--quick", "--out", str(out), cwd=out), out


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def test_quick_run_writes_one_positive_ratio_per_comparison(quick_run) -> None:
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(path.name for path in out.iterdir()) == ["cpu-quick.csv", "cpu-quick.md"]
    header, rows = read_csv(out / "cpu-quick.csv")
    assert tuple(header) == COLUMNS
    assert {row["section"] for row in rows} == SECTIONS
    for row in rows:
        ratio, target = float(row["ratio"]), float(row["target"])
        assert ratio > 0 and float(row["ours_ms"]) > 0 and float(row["baseline_ms"]) > 0
        assert float(row["ratio_q1"]) <= ratio <= float(row["ratio_q3"])
        assert row["holds"] in ("yes", "no")
        if abs(ratio - target) > 1e-3 * target:  # the CSV rounds to 4 digits
            assert (row["holds"] == "yes") == (ratio <= target), row
    # The avg-pool floor needs no peer; a missing peer leaves a note instead of rows.
    assert any(row["baseline"] == "avg_pool2d(2)" for row in rows)
    markdown = (out / "cpu-quick.md").read_text(encoding="utf-8")
    for peer in PEERS:
        compared = any(row["baseline"].startswith(peer) for row in rows)
        assert compared != (f"{peer} is not installed" in markdown), peer


def test_quick_run_markdown_table_matches_the_csv(quick_run) -> None:
    proc, out = quick_run
    _, rows = read_csv(out / "cpu-quick.csv")
    lines = (out / "cpu-quick.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| section |"))
    table = lines[start : start + 2 + len(rows)]
    assert start + 2 + len(rows) == len(lines) or not lines[start + 2 + len(rows)].startswith("|")
    columns = table[0].count("|")
    assert all(line.startswith("|") and line.count("|") == columns for line in table)
    assert set(table[1].replace("|", "").replace("-", "").replace(":", "")) == set()
    for line, row in zip(table[2:], rows, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[:4] == [row["section"], row["setting"], row["ours"], row["baseline"]]
        assert float(cells[6]) == pytest.approx(float(row["ratio"]), rel=5e-3)
        assert cells[9] == ("yes" if row["holds"] == "yes" else "**no**")
    machine = next(line for line in lines if line.startswith("Machine: "))
    assert f"torch {torch.__version__}" in machine and "logical cores" in machine
    assert proc.stdout.startswith(f"machine: {machine.removeprefix('Machine: ')}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "--rounds 0: pass a positive integer"),
        (["--threads", "-1"], "--threads -1: pass a positive integer"),
        (["--device", "cuda"], "--device cuda: CUDA is not available"),
    ],
)
def test_bad_options_raise_one_line_errors(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU
    with pytest.raises(ValueError, match=message):
        run([*args, "--quick", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "table.md"
    file.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"--out .*table\.md is a file: pass a folder"):
        run(["--quick", "--out", str(file)])


def test_alternate_rotates_the_order_every_round() -> None:
    calls: list[str] = []

    def measure(name: str) -> float:
        calls.append(name)
        return float(len(calls))

    timings = alternate({name: lambda name=name: measure(name) for name in "abc"}, rounds=4)
    assert "".join(calls) == "abc" + "bca" + "cab" + "abc"
    assert timings.seconds == {"a": [1.0, 6.0, 8.0, 10.0], "b": [2.0, 4.0, 9.0, 11.0],
                               "c": [3.0, 5.0, 7.0, 12.0]}  # fmt: skip


def test_ratio_is_the_median_and_quartiles_of_the_paired_per_round_ratios() -> None:
    timings = Timings({"ours": [1.0, 4.0, 3.0, 10.0, 2.0], "base": [2.0, 2.0, 4.0, 2.0, 1.0]})
    paired = np.array([0.5, 2.0, 0.75, 5.0, 2.0])
    expected = (np.median(paired), np.percentile(paired, 25), np.percentile(paired, 75))
    assert timings.ratio("ours", "base") == pytest.approx(expected)
    assert timings.median("ours") == 3.0
    single = Timings({"ours": [3.0], "base": [2.0]})
    assert single.ratio("ours", "base") == (1.5, 1.5, 1.5)


def test_interleaved_times_blocks_of_calls_between_syncs() -> None:
    events: list[str] = []

    def nap() -> None:
        events.append("call")
        time.sleep(0.002)

    timings = interleaved(
        {"nap": nap}, rounds=3, min_block=0.01, sync=lambda: events.append("sync")
    )
    assert len(timings.seconds["nap"]) == 3
    assert all(seconds >= 0.002 for seconds in timings.seconds["nap"])
    # Every round is one block of calls between two syncs, as long as calibrated in warm-up.
    blocks = [b for b in "".join(e[0] for e in events).split("s") if b]
    warmup, calibration, timed = blocks[0], blocks[1:-3], blocks[-3:]
    assert warmup == "c" and calibration and set(timed) == {calibration[-1]}
    with pytest.raises(ValueError, match="rounds=0"):
        alternate({"nap": lambda: 0.0}, rounds=0)


def reference_blur(x: torch.Tensor, filt_size: int, stride: int, pad_type: str) -> torch.Tensor:
    """The published layer's computation: pad, depthwise binomial convolution, stride."""
    taps = binomial_filter(filt_size).double()
    kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, filt_size, filt_size)
    before, after = (filt_size - 1) // 2, filt_size // 2
    mode = {"zero": "constant"}.get(pad_type, pad_type)
    padded = F.pad(x, (before, after, before, after), mode=mode)
    return F.conv2d(padded, kernel.to(x.dtype), stride=stride, groups=x.shape[1])


@pytest.mark.parametrize("pad_type", PAD_TYPES)
@pytest.mark.parametrize(
    ("size", "filt_size", "stride", "path"),
    [
        (8, 4, 2, "aten::kron"),  # 4x4 outputs: one product with the Kronecker matrix
        (34, 4, 2, "aten::bmm"),  # two products, along the width then the height
        (21, 5, 1, "aten::bmm"),  # stride 1 (the blur before APS)
        (DENSE_MAX_SIDE + 2, 3, 2, "aten::convolution"),  # large maps: padded convolution
    ],
)
def test_blurpool_paths_equal_the_padded_convolution(
    size: int, filt_size: int, stride: int, path: str, pad_type: str
) -> None:
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(2, 3, size, size - 1, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    layer = BlurPool2d(3, filt_size, stride, pad_type).double()
    with torch.profiler.profile() as profile:
        out = layer(x)
    assert path in {event.key for event in profile.key_averages()}
    expected = reference_blur(x, filt_size, stride, pad_type)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    (ours,) = torch.autograd.grad(out, x, grad)
    (reference,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pad_type", ["reflect", "zero"])
@pytest.mark.parametrize(("size", "kernel_size"), [(8, 2), (33, 2), (30, 3), (26, 4)])
def test_fused_max_blur_pool_equals_dense_max_then_blur(
    size: int, kernel_size: int, pad_type: str
) -> None:
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(2, 3, size, size + 3, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    out = MaxBlurPool2d(3, kernel_size, 4, 2, pad_type).double()(x)
    before, after = (kernel_size - 1) // 2, kernel_size // 2
    dense = F.max_pool2d(pad2d(x, (before, after, before, after), "replicate"), kernel_size, 1)
    expected = reference_blur(dense, 4, 2, pad_type)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    (ours,) = torch.autograd.grad(out, x, grad)
    (reference,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_blurpool_keeps_channels_last_and_bfloat16() -> None:
    x = torch.randn(4, 8, 16, 16).contiguous(memory_format=torch.channels_last)
    layer = BlurPool2d(8)
    out = layer(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference_blur(x, 4, 2, "reflect"), rtol=1e-5, atol=1e-6)
    low = layer(x.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), out, rtol=2e-2, atol=2e-2)


def test_blurpool_trains_after_running_under_inference_mode() -> None:
    layer = BlurPool2d(2, 3)
    x = torch.randn(1, 2, 10, 12, requires_grad=True)
    with torch.inference_mode():  # validation first, as Lightning's sanity check does
        layer(x.detach())
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_baselines_compute_the_same_shifts() -> None:
    x = torch.rand(256, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    offsets = random_offsets(256, 4, torch.Generator().manual_seed(1))
    assert torch.equal(per_sample_slices(x, offsets), translate(x, offsets, "zero"))
    assert torch.equal(per_sample_rolls(x, offsets), translate(x, offsets, "circular"))
