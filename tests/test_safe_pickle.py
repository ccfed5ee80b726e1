"""Crafted data files must not run code: CIFAR batches go through a restricted unpickler."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from formats import write_cifar10
from invariance_recipes.datamodules.sources import load_splits


class _RunsCommand:
    """Pickles to "call os.system(command)" when loaded, as an attacker's file would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def test_malicious_cifar_batch_runs_nothing_and_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(60) % 10
    folder = write_cifar10(tmp_path, (images[:50], labels[:50]), (images[50:], labels[50:]))
    marker = tmp_path / "pwned"
    payload = {"data": _RunsCommand(f"touch {marker}"), "labels": [0]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=2))
    # the payload is real: plain pickle would run it
    pickle.loads(pickle.dumps(_RunsCommand(f"touch {tmp_path / 'control'}")))
    assert (tmp_path / "control").exists()

    with pytest.raises(ValueError, match=r"data_batch_2: it asks for posix\.system") as err:
        load_splits("cifar10", str(tmp_path), 0.2, 0.15, 0)
    assert not marker.exists()
    assert "\n" not in str(err.value)


def test_well_formed_cifar_batches_still_load_without_md5(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(70) % 10
    write_cifar10(tmp_path, (images[:60], labels[:60]), (images[60:], labels[60:]))
    splits = load_splits("cifar10", str(tmp_path), 0.2, 0.15, 0)
    test = splits["test"]
    order = np.argsort(test.labels, kind="stable")
    np.testing.assert_array_equal(test.images[order], images[60:][np.argsort(labels[60:])])
