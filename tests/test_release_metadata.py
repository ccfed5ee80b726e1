"""The release files agree with pyproject.toml: one version in CITATION.cff and the changelog,
the MIT text in LICENSE, and the metadata a package index shows."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_citation_and_changelog_carry_the_version() -> None:
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert str(citation["version"]) == PROJECT["version"]
    assert citation["license"] == PROJECT["license"] == "MIT"
    assert citation["authors"] == [{"name": a["name"]} for a in PROJECT["authors"]]
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == "Unreleased" and PROJECT["version"] in headings


def test_license_is_the_mit_text_and_the_metadata_is_complete() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert PROJECT["license-files"] == ["LICENSE"]
    assert "Typing :: Typed" in PROJECT["classifiers"]
    versions = {c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if "Python :: 3." in c}
    assert min(versions, key=lambda v: tuple(map(int, v.split(".")))) == PROJECT[
        "requires-python"
    ].removeprefix(">=")
    assert (ROOT / "invariance_recipes" / "py.typed").is_file()
