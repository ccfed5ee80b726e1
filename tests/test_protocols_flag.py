"""One ``--protocols`` spelling in train.py, evaluate.py and compare.py (and the old one of
evaluate.py still working, with a warning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from invariance_recipes.compare.comparison import (
    check_extra,
    command_of,
    common_args,
    experiment_of,
    parse_args,
    plan,
)
from invariance_recipes.measure import evaluation
from invariance_recipes.run.cli import TrainCLI

NAMES = ["aps-circular", "afc-worst"]


def test_compare_protocols_reach_every_run_and_the_command(tmp_path: Path) -> None:
    argv = ["--experiment", "small-shift", "--protocols", "[aps-circular, afc-worst]"]
    args, extra = parse_args([*argv, "--logger", "none", "--out", str(tmp_path)])
    experiment = experiment_of(args)
    assert experiment.protocols == tuple(NAMES)
    assert "test/afc-worst/worst_acc_circular" in experiment.columns()
    assert "test/zhang2019/consistency_crop" not in experiment.columns()
    common = common_args(args, experiment, extra, tmp_path)
    (run,) = plan(experiment, "small-shift", ["baseline"], 1, common)
    # the comparison measures them on the tested checkpoint (with per-image outcomes), so the
    # run's own test skips their passes
    assert list(TrainCLI(list(run.args)).model.hparams.protocols) == []
    assert command_of(args, experiment, extra).endswith("--protocols aps-circular afc-worst")
    default, _ = parse_args(["--experiment", "small-shift", "--out", str(tmp_path)])
    assert "--protocols" not in command_of(default, experiment_of(default), [])


def test_train_takes_the_same_spelling(tmp_path: Path) -> None:
    argv = ["--protocols", "[aps-circular, afc-worst]", "--runs_dir", str(tmp_path), "--logger"]
    assert list(TrainCLI([*argv, "none"]).model.hparams.protocols) == NAMES


@pytest.mark.parametrize("flag", ["--protocols", "--model.protocols"])
def test_compare_refuses_protocols_after_the_separator(flag: str) -> None:
    with pytest.raises(ValueError, match=rf"^{flag} after '--' is set by compare.py.*--protocols"):
        check_extra([flag, "[tips]"])


def test_evaluate_takes_both_list_forms_and_the_old_spelling_with_a_warning(capsys) -> None:
    args = evaluation.parse_args(["--ckpt", "x.ckpt", "--protocols", "aps-circular,afc-worst"])
    assert evaluation.parse_protocols(args.protocols) == NAMES
    assert capsys.readouterr().err == ""
    old = evaluation.parse_args(["--ckpt", "x.ckpt", "--protocol", *NAMES])
    assert old.protocols == NAMES
    assert capsys.readouterr().err == "warning: --protocol is deprecated: use --protocols\n"


def test_evaluate_unknown_protocol_is_one_line(capsys) -> None:
    assert evaluation.evaluate_command(["--ckpt", "x.ckpt", "--protocols", "zhang2020"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: unknown --protocols 'zhang2020': choose one of " + ", ".join(evaluation.PROTOCOLS)
    ]


def test_the_command_reproduces_the_table_that_other_processes_added_rows_to(
    tmp_path: Path,
) -> None:
    """Two processes fill one folder (``--variants lps-circular`` beside the other arms): the
    table's command names every arm and seed of its rows, not only this invocation's."""
    argv = ["--experiment", "small-shift", "--variants", "lps-circular", "--seeds", "5"]
    args, extra = parse_args([*argv, "--out", str(tmp_path)])
    experiment = experiment_of(args)
    rows = [{"variant": v, "seed": s} for v in ("lps-circular", "baseline") for s in range(5)]
    assert command_of(args, experiment, extra, rows) == (
        "python recipes/compare.py --experiment small-shift --variants baseline lps-circular "
        "--seeds 5"
    )
    every_arm = [{"variant": v, "seed": s} for v in experiment.variants for s in range(5)]
    assert command_of(args, experiment, extra, every_arm) == (
        "python recipes/compare.py --experiment small-shift --seeds 5"
    )
    assert command_of(args, experiment, extra) == " ".join(["python recipes/compare.py", *argv])
