"""The wheel as a user installs it: the core alone in a fresh venv runs the layers and networks,
says which extra a missing part needs, ships LICENSE and py.typed, and a user's mypy reads our
types from it.

The venv gets the wheel with ``pip install --no-deps`` and, instead of a download, the torch and
torchvision this test runs with (their installed files and those of their own requirements,
linked into one folder on the venv's path): nothing else of the development environment is
visible there, so an import of an extra's package fails as it would for a user.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from recipe_runs import QUICK

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
CORE = ("torch", "torchvision")


def requirement_closure(names: tuple[str, ...]) -> set[str]:
    """The installed distributions `names` (``name`` or ``name[extra,...]``) need at run time."""
    seen: set[tuple[str, str]] = set()
    found: set[str] = set()
    todo = list(names)
    while todo:
        name, _, extras = todo.pop().partition("[")
        wanted = {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        key = dist.metadata["Name"].lower()
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        found.add(key)
        for requirement in dist.requires or []:
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
            if extra is None or extra.group(1) in wanted:
                todo.append(re.match(r"[A-Za-z0-9_.-]+(\[[^\]]*\])?", requirement).group(0))
    return found


def link_distributions(names: set[str], into: Path) -> None:
    """Link each distribution's top-level files and folders (and its metadata) into `into`."""
    into.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or []} - {".."}:
            target = into / top
            if not target.exists() and (base / top).exists():
                target.symlink_to(base / top)


def run(*cmd: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def make_venv(tmp: Path, wheel: Path, distributions: set[str]) -> Path:
    """A fresh venv with the wheel (no dependencies resolved) and `distributions` linked in;
    returns its python."""
    venv = tmp / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    install = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    site = run(python, "-c", "import site; print(site.getsitepackages()[0])", cwd=tmp)
    link_distributions(distributions, tmp / "linked")
    (Path(site.stdout.strip()) / "linked.pth").write_text(f"{tmp / 'linked'}\n")
    return python


def extra_requirements(extra: str) -> tuple[str, ...]:
    """The distribution names `extra` declares in pyproject.toml, its included extras' too."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: list[str] = []
    for requirement in declared["optional-dependencies"][extra]:
        name = re.match(r"[A-Za-z0-9_.-]+(\[[^\]]*\])?", requirement).group(0)
        if name.startswith("invariance-recipes["):
            for included in name.removeprefix("invariance-recipes[").rstrip("]").split(","):
                names += extra_requirements(included)
        else:
            names.append(name)
    return tuple(names)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> tuple[Path, Path]:
    """(the venv's python with the core alone, the built wheel)."""
    tmp = tmp_path_factory.mktemp("core")
    return make_venv(tmp, wheel, requirement_closure(CORE)), wheel


def test_core_alone_runs_the_layers_and_networks(
    core_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    python, _ = core_venv
    user = tmp_path / "use_layers.py"
    user.write_text(
        textwrap.dedent(
            """
            import importlib.util
            import torch
            from invariance_recipes.lightning_modules.layers import BlurPool2d, MaxBlurPool2d
            from invariance_recipes.lightning_modules import antialias, build_net

            for extra in ("lightning", "torchmetrics", "albumentations", "wandb", "matplotlib"):
                assert importlib.util.find_spec(extra) is None, extra
            x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float64).reshape(2, 3, 8, 8)
            out = BlurPool2d(3, filt_size=2, dtype=torch.float64)(x)
            # a 2-tap blur with stride 2 is the mean of each 2x2 block
            assert torch.allclose(out, x.unflatten(-1, (4, 2)).unflatten(-3, (4, 2)).mean((-1, -3)))
            assert MaxBlurPool2d(3)(x.float()).shape == (2, 3, 4, 4)
            net = build_net(
                "small-cnn", in_channels=1, num_classes=10, image_size=28, downsample="blur", head="gap"
            )
            assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
            print("core ok")
            """
        )
    )
    proc = run(python, user, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "core ok"


def test_a_missing_extra_is_one_line_naming_the_install(
    core_venv: tuple[Path, Path], tmp_path: Path
) -> None:
    python, _ = core_venv
    proc = run(python, "-c", "import invariance_recipes.lightning_modules.metrics", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: torchmetrics is not installed; it comes with the 'metrics' extra: "
        'pip install "invariance-recipes[metrics]"'
    )
    script = python.parent / "invariance-recipes"
    for command in ("train", "evaluate", "compare", "findings"):
        proc = run(script, command, "--max_epochs", "1", cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stderr[-2000:])
        assert proc.stderr.splitlines() == [
            "error: torchmetrics is not installed; it comes with the 'train' extra: "
            'pip install "invariance-recipes[train]"'
        ]
        helped = run(script, command, "--help", cwd=tmp_path)  # help needs no extra
        assert helped.returncode == 0 and helped.stdout.startswith(
            f"usage: invariance-recipes {command}"
        )


def test_wheel_ships_license_and_py_typed(core_venv: tuple[Path, Path]) -> None:
    _, wheel = core_venv
    names = zipfile.ZipFile(wheel).namelist()
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert "invariance_recipes/py.typed" in names
    text = zipfile.ZipFile(wheel).read(license_file).decode()
    assert text.startswith("MIT License") and (ROOT / "LICENSE").read_text() == text
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    fields = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in fields and "Classifier: Typing :: Typed" in fields


def test_a_users_mypy_reads_our_types(core_venv: tuple[Path, Path], tmp_path: Path) -> None:
    """With py.typed, mypy checks calls into the package: a deliberate error is reported, the
    correct file passes."""
    python, _ = core_venv
    pytest.importorskip("mypy")
    good = tmp_path / "good.py"
    good.write_text(
        "from invariance_recipes.lightning_modules.layers import BlurPool2d\n"
        "layer: BlurPool2d = BlurPool2d(3, filt_size=3)\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from invariance_recipes.lightning_modules.layers import BlurPool2d\n"
        'layer = BlurPool2d("three")\n'
    )
    # one run over both files (mypy reads torch's types once): only the bad call is an error
    proc = run(
        sys.executable,
        "-m",
        "mypy",
        "--python-executable",
        python,
        "--follow-imports=silent",
        "--no-incremental",
        good,
        bad,
        cwd=tmp_path,
        timeout=600,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert proc.returncode == 1 and len(errors) == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert errors[0].startswith("bad.py:2: error: ")
    assert (
        'Argument 1 to "BlurPool2d" has incompatible type "str"; expected "int | None"'
        in (errors[0])
    )


def test_an_installed_copy_trains_with_its_console_script(
    tmp_path_factory: pytest.TempPathFactory, wheel: Path
) -> None:
    """The wheel with the train extra's packages, run from a folder that is not a clone."""
    tmp = tmp_path_factory.mktemp("train")
    python = make_venv(tmp, wheel, requirement_closure((*CORE, *extra_requirements("train"))))
    work = tmp / "project"
    work.mkdir()
    proc = run(
        python.parent / "invariance-recipes",
        "train",
        "--variant",
        "blurpool",
        *QUICK,
        "--logger",
        "csv",
        cwd=work,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "runs" / "blurpool-seed0" / "test_metrics.json").is_file()
    assert (
        "next: invariance-recipes evaluate --ckpt runs/blurpool-seed0/checkpoints/" in proc.stdout
    )
