"""Sharded comparisons: the slices partition the plan, two real shard jobs plus a merge give
the rows of one unsharded comparison, and the merge refuses shards of another comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invariance_recipes.compare.comparison import common_args, compare_command, parse_args, plan
from invariance_recipes.compare.experiments import get_experiment
from invariance_recipes.compare.results import read_rows
from invariance_recipes.compare.sharding import Shard, parse_shard, select
from recipe_runs import ROOT, recipe_env, run_recipe

VARIANTS = ["baseline", "global-pooling"]


def compare_args(out: Path, *more: str) -> list[str]:
    return [
        "--experiment", "small-shift", "--quick", "--seeds", "1", "--variants", *VARIANTS,
        "--logger", "csv", "--out", str(out), *more, "--", "--on_collapse", "warn",
        "--data.max_samples", "120",
    ]  # fmt: skip


def full_plan(seeds: int) -> list:
    args, extra = parse_args(
        ["--experiment", "augmentation-sweep", "--seeds", str(seeds), "--quick"]
    )
    experiment = get_experiment(args.experiment, args.dataset)
    common = common_args(args, experiment, extra, Path("out"))
    return plan(experiment, "label", list(experiment.variants), seeds, common)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_plan_disjointly_and_evenly(count: int) -> None:
    runs = full_plan(seeds=3)
    slices = [select(runs, Shard(i, count)) for i in range(count)]
    names = [run.name for part in slices for run in part]
    assert sorted(names) == sorted(run.name for run in runs)  # cover
    assert len(set(names)) == len(names)  # disjoint
    sizes = [len(part) for part in slices]
    assert max(sizes) - min(sizes) <= 1  # balanced
    for part in slices:  # each slice keeps the plan's order
        order = [runs.index(run) for run in part]
        assert order == sorted(order)
    # stable: the same name always lands in the same slice, whatever the plan's order
    shuffled = list(reversed(runs))
    assert [r.name for r in select(shuffled, Shard(0, count))] == [
        r.name for r in reversed(slices[0])
    ]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "0/0", "1/2/3"])
def test_bad_shard_is_a_one_line_usage_error(text: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)
    assert compare_command(compare_args(tmp_path / "out", f"--shard={text}")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --shard") and err.count("\n") == 1


def test_merge_without_shards_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert compare_command(compare_args(tmp_path / "out", "--merge")) == 2
    assert "--merge: no finished shard" in capsys.readouterr().err


def _without_wall_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


@pytest.mark.slow
def test_two_shards_and_a_merge_equal_one_unsharded_comparison(tmp_path: Path, capsys) -> None:
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    # the two shards run at once, as the two tasks of `sbatch --array=0-1` run the template
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    jobs = [
        subprocess.Popen(
            ["bash", str(ROOT / "recipes/slurm/compare.sbatch"), *compare_args(sharded)],
            cwd=ROOT,
            env=recipe_env(SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT="2", PATH=path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [job.communicate(timeout=900) for job in jobs]
    for job, (_, err) in zip(jobs, outputs, strict=True):
        assert job.returncode == 0, err[-3000:]
    first = outputs[0]
    assert "shard 0/2: 1 of 2 runs" in first[0]
    shard_rows = [read_rows(sharded / f"shards/shard-{i}-of-2.csv") for i in range(2)]
    assert sorted(len(rows) for rows in shard_rows) == [1, 1]
    assert not (sharded / "results.csv").exists()  # a shard writes only its own rows

    # a shard that has not finished (no manifest yet) stops the merge
    manifest = sharded / "shards/shard-1-of-2.json"
    manifest.rename(manifest.with_suffix(".hidden"))
    assert compare_command(compare_args(sharded, "--merge")) == 2
    assert "shard(s) 1/2 have not finished" in capsys.readouterr().err
    manifest.with_suffix(".hidden").rename(manifest)

    # the tests run in any working tree, clean or not: the code check has its own test
    assert compare_command(compare_args(sharded, "--merge", "--allow-mixed-code")) == 0
    assert "[1/" not in capsys.readouterr().out  # the merge trains nothing
    for name in ("results.csv", "results.md", "accuracy_vs_offset.png"):
        assert (sharded / name).is_file(), name

    unsharded = run_recipe("compare.py", *compare_args(whole), cwd=tmp_path, timeout=900)
    assert unsharded.returncode == 0, unsharded.stderr[-3000:]
    merged_rows, whole_rows = read_rows(sharded / "results.csv"), read_rows(whole / "results.csv")
    assert [r["run"] for r in merged_rows] == [r["run"] for r in whole_rows]
    assert _without_wall_time(merged_rows) == _without_wall_time(whole_rows)

    # a shard made with other training options is refused, in one line
    other = json.loads(manifest.read_text())
    other["options"]["training_options"] = ["--data.max_samples", "999"]
    manifest.write_text(json.dumps(other))
    assert compare_command(compare_args(sharded, "--merge")) == 2
    err = capsys.readouterr().err
    assert "shard-1-of-2.json was made by a comparison with other options" in err
    assert err.count("\n") == 1
