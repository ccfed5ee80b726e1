"""``invariance-recipes COMMAND`` / ``python -m invariance_recipes COMMAND``: one registry of
commands, ``--help`` without the training stack (under 2 s), the scripts in ``recipes/`` as
one-line wrappers, and the extras table that agrees with ``pyproject.toml``."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from invariance_recipes.commands import COMMANDS, help_path, main
from invariance_recipes.common.extras import EXTRAS, INCLUDES, imports_of, install_command

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def python_m(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "invariance_recipes", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return proc, time.perf_counter() - start


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_answers_within_two_seconds_without_torch(name: str) -> None:
    proc, seconds = python_m(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == help_path(name).read_text()
    assert proc.stdout.startswith(f"usage: invariance-recipes {name}")
    assert seconds < 2.0, f"{name} --help took {seconds:.1f} s"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, contextlib, io\n"
            "from invariance_recipes.commands import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()): main([{name!r}, '--help'])\n"
            "heavy = {'torch', 'lightning', 'jsonargparse', 'wandb'} & set(sys.modules)\n"
            "assert not heavy, heavy",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]


def test_no_command_lists_the_commands_and_an_unknown_one_is_one_line(capsys) -> None:
    assert main([]) == 2
    listing = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert f"  {name}" in listing and command.summary in listing
    assert main(["--help"]) == 0
    proc, _ = python_m("trian")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: unknown command 'trian': choose one of {', '.join(COMMANDS)}"
    ]


def test_every_target_exists_and_every_recipe_is_a_one_line_wrapper() -> None:
    for command in COMMANDS.values():
        module, function = command.target.split(":")
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():  # the model and data sides live in their own folders
            path = ROOT / module.removeprefix("invariance_recipes.").replace(".", "/")
            path = path.with_suffix(".py")
        tree = ast.parse(path.read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, command
    wrapped = set()
    for script in (ROOT / "recipes").glob("*.py"):
        source = script.read_text()
        body = ast.parse(source).body[1:]  # after the docstring
        (call,) = re.findall(r'sys\.exit\(main\(\["([\w-]+)", \*sys\.argv\[1:\]\]\)\)', source)
        assert len(body) == 3, script  # import sys; from ... import main; if __name__ == ...
        wrapped.add(call)
    assert wrapped == set(COMMANDS)
    assert PYPROJECT["project"]["scripts"] == {
        "invariance-recipes": "invariance_recipes.__main__:main"
    }


def test_extras_table_agrees_with_pyproject() -> None:
    declared = PYPROJECT["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(declared)
    assert PYPROJECT["project"]["dependencies"] == ["torch>=2.4", "torchvision>=0.19"]
    distributions = metadata.packages_distributions()

    def names(extra: str) -> set[str]:
        return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in declared[extra]}

    for module, extra in EXTRAS.items():
        if module in distributions:  # installed here: its distribution is in that extra
            dists = {d.lower() for d in distributions[module]}
            assert dists & names(extra), (module, extra, dists)
    for extra, included in INCLUDES.items():
        assert f"invariance-recipes[{','.join(included)}]" in declared[extra]
    assert imports_of("train")[:4] == ["torchmetrics", "lightning", "albumentations", "sklearn"]
    assert install_command("train") == 'pip install "invariance-recipes[train]"'


@pytest.mark.slow
def test_help_texts_are_current() -> None:
    """The shipped texts are what the parsers print now, generated in a fresh process as
    ``--write`` does (the parsers list subclasses in import order)."""
    proc = subprocess.run(
        [sys.executable, "-m", "invariance_recipes.commands", "--check"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
