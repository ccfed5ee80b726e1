"""The project's two jobs on any machine with Python 3.10+ (standard library only):

    python3 tasks.py train [ARGS]   set up .venv with .[train], then recipes/train.py --variant
                                    blurpool [ARGS]
    python3 tasks.py test [ARGS]    set up .venv with .[dev], then ruff check, ruff format --check,
                                    pytest [ARGS]
    python3 tasks.py format         apply ruff's fixes and formatting (.[dev])

Setting up creates ``.venv`` and installs the project (editable) with the extra the task needs:
``train`` for training, ``dev`` (training plus tests and lint) for the others. It runs again only
when ``pyproject.toml`` changed or a task needs a larger extra than the one installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def run(*cmd: str | Path) -> None:
    code = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if code:
        sys.exit(code)


#: Each task's extra; ``dev`` includes ``train``, so a venv set up for tests also trains.
EXTRA = {"train": "train", "test": "dev", "format": "dev"}
COVERS = {"train": {"train"}, "dev": {"train", "dev"}}


def setup(extra: str) -> Path:
    """The venv's Python with the project and `extra` installed, installing first when
    pyproject.toml changed since the last time or the installed extra does not cover `extra`."""
    python = BIN / ("python.exe" if os.name == "nt" else "python")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and python.exists():
        installed_digest, _, installed = STAMP.read_text().partition(" ")
        if installed_digest == digest and extra in COVERS.get(installed, {installed}):
            return python
    if not python.exists():
        print(f"creating {VENV.name} ...", flush=True)
        venv.create(VENV, with_pip=True)
    print(f"installing the project with its {extra} extra (first time: a few minutes) ...")
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "--quiet", "-e", f".[{extra}]")
    STAMP.write_text(f"{digest} {extra}")
    return python


def main(argv: list[str]) -> None:
    task, args = (argv[0], argv[1:]) if argv else ("", [])
    if task == "train":
        run(setup(EXTRA[task]), "recipes/train.py", "--variant", "blurpool", *args)
    elif task == "test":
        python = setup(EXTRA[task])
        run(python, "-m", "ruff", "check", ".")
        run(python, "-m", "ruff", "format", "--check", ".")
        # two workers, one test file each at a time (a file's fixtures stay in one process):
        # most tests wait on recipe subprocesses, so the suite takes about half the time
        run(python, "-m", "pytest", "-n", "2", "--dist", "loadfile", *args)
    elif task == "format":
        python = setup(EXTRA[task])
        run(python, "-m", "ruff", "check", "--fix", ".")
        run(python, "-m", "ruff", "format", ".")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
