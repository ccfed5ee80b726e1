"""The receptive-field experiment: its networks have the fields the arithmetic gives by
hand, and a reduced quick comparison runs end to end (train, measure, table, plot, and
``evaluate.py --receptive_field`` on one of its checkpoints)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from invariance_recipes.compare.comparison import common_args, parse_args, plan, run_all
from invariance_recipes.compare.experiments import get_experiment
from invariance_recipes.compare.results import RESULTS_MD, RF_PLOT_PNG, markdown, write_plots
from invariance_recipes.lightning_modules.nets.receptive_field import receptive_field
from invariance_recipes.measure.evaluation import evaluate_command
from invariance_recipes.measure.outcomes import best_checkpoint
from invariance_recipes.run.cli import TrainCLI


def small_cnn_field(stages: int, blocks: int) -> int:
    """3x3 convs add 2 * jump each, MaxPool(2) adds jump and doubles it."""
    size, jump = 1, 1
    for _ in range(stages):
        size += 2 * jump * blocks + jump
        jump *= 2
    return size


def test_networks_span_a_fifth_of_the_canvas_to_beyond_it(tmp_path: Path) -> None:
    experiment = get_experiment("receptive-field")
    args, extra = parse_args(["--experiment", experiment.name, "--logger", "none"])
    runs = plan(experiment, "rf", ["baseline"], 1, common_args(args, experiment, extra, tmp_path))
    fractions = []
    for run in runs:
        net = TrainCLI(list(run.args)).model.net
        stages, blocks = (int(part[-1]) for part in run.setting.split("-"))
        expected = small_cnn_field(stages, blocks)
        assert receptive_field(net, net.image_size)[-1].field.size == expected, run.setting
        fractions.append(expected / experiment.canvas)
    assert fractions == sorted(fractions)
    assert fractions[0] <= 0.25 and fractions[-1] > 1.0
    assert experiment.placement == "top-left" and experiment.policy == "none"


@pytest.mark.slow
def test_quick_receptive_field_comparison_end_to_end(tmp_path: Path, capsys) -> None:
    """One network, the flatten head, a tiny quick budget: every piece is real."""
    full = get_experiment("receptive-field")
    networks = {"stages2-blocks1": full.networks["stages2-blocks1"]}
    experiment = replace(full, networks=networks)
    argv = ["--experiment", full.name, "--quick", "--logger", "none", "--out", str(tmp_path)]
    args, _ = parse_args(argv)
    extra = ["--data.max_samples", "60", "--trainer.max_epochs", "1", "--data.num_workers", "0"]
    extra += ["--on_collapse", "warn"]  # so few steps may not learn: the plumbing is tested
    runs = plan(experiment, "rf", ["baseline"], 1, common_args(args, experiment, extra, tmp_path))
    rows, failures, stopped = run_all(runs, experiment, tmp_path)
    assert not failures and not stopped
    assert [(r["rf_px"], r["rf_fraction"]) for r in rows] == [(10, 10 / 48)]
    assert all(0.0 <= r["acc@unseen"] <= 1.0 for r in rows)

    md = markdown(full.name, full.summary, "quick", "cmd", rows, experiment.columns())
    (row,) = rows
    if row["trained"] == 1.0:  # the field column beside the regions, per network
        assert "| RF/canvas | top-left |" in md
        line = next(
            x for x in md.splitlines() if x.startswith("| baseline | stages2-blocks1 | 1 |")
        )
        assert f" {100 * 10 / 48:.1f} " in line
    else:  # a smoke run need not train: left out of the table, with its reason
        assert f"- {row['run']}: " in md.split("Left out of every table", 1)[1]
    assert "Setting `shiftS`" not in md and "RF/canvas: the theoretical" in md
    pngs = write_plots(tmp_path, rows, experiment.scatter(), experiment.regions, "top-left")
    assert tmp_path / RF_PLOT_PNG in pngs
    assert Image.open(tmp_path / RF_PLOT_PNG).size[0] > 100
    (tmp_path / RESULTS_MD).write_text(md)

    run_dir = tmp_path / "runs" / runs[0].name
    out = tmp_path / "evaluation"
    argv = ["--ckpt", str(best_checkpoint(run_dir)), "--receptive_field", "--logger", "none"]
    argv += ["--on_collapse", "warn"]  # the run is too short to learn
    assert evaluate_command([*argv, "--max_shifts", "1", "--out", str(out)]) == 0
    assert "receptive field of the last feature map: 10 px" in capsys.readouterr().out
    report = json.loads((out / "receptive_field.json").read_text())
    assert report["field"] == 10 and report["layers"][-1]["jump"] == 4
    assert 1 <= report["erf_test_half_mass_px"] <= report["field"]
    for name in ("erf_random.png", "erf_test.png"):
        assert Image.open(out / name).size[0] > 100
