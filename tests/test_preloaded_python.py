"""The forked recipe runs of the tests behave as fresh interpreters do: same exit status, same
output, their own folder and environment, and a timeout that ends the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recipe_runs import ROOT, recipe_env, run_recipe


@pytest.mark.slow
def test_a_forked_run_prints_and_exits_as_a_fresh_interpreter(tmp_path: Path) -> None:
    args = ["--variant", "baseline", "--model.lr", "-1"]
    fresh = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "train.py"), *args],
        cwd=tmp_path,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    forked = run_recipe("train.py", *args, cwd=tmp_path)
    assert fresh.returncode == 2
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )


def test_a_forked_run_has_its_folder_environment_and_status(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys, atexit\n"
        "atexit.register(lambda: print('exiting', flush=True))\n"
        "print(os.getcwd(), os.environ['PROBE'], sys.argv[1:], sys.path[0])\n"
        "print('to stderr', file=sys.stderr)\n"
        "raise SystemExit(int(sys.argv[1]))\n"
    )
    folder = tmp_path / "cwd"
    folder.mkdir()
    proc = run_recipe(str(script), "3", cwd=folder, env=recipe_env(PROBE="x"))
    assert proc.returncode == 3
    assert proc.stdout.splitlines() == [f"{folder} x ['3'] {tmp_path}", "exiting"]
    assert proc.stderr.endswith("to stderr\n")
    script.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        run_recipe(str(script), cwd=folder, timeout=2)
