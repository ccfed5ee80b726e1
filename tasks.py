"""The project's two jobs on any machine with Python 3.10+ (standard library only):

    python3 tasks.py train [ARGS]   set up .venv, then recipes/train.py --variant blurpool [ARGS]
    python3 tasks.py test [ARGS]    set up .venv, then ruff check, ruff format --check, pytest [ARGS]
    python3 tasks.py format         apply ruff's fixes and formatting

Setting up creates ``.venv`` and installs the project with its ``dev`` extra; it runs again
only when ``pyproject.toml`` changed.
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


def setup() -> Path:
    """The venv's Python, installing first when pyproject.toml changed since the last time."""
    python = BIN / ("python.exe" if os.name == "nt" else "python")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and python.exists():
        return python
    if not python.exists():
        print(f"creating {VENV.name} ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing the project and its dev extra (first time: a few minutes) ...", flush=True)
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(digest)
    return python


def main(argv: list[str]) -> None:
    task, args = (argv[0], argv[1:]) if argv else ("", [])
    if task == "train":
        run(setup(), "recipes/train.py", "--variant", "blurpool", *args)
    elif task == "test":
        python = setup()
        run(python, "-m", "ruff", "check", ".")
        run(python, "-m", "ruff", "format", "--check", ".")
        run(python, "-m", "pytest", *args)
    elif task == "format":
        python = setup()
        run(python, "-m", "ruff", "check", "--fix", ".")
        run(python, "-m", "ruff", "format", ".")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
