"""Fixtures shared by the test files. The quick option sets for real recipe runs are in
``recipe_runs.py`` (``QUICK``), beside the helpers that start the recipes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One data folder for every run of the session, in process and in the recipe
    subprocesses (which inherit the variable): syndigits, the comparisons' dataset, is then
    rendered once per session, not once per working folder."""
    from invariance_recipes.datamodules.sources import DATA_DIR_ENV

    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("data")
        patch.setenv(DATA_DIR_ENV, str(folder))
        yield folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """One working folder per test module, for recipe runs its tests share (runs/, results/)."""
    return tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])


@pytest.fixture
def readme_and_results(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the README and docs/results to edit: the generated-block tests change them."""
    import shutil

    from recipe_runs import ROOT

    shutil.copytree(ROOT / "docs/results", tmp_path / "results")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path / "README.md", tmp_path / "results"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from this checkout once per test worker (no dependencies)."""
    from invariance_recipes.common.file_lock import file_lock
    from recipe_runs import ROOT

    out = tmp_path_factory.mktemp("wheel")
    (ROOT / "build").mkdir(exist_ok=True)
    with file_lock(ROOT / "build" / ".wheel.lock"):  # test workers build in turn: one build/
        build = _build_wheel(out)
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = out.glob("invariance_recipes-*.whl")
    return built


def _build_wheel(out: Path) -> subprocess.CompletedProcess[str]:
    from recipe_runs import ROOT

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with the most slow tests first, each file's tests in their own order: the test
    workers start the long recipe runs early and fill the end with short files, instead of
    ending on one long file while the other worker idles."""
    slow: dict[str, int] = {}
    for item in items:
        slow[item.module.__name__] = slow.get(item.module.__name__, 0) + bool(
            item.get_closest_marker("slow")
        )
    items.sort(key=lambda item: -slow[item.module.__name__])  # stable: file order kept
