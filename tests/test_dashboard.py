"""The W&B dashboard as code: its spec builds offline, and every metric and config key it
reads is one that a real offline training run logs (read back from the run file)."""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path
from typing import Any

import pytest

from invariance_recipes.publish.dashboard import build_workspace, dashboard_command
from recipe_runs import QUICK, run_recipe
from wandb_records import read_run


def referenced_keys(workspace: Any) -> tuple[set[str], set[str]]:
    """The metric keys its panels plot and the config keys it groups and filters by."""
    metrics: set[str] = set()
    configs = {g.name for g in workspace.runset_settings.groupby}
    # the runset keeps its filters as W&B's filter expression: Config("a.b") == 'x' and ...
    configs |= set(re.findall(r"Config\(\"([^\"]+)\"\)", workspace.runset_settings.filters))
    for section in workspace.sections:
        for panel in section.panels:
            for field in ("metrics", "x", "y", "z"):
                value = getattr(panel, field, None)
                values = value if isinstance(value, list) else [value]
                metrics |= {v for v in values if isinstance(v, str) and v != "Step"}
            group = getattr(panel, "groupby", None)
            if group is not None:
                configs.add(group.name)
            query = getattr(panel, "query", None) or {}
            if "summaryTable" in query:
                metrics.add(query["summaryTable"]["tableKey"])
    return metrics, configs


def config_has(config: dict[str, Any], dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    if head not in config:
        return False
    value = config[head]
    value = value.get("value", value) if isinstance(value, dict) else value
    return not rest or (isinstance(value, dict) and config_has(value, rest))


def test_dry_run_summarizes_and_writes_the_spec_offline(capsys, tmp_path: Path) -> None:
    args = ["--experiment", "small-shift", "--dataset", "digits"]
    assert dashboard_command([*args, "--dry-run"]) == 0  # no --entity needed offline
    summary = capsys.readouterr().out.splitlines()
    workspace = build_workspace("ENTITY", "invariance-recipes", "small-shift", "digits")
    panels = sum(len(s.panels) for s in workspace.sections)
    assert summary[0].startswith("'invariance small-shift digits' in ENTITY/invariance-recipes: ")
    assert f"{len(workspace.sections)} sections, {panels} panels" in summary[0]
    assert len(summary) == len(workspace.sections) + 2 and len(summary) < 20
    assert dashboard_command([*args, "--dry-run", "--spec", str(tmp_path / "spec.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"spec written to {tmp_path / 'spec.json'}"
    spec = json.loads((tmp_path / "spec.json").read_text())
    args = ["--entity", "me", *args]
    text = json.dumps(spec)
    for needle in ("test/consistency_zero", "acc_at_shift", "small-shift", "digits", "variant"):
        assert needle in text, needle
    # saving needs a login: offline it says so in one line instead of trying
    assert dashboard_command(args) == 2
    err = capsys.readouterr().err
    assert "--dry-run" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_code:  # saving needs the entity
        dashboard_command(args[2:])
    assert exit_code.value.code == 2
    assert "--entity is required to save the view (or pass --dry-run)" in capsys.readouterr().err


@pytest.mark.slow
def test_every_key_the_dashboard_reads_is_logged_by_a_real_run(tmp_path: Path) -> None:
    workspace = build_workspace("me", "invariance-recipes", "dash-test", "digits")
    metrics, configs = referenced_keys(workspace)
    assert {"test/acc", "test/consistency_zero", "test/acc_at_shift/+8_+8"} <= metrics
    assert {"variant", "experiment", "data.dataset"} <= configs

    # a default run's curve (the dashboard reads the model's default curve_max_shift)
    args = [*QUICK, "--model.curve_max_shift", "8", "--logger", "wandb"]
    proc = run_recipe(
        "train.py", *args, "--experiment", "dash-test", "--run_name", "dash", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "runs/dash/wandb/offline-run-*/run-*.wandb"))
    run = read_run(Path(path))
    logged = set(run.summary) | {key for row in run.history for key in row}
    # a table is logged as a dict (test/acc_vs_shift_table/path, .../_type, ...)
    tables = {key.rsplit("/", 1)[0] for key in logged if key.endswith("/_type")}
    assert sorted(metrics - logged - tables) == [], "the dashboard reads keys no run logs"
    assert [c for c in configs if not config_has(run.config, c)] == []
    assert run.config["experiment"] == "dash-test"
