"""The command registry behind ``invariance-recipes COMMAND`` (and ``python -m
invariance_recipes COMMAND``, and the thin scripts in ``recipes/``): each command's function, the
extra it needs, and a one-line summary. A new command is one entry here plus its help text.

``COMMAND --help`` prints the text generated from the command's real parser into
``invariance_recipes/help/COMMAND.txt`` (``python -m invariance_recipes.commands --write``;
``--check`` and a test check the texts are current), so it answers without importing torch or Lightning, which
alone take seconds. Anything else imports the command, after checking that its extra is
installed: a missing one is a single line naming the ``pip install`` that fixes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from invariance_recipes.common.extras import explain_missing, missing_extra_message, missing_module
from invariance_recipes.run.errors import EXIT_USAGE

PROG = "invariance-recipes"
HELP_DIR = Path(__file__).with_name("help")
#: the width the help texts are generated at, so they do not depend on the terminal
HELP_COLUMNS = 100


@dataclass(frozen=True)
class Command:
    target: str  # "module:function", the function taking argv and returning an exit code
    extra: str | None  # the extra it needs (invariance_recipes/common/extras.py)
    summary: str

    def load(self) -> Callable[[Sequence[str]], int | None]:
        module, function = self.target.split(":")
        return getattr(import_module(module), function)


COMMANDS: dict[str, Command] = {
    "train": Command(
        "invariance_recipes.commands:train_command",
        "train",
        "train one variant, then test its accuracy and shift robustness",
    ),
    "evaluate": Command(
        "invariance_recipes.measure.evaluation:evaluate_command",
        "train",
        "report a trained checkpoint's (or W&B artifact's) shift robustness in full",
    ),
    "compare": Command(
        "invariance_recipes.compare.comparison:compare_command",
        "train",
        "compare variants under one experiment: same data, seeds and budget",
    ),
    "findings": Command(
        "invariance_recipes.publish.findings:findings_command",
        "train",
        "write the findings table (published claims, our numbers with 95% intervals)",
    ),
    "redraw": Command(
        "invariance_recipes.publish.redraw:redraw_command",
        "train",
        "rewrite comparisons' results.md from their results.csv and outcomes, without training",
    ),
    "readme-tables": Command(
        "invariance_recipes.publish.readme:readme_tables_command",
        None,
        "rewrite (or --check) the README's result tables from docs/results",
    ),
    "receptive-fields": Command(
        "invariance_recipes.measure.receptive_fields:readme_table_command",
        "train",
        "print the theoretical receptive field of every backbone and downsampler",
    ),
    "dashboard": Command(
        "invariance_recipes.publish.dashboard:dashboard_command",
        "dashboard",
        "build the comparison dashboard, a saved W&B workspace view",
    ),
    "benchmark": Command(
        "invariance_recipes.benchmarks.cli:main",
        "train",
        "time our layers against timm, kornia and antialiased-cnns, and training",
    ),
}


def train_command(argv: Sequence[str]) -> int:
    """``train``: exit codes 0 finished, 1 failed (diverged), 2 bad input, 130 Ctrl-C,
    143 SIGTERM; the scalar test metrics, the run folder and what to do next on success."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from invariance_recipes.lightning_modules.callbacks import TESTED
    from invariance_recipes.run.cli import format_metrics, run_cli
    from invariance_recipes.run.training import train

    result = run_cli(train, argv)
    if isinstance(result, int):
        return result
    run_dir, metrics = result
    if rank_zero_only.rank == 0:
        print(format_metrics(metrics))
        print(f"run folder: {run_dir}")
        tested = json.loads((run_dir / TESTED).read_text())["checkpoint"]
        print(
            f"next: {PROG} evaluate --ckpt {run_dir / tested} (every shift and protocol), "
            f"or {PROG} compare --experiment small-shift (variants side by side)"
        )
    return 0


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items())
    return (
        f"usage: {PROG} COMMAND [OPTIONS]   (or python -m invariance_recipes COMMAND)\n\n"
        f"commands:\n{rows}\n\n{PROG} COMMAND --help lists a command's options."
    )


def help_path(name: str) -> Path:
    return HELP_DIR / f"{name}.txt"


def run_command(name: str, argv: Sequence[str]) -> int:
    """Run command `name` with `argv`, as its exit code."""
    command = COMMANDS[name]
    if list(argv) in (["-h"], ["--help"]) and help_path(name).is_file():
        sys.stdout.write(help_path(name).read_text())
        return 0
    module = missing_module(command.extra) if command.extra else None
    if module is not None:
        print(f"error: {missing_extra_message(module, command.extra)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        code = command.load()(list(argv))
    except ModuleNotFoundError as error:
        message = explain_missing(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return int(code or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """``invariance-recipes COMMAND [OPTIONS]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else EXIT_USAGE
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"error: unknown command {name!r}: choose one of {', '.join(COMMANDS)}", file=sys.stderr
        )
        return EXIT_USAGE
    return run_command(name, rest)


def generate_help(name: str) -> str:
    """The `--help` text of command `name`, from its real parser (imports the command)."""
    saved = sys.argv[0], os.environ.get("COLUMNS")
    sys.argv[0], os.environ["COLUMNS"] = f"{PROG} {name}", str(HELP_COLUMNS)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            COMMANDS[name].load()(["--help"])
    finally:
        sys.argv[0] = saved[0]
        if saved[1] is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = saved[1]
    return out.getvalue()


def write_help() -> None:
    """Regenerate every ``help/COMMAND.txt``."""
    HELP_DIR.mkdir(exist_ok=True)
    for name in COMMANDS:
        help_path(name).write_text(generate_help(name))
        print(f"wrote {help_path(name).relative_to(Path.cwd())}")


def stale_help() -> list[str]:
    """The commands whose shipped help text differs from what their parser prints now."""
    return [name for name in COMMANDS if generate_help(name) != help_path(name).read_text()]


if __name__ == "__main__":
    # Run in a fresh process each time: the parsers list subclasses in import order.
    if sys.argv[1:] == ["--write"]:
        write_help()
    elif sys.argv[1:] == ["--check"]:
        stale = stale_help()
        if stale:
            sys.exit(f"stale help texts: {', '.join(stale)}; run {__spec__.name} --write")
    else:
        sys.exit("usage: python -m invariance_recipes.commands --write | --check")
