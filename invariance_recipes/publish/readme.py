"""The README's result tables, generated from ``docs/results/*/results.md``, never typed.

The README marks each generated block with ``<!-- results:NAME -->`` ... ``<!-- /results:NAME -->``;
the block is the part of ``docs/results/NAME/results.md`` between its ``<!-- readme -->``
markers (the mean ± std table and the paired comparison), or, in a results file written before
those markers existed, its first table. ``recipes/readme_tables.py`` rewrites the blocks, and
``--check`` fails when they differ, so the README cannot drift from the results files. Blocks
marked ``<!-- table:NAME -->`` ... ``<!-- /table:NAME -->`` hold a table generated from a
registry (`TABLES`), rewritten and checked the same way.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from invariance_recipes.compare.results import README_BLOCK, RESULTS_MD
from invariance_recipes.lightning_modules.metrics.protocols import protocol_table

BLOCK = re.compile(
    r"(?P<open><!-- results:(?P<name>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /results:(?P=name) -->)",
    re.DOTALL,
)
TABLE = re.compile(
    r"(?P<open><!-- table:(?P<name>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /table:(?P=name) -->)",
    re.DOTALL,
)
#: The README tables generated from a registry, by block name.
TABLES: dict[str, Callable[[], str]] = {"protocols": protocol_table}


def readme_part(results_md: str) -> str:
    """What the README shows of one results file (ending with a newline)."""
    start, end = README_BLOCK
    if start in results_md and end in results_md:
        return results_md.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    lines = results_md.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if first is None:
        return ""
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return "\n".join(table) + "\n"


def render(readme: str, results_dir: Path) -> str:
    """The README with every marked block replaced by its results file's part."""

    def block(match: re.Match[str]) -> str:
        path = results_dir / match["name"] / RESULTS_MD
        if not path.is_file():
            raise FileNotFoundError(
                f"README block results:{match['name']} has no {path}: run the comparison with "
                f"--out {path.parent}, or remove the block"
            )
        return match["open"] + readme_part(path.read_text()) + match["close"]

    def table(match: re.Match[str]) -> str:
        if match["name"] not in TABLES:
            raise FileNotFoundError(
                f"README block table:{match['name']} has no generator: choose one of "
                f"{', '.join(TABLES)}, or remove the block"
            )
        return match["open"] + TABLES[match["name"]]() + match["close"]

    return TABLE.sub(table, BLOCK.sub(block, readme))


def stale_blocks(readme: str, results_dir: Path) -> list[str]:
    """The names of the README blocks that differ from their results files or registries."""

    def bodies(text: str) -> dict[str, str]:
        results = {m["name"]: m["body"] for m in BLOCK.finditer(text)}
        return results | {f"table:{m['name']}": m["body"] for m in TABLE.finditer(text)}

    current, fresh = bodies(readme), bodies(render(readme, results_dir))
    return [name for name in current if current[name] != fresh[name]]


def readme_tables_command(argv: list[str]) -> int:
    """``readme_tables.py``: rewrite (or ``--check``) the README's result blocks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a block is stale"
    )
    args = parser.parse_args(argv)
    try:
        readme = args.readme.read_text()
        stale = stale_blocks(readme, args.results)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not BLOCK.search(readme):
        print(f"error: {args.readme} has no <!-- results:NAME --> block", file=sys.stderr)
        return 2
    if args.check:
        if stale:
            print(
                f"{args.readme}: stale result blocks: {', '.join(stale)}; run "
                "python recipes/readme_tables.py",
                file=sys.stderr,
            )
            return 1
        print(f"{args.readme}: every result block matches {args.results}")
        return 0
    args.readme.write_text(render(readme, args.results))
    blocks = len(BLOCK.findall(readme)) + len(TABLE.findall(readme))
    print(f"{args.readme}: rewrote {len(stale)} stale block(s) of {blocks}")
    return 0
