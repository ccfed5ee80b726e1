"""Comparisons survive damaged files, concurrent jobs and signals: a damaged per-run file is
measured again or named in one line, two processes never train one run twice, a partial
report says it is incomplete, and SIGTERM exits 143."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from invariance_recipes.compare.comparison import compare_command, mark_incomplete
from invariance_recipes.compare.experiments import EXPERIMENTS
from invariance_recipes.compare.results import README_BLOCK, read_rows
from invariance_recipes.measure.outcomes import load_outcomes
from recipe_runs import ROOT, recipe_env

RUN = "small-shift-quick-baseline-seed0"
# Runs too small to learn: the plumbing is what is tested, so a collapse only warns.
COMPARE = [
    "--experiment", "small-shift", "--quick", "--variants", "baseline", "--logger", "csv",
]  # fmt: skip
TRAINING = ["--", "--on_collapse", "warn", "--data.max_samples", "120", "--max_epochs", "1"]


def test_cut_short_results_csv_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("experiment,variant,setting,seed,run,acc\nsmall-shift,baseline,default,0,r\n")
    with pytest.raises(ValueError, match=rf"{path} is damaged at line 2"):
        read_rows(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(ValueError, match=rf"{path} is damaged"):
        read_rows(path)


def test_damaged_shard_csv_fails_the_merge_in_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    options = {
        "experiment": "small-shift", "dataset": EXPERIMENTS["small-shift"].dataset,
        "backbone": "small-cnn", "quick": True, "training_options": [], "protocols": None,
    }  # fmt: skip
    (out / "shards").mkdir(parents=True)
    (out / "shards/shard-0-of-1.json").write_text(
        json.dumps({"shard": "0/1", "options": options, "plan": [RUN]})
    )
    shard_csv = out / "shards/shard-0-of-1.csv"
    shard_csv.write_text(
        f"experiment,variant,setting,seed,run,acc\nsmall-shift,baseline,def,0,{RUN}"
    )
    code = compare_command([*COMPARE[:-2], "--logger", "none", "--out", str(out), "--merge"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(shard_csv) in err and "Traceback" not in err


def test_cut_short_outcomes_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.npz"
    np.savez_compressed(path, label=np.arange(500), prediction=np.arange(500))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"{path} is damaged"):
        load_outcomes(path)


def test_partial_report_says_incomplete_and_what_is_missing() -> None:
    md = f"# title\n\n{README_BLOCK[0]}\n| variant |\n{README_BLOCK[1]}\n"
    marked = mark_incomplete(md, ["a", "b", "c"], [{"run": "b"}])
    readme_part = marked.split(README_BLOCK[0])[1]
    assert "**incomplete: 1 of 3 runs**; missing: a, c" in readme_part
    assert mark_incomplete(md, ["b"], [{"run": "b"}]) == md


def _start(out: Path, tag: str, *more: str) -> subprocess.Popen[str]:
    log = (out.parent / f"{tag}.log").open("w")
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "recipes/compare.py"),
            *COMPARE,
            "--out",
            str(out),
            *more,
            *TRAINING,
        ],
        cwd=out.parent,
        env=recipe_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_two_jobs_of_one_shard_train_each_run_once(tmp_path: Path) -> None:
    out = tmp_path / "results"
    jobs = [_start(out, f"job{i}", "--shard", "0/1") for i in range(2)]
    codes = [job.wait(timeout=900) for job in jobs]
    logs = [(tmp_path / f"job{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    trained = [log.count("training: press Ctrl-C") for log in logs]
    assert sorted(trained) == [0, 1], trained  # one process trained, the other waited
    assert any("another process is training it; waiting" in log for log in logs)
    assert sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith(".")) == [RUN]
    rows = read_rows(out / "shards/shard-0-of-1.csv")
    assert [row["run"] for row in rows] == [RUN]

    # a half-written outcomes file (a kill mid-write, an older version) is measured again
    outcomes = out / "runs" / RUN / "outcomes.npz"
    good = load_outcomes(outcomes)
    outcomes.write_bytes(outcomes.read_bytes()[:100])
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes/compare.py"),
            *COMPARE,
            "--out",
            str(out),
            "--shard",
            "0/1",
            *TRAINING,
        ],
        cwd=tmp_path,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{outcomes} is damaged" in again.stderr and "measuring it again" in again.stderr
    assert "Traceback" not in again.stderr and "training: press Ctrl-C" not in again.stdout
    assert np.array_equal(load_outcomes(outcomes)["prediction"], good["prediction"])


@pytest.mark.slow
def test_sigterm_stops_a_comparison_with_143(tmp_path: Path) -> None:
    out = tmp_path / "results"
    job = _start(out, "term")
    log = tmp_path / "term.log"
    deadline = time.monotonic() + 600
    while "training: press Ctrl-C" not in log.read_text():
        assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=120) == 143, log.read_text()[-3000:]
    text = log.read_text()
    assert "stopped" in text and "rerun the same command" in text and "Traceback" not in text


def _reddish_top(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    top = pixels[: max(1, pixels.shape[0] // 12)]
    return int(((top[..., 0] > 140) & (top[..., 1] < 90) & (top[..., 2] < 90)).sum())


def test_partial_plots_say_incomplete_on_top(tmp_path: Path) -> None:
    from invariance_recipes.compare.results import write_plots

    rows = [
        {"variant": v, "setting": "default", "seed": 0, "acc": acc, "consistency_zero@4": acc,
         **{f"test/acc_at_shift/{d:+d}_{d:+d}": acc - abs(d) / 10 for d in range(-2, 3)}}
        for v, acc in (("baseline", 0.9), ("global-pooling", 0.8))
    ]  # fmt: skip
    (tmp_path / "plain").mkdir()
    (tmp_path / "partial").mkdir()
    plain = write_plots(tmp_path / "plain", rows, ("consistency_zero@4", "acc"), (), "")
    partial = write_plots(
        tmp_path / "partial", rows, ("consistency_zero@4", "acc"), (), "", "incomplete: 2 of 3 runs"
    )
    assert [_reddish_top(p) for p in plain] == [0, 0]
    assert all(_reddish_top(p) > 20 for p in partial)
