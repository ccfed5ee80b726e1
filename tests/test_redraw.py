"""Redrawing a published comparison from its real files: the tables follow today's statistics,
the provenance keeps the runs' commit and says it was redrawn, and a rerun does not pile up."""

from __future__ import annotations

import shutil
from pathlib import Path
from statistics import fmean

from invariance_recipes.compare.results import RESULTS_CSV, RESULTS_MD, read_rows
from invariance_recipes.publish.redraw import redraw_command

ROOT = Path(__file__).resolve().parent.parent


def test_redraw_rewrites_the_tables_and_keeps_the_runs_provenance(tmp_path: Path) -> None:
    folder = tmp_path / "unseen-position"
    shutil.copytree(ROOT / "docs/results/unseen-position", folder)
    before = (folder / RESULTS_MD).read_text()
    runs_commit = next(line for line in before.splitlines() if line.startswith("- commit: "))
    assert redraw_command([str(folder)]) == 0
    assert redraw_command([str(folder)]) == 0  # twice: still one redrawn line
    text = (folder / RESULTS_MD).read_text()
    assert runs_commit in text.splitlines()
    assert text.count("- redrawn: at ") == 1
    assert "recipes/redraw_results.py" in text and "crossed random-effects" in text
    rows = [r for r in read_rows(folder / RESULTS_CSV) if r["variant"] == "baseline"]
    line = next(x for x in text.splitlines() if x.startswith("| baseline | "))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:3] == [str(len(rows)), "270"]  # seeds, distinct test images
    assert cells[3].split(" [")[0] == f"{100 * fmean(r['acc@top-left'] for r in rows):.1f}"


def test_a_folder_without_results_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert redraw_command([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "redraw a folder written by recipes/compare.py" in err
