"""Atomic writes: many real processes writing one file at once never fail and never leave
half a file or a temporary file behind."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from invariance_recipes.common.atomic_write import atomic_path, atomic_write_json


def _write_many(path: str, worker: int) -> None:
    for i in range(100):
        atomic_write_json(path, {"worker": worker, "i": i, "pad": "x" * 5000})


def test_concurrent_writers_of_one_file_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(path), w)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    last = json.loads(path.read_text())  # whole, from one writer
    assert last["i"] == 99 and len(last["pad"]) == 5000
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]
