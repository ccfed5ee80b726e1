"""Redraw a comparison's ``results.md`` from its ``results.csv`` and per-image outcomes with the
statistics of the checked-out code, without training anything.

The runs stay those of the commit the file's provenance names; the provenance gains a
``redrawn`` line with this commit and the command, so a reader sees that the numbers are old
runs read with newer statistics::

    python recipes/redraw_results.py docs/results/small-shift
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from invariance_recipes.compare.experiments import get_experiment
from invariance_recipes.compare.provenance import commit
from invariance_recipes.compare.results import RESULTS_CSV, RESULTS_MD, markdown, read_rows
from invariance_recipes.measure.outcomes import outcomes_of_rows

OPTIONS_JSON = "comparison.json"  # the comparison's options, written by compare.py
SETUP = re.compile(r"^Setup: (?P<setup>.*)\. Command: `(?P<command>.*)`$", re.MULTILINE)
PROVENANCE = "## Provenance"
REDRAWN = re.compile(r"^- redrawn: .*\n?", re.MULTILINE)


def redraw(folder: Path, command: str) -> str:
    """The comparison's report, redrawn from its rows and outcomes; ``command`` is recorded."""
    paths = [folder / name for name in (RESULTS_MD, RESULTS_CSV, OPTIONS_JSON)]
    if missing := [str(p) for p in paths if not p.is_file()]:
        raise FileNotFoundError(
            f"{', '.join(missing)} missing: redraw a folder written by recipes/compare.py"
        )
    old = paths[0].read_text()
    options = json.loads(paths[2].read_text())
    setup = SETUP.search(old)
    if setup is None or PROVENANCE not in old:
        raise ValueError(f"{paths[0]} has no 'Setup: ...' line or no provenance to keep")
    experiment = get_experiment(options["experiment"], options["dataset"])
    rows = [row | experiment.derived(row) for row in read_rows(paths[1])]
    columns = [c for c in experiment.columns() if any(c in row for row in rows)]
    title, summary = old.splitlines()[0].removeprefix("# "), old.splitlines()[2]
    origin = REDRAWN.sub("", old[old.index(PROVENANCE) :]).rstrip("\n") + "\n"
    origin += f"- redrawn: at {commit()} by `{command}`: the runs of the commit above, read with the statistics of this one\n"
    return markdown(
        title,
        summary,
        setup["setup"],
        setup["command"],
        rows,
        columns,
        outcomes_of_rows(folder, rows),
        origin,
    )


def redraw_command(argv: list[str]) -> int:
    """``redraw_results.py``: rewrite each folder's ``results.md`` in place."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="comparison folders to redraw")
    args = parser.parse_args(argv)
    for folder in args.folders:
        command = shlex.join(["python", "recipes/redraw_results.py", str(folder)])
        try:
            text = redraw(folder, command)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        tmp = folder / (RESULTS_MD + ".tmp")
        tmp.write_text(text)
        tmp.replace(folder / RESULTS_MD)  # never a half-written results.md
        print(f"redrew {folder / RESULTS_MD}")
    return 0
