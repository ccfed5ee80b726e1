"""evaluate.py --protocols and --list-protocols as a user runs them, on a crop-mode run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invariance_recipes.lightning_modules.metrics import PROTOCOLS
from recipe_runs import QUICK, read_test_metrics, run_recipe

NAMED = ["zhang2019", "aps-circular", "afc-worst", "afc-fractional", "azulay-weiss"]


@pytest.mark.slow
def test_protocols_in_training_and_evaluation_agree_on_the_tested_checkpoint(
    tmp_path: Path,
) -> None:
    """Same checkpoint, another batch size (64, training tests in batches of 50): keyed
    offsets and fixed grids give the training test's numbers again."""
    train = run_recipe(
        "train.py",
        *QUICK,
        "--logger",
        "csv",
        "--data.view_size",
        "28",
        "--protocols",
        "[" + ", ".join(NAMED) + "]",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    run_dir = tmp_path / "runs" / "baseline-seed0"
    tested = json.loads((run_dir / "tested.json").read_text())
    assert (run_dir / tested["checkpoint"]).is_file()
    assert tested["checkpoint"].startswith("checkpoints/best-")
    trained = read_test_metrics(run_dir)

    proc = run_recipe(
        "evaluate.py",
        "--ckpt",
        str(run_dir / tested["checkpoint"]),
        "--protocols",
        *NAMED,
        "--batch_size",
        "64",
        "--max_shifts",
        "4",
        "--logger",
        "none",
        "--on_collapse",
        "warn",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run_dir / "evaluation" / "report.json").read_text())
    assert list(report["protocols"]) == NAMED
    table = proc.stdout[proc.stdout.index("named protocols") :].splitlines()
    for name in NAMED:
        (row,) = [line for line in table if line.startswith(name + " ")]
        spec, values = report["protocols"][name]["spec"], report["protocols"][name]["values"]
        assert spec["code"] == PROTOCOLS[name].code
        for metric, value in values.items():
            assert f"{metric}={value:.4f}" in row
            assert trained[f"test/{name}/{metric}"] == pytest.approx(value, abs=1e-6)


@pytest.mark.slow
def test_list_protocols_and_an_unknown_protocol(tmp_path: Path) -> None:
    listing = run_recipe("evaluate.py", "--list-protocols", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    for name, spec in PROTOCOLS.items():
        assert f"{name}: {spec.description}" in listing.stdout
    bad = run_recipe("evaluate.py", "--ckpt", "x.ckpt", "--protocols", "zhang2020", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: unknown --protocols 'zhang2020': choose one of " + ", ".join(PROTOCOLS)
    ]
