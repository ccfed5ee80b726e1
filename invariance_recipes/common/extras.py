"""Which optional extra installs which import, so that a missing one is one line naming the
``pip install`` that fixes it instead of a ``ModuleNotFoundError`` from deep inside a command.

The core (``pip install invariance-recipes``) is torch and torchvision: the layers, networks and
shifts. The extras are declared in ``pyproject.toml``; this table is the one place that maps
their import names back to them (tests/test_extras.py checks both agree).
"""

from __future__ import annotations

from importlib.util import find_spec

DISTRIBUTION = "invariance-recipes"

#: Top-level import name -> the extra whose install brings it.
EXTRAS: dict[str, str] = {
    "torchmetrics": "metrics",
    "lightning": "data",
    "albumentations": "data",
    "sklearn": "data",
    "wandb": "train",
    "jsonargparse": "train",
    "scipy": "train",
    "matplotlib": "train",
    "wandb_workspaces": "dashboard",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
    "timm": "bench",
    "kornia": "bench",
    "antialiased_cnns": "bench",
}

#: Extras that include others (``train`` pulls in ``metrics`` and ``data``).
INCLUDES: dict[str, tuple[str, ...]] = {"train": ("metrics", "data")}


def install_command(extra: str) -> str:
    """The command that installs `extra`, quoted for any shell."""
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def missing_extra_message(module: str, extra: str) -> str:
    return f"{module} is not installed; it comes with the {extra!r} extra: {install_command(extra)}"


def imports_of(extra: str) -> list[str]:
    """The import names `extra` provides, its included extras' first."""
    names = [name for included in INCLUDES.get(extra, ()) for name in imports_of(included)]
    return names + [name for name, owner in EXTRAS.items() if owner == extra]


def missing_module(extra: str) -> str | None:
    """The first import name of `extra` that cannot be found, or None when all can."""
    return next((name for name in imports_of(extra) if find_spec(name) is None), None)


def require_extra(extra: str) -> None:
    """Raise ``ModuleNotFoundError`` with the install line when `extra` is not installed."""
    module = missing_module(extra)
    if module is not None:
        raise ModuleNotFoundError(missing_extra_message(module, extra), name=module)


def explain_missing(error: ModuleNotFoundError) -> str | None:
    """The one-line fix for `error` when the missing module belongs to an extra, else None."""
    root = (error.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    return None if extra is None else missing_extra_message(root, extra)
