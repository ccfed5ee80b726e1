"""W&B beyond logging: the sweep config in recipes/sweeps/ (the comparisons' learning-rate grid,
its fixed options the experiment's own), a sweep agent's run id honoured, and ``--log_model``
recording the tested checkpoint as a model artifact with aliases in a real offline run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from invariance_recipes.compare.experiments import EXPERIMENTS
from invariance_recipes.run.artifacts import (
    CHECKPOINT_NAME,
    artifact_name,
    checkpoints_to_log,
    file_alias,
    parse_reference,
)
from invariance_recipes.run.loggers import WANDB_ID_FILE, run_id
from recipe_runs import QUICK, recipe_env
from wandb_artifact_server import Artifact, artifact_server
from wandb_records import read_records

ROOT = Path(__file__).resolve().parents[1]
SWEEP = yaml.safe_load((ROOT / "recipes" / "sweeps" / "learning_rate.yaml").read_text())
LR_GRID = [0.001, 0.003, 0.01]


def test_sweep_is_the_comparisons_grid_with_the_experiments_options() -> None:
    params = SWEEP["parameters"]
    assert params["model.lr"]["values"] == LR_GRID
    experiment = EXPERIMENTS["small-shift"]
    assert params["variant"]["values"] == list(experiment.variants)
    assert params["data.dataset"]["value"] == experiment.dataset
    shared = dict(zip(experiment.train_args()[::2], experiment.train_args()[1::2], strict=True))
    shared.pop("--model.protocols")  # tuning selects on validation accuracy only
    fixed = {f"--{k}": str(v["value"]) for k, v in params.items() if "value" in v}
    assert {k: fixed[k] for k in shared} == shared
    assert SWEEP["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert SWEEP["method"] == "grid"


def sweep_command(values: dict[str, object]) -> list[str]:
    """The command a ``wandb agent`` runs for one grid point, rendered with wandb's own code."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    command = []
    for part in SWEEP["command"]:
        if part == "${env}":
            continue
        command += {"${interpreter}": [sys.executable], "${args}": args["args"]}.get(part, [part])
    return command


def test_run_id_keeps_a_sweep_agents_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    own = run_id(tmp_path)
    assert len(own) == 8 and run_id(tmp_path) == own  # kept for a resume
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw33p")
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")
    assert run_id(tmp_path) == "agentrun1"
    assert (tmp_path / WANDB_ID_FILE).read_text() == "agentrun1"
    monkeypatch.delenv("WANDB_RUN_ID")
    assert run_id(tmp_path) == "agentrun1"  # the resumed run stays the agent's


def test_references_and_aliases(tmp_path: Path) -> None:
    assert parse_reference("wandb:me/proj/model-ab12:tested") == "me/proj/model-ab12:tested"
    assert parse_reference("wandb:proj/model-ab12:v3") == "proj/model-ab12:v3"
    for bad in ("wandb:model-ab12", "wandb:me/proj/model-ab12", "wandb:a/b/c/d:v0"):
        with pytest.raises(ValueError, match=r"is not an artifact reference: use wandb:"):
            parse_reference(bad)
    assert file_alias(Path("best-epoch=3.ckpt")) == "best-epoch-3"
    assert artifact_name("ab12") == "model-ab12"
    for name in ("best-epoch=1.ckpt", "last.ckpt", "best-epoch=0.ckpt"):
        (tmp_path / name).write_bytes(b"x")
    tested = tmp_path / "best-epoch=1.ckpt"
    assert checkpoints_to_log("false", tested) == []
    assert checkpoints_to_log("best", tested) == [tested]
    assert [p.name for p in checkpoints_to_log("all", tested)] == [
        "best-epoch=0.ckpt", "last.ckpt", "best-epoch=1.ckpt",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def swept_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One grid point as the agent starts it, offline, with the agent's run id."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    point = {"model.lr": LR_GRID[2], "variant": "blurpool"}
    fixed = {k: v["value"] for k, v in SWEEP["parameters"].items() if "value" in v}
    fixed["data.dataset"] = "digits"  # the embedded digits: the quick run's data
    command = [*sweep_command({**fixed, **point}), "--log_model=all", *QUICK]
    env = recipe_env(WANDB_RUN_ID="sweeprun1", WANDB_SWEEP_ID="sw33p", HOME=str(tmp_path))
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    return proc, tmp_path


@pytest.mark.slow
def test_sweep_run_offline_logs_the_tested_checkpoint(swept_run) -> None:
    """The run keeps the agent's id and records every checkpoint as a version of
    model-RUNID, the tested one last with the aliases tested, best and latest."""
    proc, tmp_path = swept_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "sweep-learning-rate" / "blurpool-seed0"
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-sweeprun1.wandb")
    records = read_records(run_file)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_id == "sweeprun1" and run.run_group == "sweep-learning-rate"
    artifacts = [
        r.artifact
        for r in records
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model"
    ]  # the curve table is an artifact too
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert len(artifacts) == len(checkpoints) >= 2
    assert {a.name for a in artifacts} == {"model-sweeprun1"}
    tested = artifacts[-1]
    assert {"tested", "best", "latest"} <= set(tested.aliases)
    assert all("tested" not in a.aliases for a in artifacts[:-1])
    best_file = next(n for n in checkpoints if n.startswith("best"))
    assert file_alias(Path(best_file)) in tested.aliases
    assert [e.path for e in tested.manifest.contents] == ["model.ckpt"]
    (model,) = [json.loads(i.value_json) for i in run.config.update if i.key == "model"]
    assert model["lr"] == LR_GRID[2]  # the grid point's value reached the run
    (tested_file,) = [p for p in checkpoints if file_alias(Path(p)) in tested.aliases]
    (next_line,) = [line for line in proc.stdout.splitlines() if line.startswith("next: ")]
    assert f"evaluate --ckpt {run_dir.relative_to(tmp_path) / 'checkpoints' / tested_file} (" in (
        next_line
    )


def _evaluate(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invariance_recipes", "evaluate", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_evaluate_takes_the_tested_checkpoint_from_a_wandb_server(
    swept_run, tmp_path: Path
) -> None:
    """``evaluate --ckpt wandb:me/PROJECT/model-sweeprun1:tested`` against a local W&B server
    holding the sweep run's tested checkpoint: it asks for that alias, downloads the file
    under ./artifacts, and measures the accuracy the run's own test measured; an alias the
    server does not hold is one line."""
    proc, run_root = swept_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = run_root / "runs" / "sweep-learning-rate" / "blurpool-seed0"
    tested = run_dir / json.loads((run_dir / "tested.json").read_text())["checkpoint"]
    artifact = Artifact(
        "me", "invariance-recipes", "model-sweeprun1", ("tested", "best", "latest"),
        CHECKPOINT_NAME, tested.read_bytes(),
    )  # fmt: skip
    options = ["--logger", "none", "--max_shifts", "2", "--curve_max_shift", "2"]
    options += ["--on_collapse", "warn"]
    reference = "wandb:me/invariance-recipes/model-sweeprun1"
    with artifact_server(artifact) as url:
        env = recipe_env(HOME=str(tmp_path), WANDB_BASE_URL=url, WANDB_API_KEY="x" * 40)
        remote = _evaluate("--ckpt", f"{reference}:tested", "--out", "remote", *options,
                           cwd=tmp_path, env=env)  # fmt: skip
        missing = _evaluate("--ckpt", f"{reference}:v7", "--out", "missing", *options,
                            cwd=tmp_path, env=env)  # fmt: skip
    assert remote.returncode == 0, remote.stderr[-3000:]
    asked = [
        r["variables"] for r in artifact.requests if r["operation"] == "ArtifactMembershipByName"
    ]
    assert {key: asked[0][key] for key in ("entity", "project", "name")} == {
        "entity": "me",
        "project": "invariance-recipes",
        "name": "model-sweeprun1:tested",
    }
    (downloaded,) = (tmp_path / "artifacts").rglob(CHECKPOINT_NAME)
    assert downloaded.read_bytes() == tested.read_bytes()
    report = json.loads((tmp_path / "remote" / "report.json").read_text())
    assert report["checkpoint"] == str(downloaded.relative_to(tmp_path))
    # the checkpoint the run tested, evaluated again: the same test split, the same accuracy
    tested_metrics = json.loads((run_dir / "tested.json").read_text())["metrics"]
    assert report["acc"] == pytest.approx(tested_metrics["test/acc"], abs=1e-6)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    (line,) = missing.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: --ckpt '{reference}:v7': cannot download the artifact")


@pytest.mark.slow
def test_evaluate_an_unreachable_artifact_is_one_line(tmp_path: Path) -> None:
    """A W&B address nothing listens on fails at once with one line naming it (W&B's own
    client retried it for minutes and held the process at exit)."""
    env = recipe_env(
        HOME=str(tmp_path), WANDB_BASE_URL="http://127.0.0.1:9", WANDB_API_KEY="x" * 40
    )
    proc = _evaluate(
        "--ckpt", "wandb:me/invariance-recipes/model-sweeprun1:tested", cwd=tmp_path, env=env
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith(
        "error: --ckpt 'wandb:me/invariance-recipes/model-sweeprun1:tested': cannot download"
        " the artifact (cannot reach http://127.0.0.1:9"
    )
    assert "Traceback" not in proc.stderr
