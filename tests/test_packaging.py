"""One import root: the wheel installs ``invariance_recipes`` and nothing else at the top
level, and a user project with its own ``datamodules/`` package and ``lightning_modules.py``
imports ours beside its own, from a normal install and from this editable one."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from recipe_runs import ROOT

pytestmark = pytest.mark.slow

# What the user's project and ours each answer; neither may shadow the other.
PROBE = """
import json
import datamodules, lightning_modules
from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.lightning_modules.layers import BlurPool2d
import invariance_recipes.run.training  # the recipe logic resolves its own imports
print(json.dumps({
    "user_data": datamodules.WHOSE, "user_model": lightning_modules.WHOSE,
    "our_data": TranslationDataModule.__module__, "our_layer": BlurPool2d.__module__,
}))
"""
EXPECTED = {
    "user_data": "user",
    "user_model": "user",
    "our_data": "invariance_recipes.datamodules.translation",
    "our_layer": "invariance_recipes.lightning_modules.layers.blur_pool",
}


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A Lightning project of the common shape: its own datamodules/ and lightning_modules.py."""
    project = tmp_path / "project"
    (project / "datamodules").mkdir(parents=True)
    (project / "datamodules" / "__init__.py").write_text('WHOSE = "user"\n')
    (project / "lightning_modules.py").write_text('WHOSE = "user"\n')
    return project


def probe(python: Path | str, cwd: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-c", PROBE], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_wheel_has_one_top_level_import_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert roots == {"invariance_recipes"}
    # every package folder of the repository reached the wheel under the root
    for folder, package in (
        ("lightning_modules", "lightning_modules"),
        ("datamodules", "datamodules"),
    ):
        for init in (ROOT / folder).rglob("__init__.py"):
            inside = init.relative_to(ROOT / folder).as_posix()
            assert f"invariance_recipes/{package}/{inside}" in names, inside
    for init in (ROOT / "invariance_recipes").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names


def test_a_user_project_imports_ours_beside_its_own_from_the_wheel(
    wheel: Path, user_project: Path, tmp_path: Path
) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # torch and the other dependencies come from this interpreter's site-packages (a path
    # entry only: its .pth files, among them the editable install of this checkout, stay out)
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # a wheel is installed by unpacking it into site-packages
    assert probe(python, user_project) == EXPECTED


def test_a_user_project_imports_ours_beside_its_own_from_the_editable_install(
    user_project: Path,
) -> None:
    assert probe(sys.executable, user_project) == EXPECTED
