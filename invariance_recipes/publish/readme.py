"""The README's generated tables, never typed: results from ``docs/results/*/results.md``,
and the registries' own tables.

The README marks each generated block with ``<!-- KIND:NAME -->`` ... ``<!-- /KIND:NAME -->``:
- ``results:NAME`` is the part of ``docs/results/NAME/results.md`` between its
  ``<!-- readme -->`` markers (the mean ± std table and the paired comparison), or, in a
  results file written before those markers existed, its first table;
- ``registry:NAME`` is the table :data:`REGISTRY_TABLES` generates from a registry
  (variants, network options, protocols), so a new entry reaches the README with no edit.

``recipes/readme_tables.py`` rewrites the blocks, and ``--check`` fails when they differ, so the
README cannot drift from the results files or the registries.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from invariance_recipes.compare.results import README_BLOCK, RESULTS_MD
from invariance_recipes.lightning_modules.metrics.protocols import protocol_table
from invariance_recipes.lightning_modules.nets import BACKBONES, DOWNSAMPLERS, HEADS
from invariance_recipes.lightning_modules.nets.options import PADDING_MODES
from invariance_recipes.lightning_modules.variants import variants_markdown

BLOCK = re.compile(
    r"(?P<open><!-- (?P<kind>results|registry):(?P<name>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /(?P=kind):(?P=name) -->)",
    re.DOTALL,
)


def network_options_markdown() -> str:
    """The choices of every network registry with their summaries."""
    rows = [
        *(f"| `--backbone {k}` | {v.summary} |" for k, v in BACKBONES.items()),
        *(f"| `--downsample {k}` | {v.summary} |" for k, v in DOWNSAMPLERS.items()),
        *(f"| `--head {k}` | {v.summary} |" for k, v in HEADS.items()),
        f"| `--padding_mode` | {', '.join(f'`{m}`' for m in PADDING_MODES)} |",
    ]
    return "\n".join(["| option | what it builds |", "|---|---|", *rows]) + "\n"


# ``<!-- registry:NAME -->`` blocks: the one place a generated README table is declared.
REGISTRY_TABLES: Mapping[str, Callable[[], str]] = MappingProxyType(
    {
        "variants": variants_markdown,
        "network-options": network_options_markdown,
        "protocols": protocol_table,
    }
)


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


def read_results(path: Path) -> str:
    """A results file's text; a file that is not text or holds no table is a ``ValueError``
    naming it, so a damaged file never empties a README block."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{path} is not text (damaged?); rerun its comparison or restore it with git"
        ) from None
    if not readme_part(text).strip():
        raise ValueError(
            f"{path} holds no results table (empty or damaged); rerun its comparison or "
            "restore it with git"
        )
    return text


def render(readme: str, results_dir: Path) -> str:
    """The README with every marked block replaced by its results file's part."""

    def block(match: re.Match[str]) -> str:
        if match["kind"] == "registry":
            if match["name"] not in REGISTRY_TABLES:
                raise FileNotFoundError(
                    f"README block registry:{match['name']} names no registry table: use one "
                    f"of {', '.join(REGISTRY_TABLES)}"
                )
            return match["open"] + REGISTRY_TABLES[match["name"]]() + match["close"]
        path = results_dir / match["name"] / RESULTS_MD
        if not path.is_file():
            raise FileNotFoundError(
                f"README block results:{match['name']} has no {path}: run the comparison with "
                f"--out {path.parent}, or remove the block"
            )
        return match["open"] + readme_part(read_results(path)) + match["close"]

    return BLOCK.sub(block, readme)


def stale_blocks(readme: str, results_dir: Path) -> list[str]:
    """The names of the README blocks that differ from their results files."""
    current = {f"{m['kind']}:{m['name']}": m["body"] for m in BLOCK.finditer(readme)}
    fresh = {
        f"{m['kind']}:{m['name']}": m["body"] for m in BLOCK.finditer(render(readme, results_dir))
    }
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
        readme = args.readme.read_text(encoding="utf-8")
        stale = stale_blocks(readme, args.results)
    except (OSError, ValueError) as err:  # missing, unreadable or damaged: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not BLOCK.search(readme):
        print(f"error: {args.readme} has no <!-- results:NAME --> block", file=sys.stderr)
        return 2
    if args.check:
        if stale:
            print(
                f"{args.readme}: stale generated blocks: {', '.join(stale)}; run "
                "python recipes/readme_tables.py",
                file=sys.stderr,
            )
            return 1
        print(f"{args.readme}: every generated block matches {args.results}")
        return 0
    args.readme.write_text(render(readme, args.results))
    print(f"{args.readme}: rewrote {len(stale)} stale block(s) of {len(BLOCK.findall(readme))}")
    return 0
