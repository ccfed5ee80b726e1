"""torchrun across two "nodes": two torchrun agents on this machine meet at a c10d rendezvous
on 127.0.0.1 and train one run with gloo, as two machines would."""

from __future__ import annotations

import glob
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from recipe_runs import QUICK, ROOT, recipe_env
from scale_runs import assert_matches_single_process, only_run_folder
from wandb_records import read_run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(port: int, node_rank: int, *train_args: str) -> list[str]:
    """What a user types on node ``node_rank`` (README "Scaling out")."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
        "--node_rank", str(node_rank), "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "invariance-test",
        str(ROOT / "recipes/train.py"), *train_args,
    ]  # fmt: skip


@pytest.mark.slow
def test_two_torchrun_nodes_train_one_run_that_matches_single_process(tmp_path: Path) -> None:
    port = free_port()
    args = [
        *QUICK, "--accelerator", "cpu", "--devices", "1", "--strategy", "ddp",
        "--trainer.num_nodes", "2", "--run_name", "multinode", "--logger", "wandb",
        "--experiment", "torchrun-test",
    ]  # fmt: skip
    nodes = [
        subprocess.Popen(
            torchrun_command(port, rank, *args),
            cwd=tmp_path,
            env=recipe_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=400)[0] for node in nodes]
    for node, log in zip(nodes, logs, strict=True):
        assert node.returncode == 0, log[-4000:]

    run_dir = only_run_folder(tmp_path / "runs", "multinode")
    assert_matches_single_process(run_dir)
    # W&B from global rank 0 only: one offline run, of this run's name and group
    (path,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    run = read_run(Path(path))
    assert run.run.display_name == "multinode"
    assert run.run.run_group == "torchrun-test"
    assert not glob.glob(str(tmp_path / "**" / "offline-run-*"), recursive=True)[1:]
    assert logs[0].count("run folder:") >= 1 and "run folder:" not in logs[1]
