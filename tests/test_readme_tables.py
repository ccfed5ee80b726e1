"""The README's result tables equal docs/results/*/results.md (the CI check), and the generator
finds, reports and rewrites a stale block."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from invariance_recipes.compare.results import markdown
from invariance_recipes.publish.readme import readme_part, readme_tables_command

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_equal_the_results_files(capsys) -> None:
    argv = ["--check", "--readme", str(ROOT / "README.md"), "--results", str(ROOT / "docs/results")]
    assert readme_tables_command(argv) == 0, capsys.readouterr().err


def test_a_changed_results_file_makes_the_check_fail_and_the_rewrite_follows(
    readme_and_results, capsys
) -> None:
    readme, results = readme_and_results
    md = results / "unseen-position/results.md"
    text = md.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| baseline | "))
    changed = "| baseline | changed by the test |"
    md.write_text(text.replace(row, changed, 1))
    argv = ["--readme", str(readme), "--results", str(results)]
    assert readme_tables_command(["--check", *argv]) == 1
    assert "stale generated blocks: results:unseen-position;" in capsys.readouterr().err
    before = readme.read_text()
    assert readme_tables_command(argv) == 0
    after = readme.read_text()
    assert changed in after and row in before
    assert after.replace(changed, row, 1) == before
    assert readme_tables_command(["--check", *argv]) == 0


def test_a_block_without_results_file_is_a_usage_error(readme_and_results, capsys) -> None:
    readme, results = readme_and_results
    shutil.rmtree(results / "small-shift")
    assert (
        readme_tables_command(["--check", "--readme", str(readme), "--results", str(results)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "results:small-shift" in err


def test_the_readme_part_of_a_new_results_file_is_its_marked_block() -> None:
    rows = [
        {"variant": v, "setting": "default", "seed": 0, "run": f"{v}-0", "acc": a, "wall_s": 5.0}
        for v, a in (("baseline", 0.9), ("blurpool", 0.95))
    ]
    md = markdown("t", "s", "setup", "cmd", rows, ["acc"])
    part = readme_part(md)
    assert part.startswith("| variant | seeds | images | accuracy | time (s) |\n")
    assert "| blurpool | 1 | n/a | 95.0 | 5 |" in part
    assert "no variant has per-image outcomes" in part  # the paired caption goes along
    assert "Setup:" not in part


def test_registry_blocks_follow_the_registries(readme_and_results, capsys) -> None:
    """Every variant and network choice reaches the README through its registry block, and a
    hand edit of a generated row makes the check fail."""
    from invariance_recipes.lightning_modules.nets import DOWNSAMPLERS, HEADS
    from invariance_recipes.lightning_modules.variants import VARIANTS, preset_flags

    readme, results = readme_and_results
    text = readme.read_text()
    for variant in VARIANTS.values():
        if variant.defaults():
            assert f"| `{variant.name}` | {variant.summary} | `{preset_flags(variant)}` |" in text
    for name in [*DOWNSAMPLERS, *HEADS]:
        assert f"`--downsample {name}`" in text or f"`--head {name}`" in text
    readme.write_text(text.replace("| `blurpool` |", "| `blurpool (edited)` |", 1))
    argv = ["--readme", str(readme), "--results", str(results)]
    assert readme_tables_command(["--check", *argv]) == 1
    assert "registry:variants" in capsys.readouterr().err
    unknown = text.replace("registry:variants -->", "registry:nope -->")
    readme.write_text(unknown)
    assert readme_tables_command(["--check", *argv]) == 2
    assert "registry:nope names no registry table" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00"])
def test_an_empty_or_binary_results_file_is_refused_and_the_readme_kept(
    content: bytes, readme_and_results, capsys
) -> None:
    readme, results = readme_and_results
    (results / "small-shift/results.md").write_bytes(content)
    before = readme.read_text()
    assert readme_tables_command(["--readme", str(readme), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(results / "small-shift/results.md") in err
    assert readme.read_text() == before
