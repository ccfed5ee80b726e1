"""Dataset sources read small files written in the real on-disk formats, and split deterministically."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from formats import (
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_mnist,
    write_svhn,
)
from invariance_recipes.datamodules.sources import inspect_folder, load_splits

RNG = np.random.default_rng(1234)


def _images(count: int, shape: tuple[int, ...], first: int = 0) -> np.ndarray:
    """Random uint8 images whose first pixel is a unique id (so each can be traced back)."""
    images = RNG.integers(0, 256, (count, *shape), dtype=np.uint8)
    images.reshape(count, -1)[:, 0] = np.arange(first, first + count)
    return images


def _labels(count: int, num_classes: int) -> np.ndarray:
    return np.arange(count) % num_classes


def _as_rows(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(label, pixels) rows sorted lexicographically: a multiset that ignores order."""
    rows = np.concatenate([labels[:, None].astype(np.int64), images.reshape(len(images), -1)], 1)
    return rows[np.lexsort(rows.T[::-1])]


def _check_splits(splits, train, test, val_fraction: float, hwc: tuple[int, ...]) -> None:
    """Test split is the official test set in order; train + val is the official train set."""
    (train_images, train_labels), (test_images, test_labels) = train, test
    for split in splits.values():
        assert split.images.dtype == np.uint8
        assert split.images.shape[1:] == hwc
        assert split.labels.dtype == np.int64
    assert np.array_equal(splits["test"].images, test_images.reshape(-1, *hwc))
    assert np.array_equal(splits["test"].labels, test_labels)
    assert len(splits["val"]) == math.ceil(val_fraction * len(train_labels))
    images = np.concatenate([splits["train"].images, splits["val"].images])
    labels = np.concatenate([splits["train"].labels, splits["val"].labels])
    expected = _as_rows(train_images.reshape(-1, *hwc), train_labels)
    assert np.array_equal(_as_rows(images, labels), expected)


@pytest.mark.parametrize(
    ("dataset", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_mnist_idx_files(tmp_path: Path, dataset: str, folder: str) -> None:
    train = _images(40, (28, 28)), _labels(40, 10)
    test = _images(12, (28, 28), first=40), _labels(12, 10)
    write_mnist(tmp_path, folder, train, test)
    splits = load_splits(dataset, str(tmp_path), val_fraction=0.25, test_fraction=0.15, seed=0)
    _check_splits(splits, train, test, 0.25, (28, 28, 1))


def test_cifar10_pickle_batches(tmp_path: Path) -> None:
    train = _images(30, (32, 32, 3)), _labels(30, 10)
    test = _images(10, (32, 32, 3), first=30), _labels(10, 10)
    write_cifar10(tmp_path, train, test)
    splits = load_splits("cifar10", str(tmp_path), val_fraction=0.2, test_fraction=0.15, seed=0)
    _check_splits(splits, train, test, 0.2, (32, 32, 3))


def test_cifar100_pickle_files(tmp_path: Path) -> None:
    train = _images(20, (32, 32, 3)), (np.arange(20) * 7) % 100
    test = _images(6, (32, 32, 3), first=20), np.array([99, 0, 50, 1, 98, 2])
    write_cifar100(tmp_path, train, test)
    splits = load_splits("cifar100", str(tmp_path), val_fraction=0.25, test_fraction=0.15, seed=0)
    _check_splits(splits, train, test, 0.25, (32, 32, 3))


def test_svhn_mat_files_map_label_10_to_digit_0(tmp_path: Path) -> None:
    train = _images(20, (32, 32, 3)), _labels(20, 10)
    test = _images(8, (32, 32, 3), first=20), _labels(8, 10)
    write_svhn(tmp_path, "train", *train)
    write_svhn(tmp_path, "test", *test)
    splits = load_splits("svhn", str(tmp_path), val_fraction=0.25, test_fraction=0.15, seed=0)
    _check_splits(splits, train, test, 0.25, (32, 32, 3))
    assert 0 in splits["test"].labels and 10 not in splits["test"].labels


@pytest.mark.parametrize(
    ("dataset", "expected_folder"),
    [
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("svhn", ""),
    ],
)
def test_missing_files_name_the_folder_and_the_fix(
    tmp_path: Path, dataset: str, expected_folder: str
) -> None:
    folder = str(tmp_path / expected_folder) if expected_folder else str(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load_splits(dataset, str(tmp_path), 0.15, 0.15, 0)
    message = str(info.value)
    assert f"dataset={dataset!r}" in message
    assert f"files missing in {folder} (" in message
    assert "download=True" in message


def test_damaged_torchvision_file_is_one_clear_error(tmp_path: Path) -> None:
    folder = write_cifar10(
        tmp_path,
        (_images(10, (32, 32, 3)), _labels(10, 10)),
        (_images(5, (32, 32, 3)), _labels(5, 10)),
    )
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"dataset='cifar10': cannot read the files in .*cifar-10"):
        load_splits("cifar10", str(tmp_path), 0.15, 0.15, 0)


def test_digits_split_is_stratified_complete_and_seeded() -> None:
    splits = load_splits("digits", "unused", val_fraction=0.15, test_fraction=0.15, seed=0)
    digits = load_digits()
    reference = np.round(digits.images * 255 / 16).astype(np.uint8)[..., None]
    images = np.concatenate([s.images for s in splits.values()])
    labels = np.concatenate([s.labels for s in splits.values()])
    assert np.array_equal(_as_rows(images, labels), _as_rows(reference, digits.target))
    assert len(splits["test"]) == math.ceil(0.15 * 1797)
    assert abs(len(splits["val"]) - 0.15 * 1797) <= 1
    class_share = np.bincount(digits.target) / 1797
    for split in splits.values():
        share = np.bincount(split.labels, minlength=10) / len(split)
        assert np.abs(share - class_share).max() < 0.01  # stratified
    again = load_splits("digits", "unused", 0.15, 0.15, seed=0)
    other = load_splits("digits", "unused", 0.15, 0.15, seed=1)
    assert np.array_equal(again["val"].images, splits["val"].images)
    assert not np.array_equal(other["val"].images, splits["val"].images)


def _folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), count: int = 10, size: int = 6):
    return write_image_folder(
        root,
        {
            name: list(_images(count, (size, size, 3), first=10 * i))
            for i, name in enumerate(classes)
        },
    )


def _check_folder_split(split, written: dict[Path, np.ndarray], classes: list[str]) -> None:
    for i in range(len(split)):
        path = Path(split.images.paths[i])
        assert np.array_equal(split.images[i], written[path])
        assert classes[split.labels[i]] == path.parent.name


def test_image_folder_single_tree_is_split_by_fractions(tmp_path: Path) -> None:
    written = _folder(tmp_path, count=10)
    assert inspect_folder(tmp_path) == (["cat", "dog"], (6, 6))
    splits = load_splits("folder", str(tmp_path), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [12, 4, 4]
    paths = [p for split in splits.values() for p in split.images.paths]
    assert sorted(Path(p) for p in paths) == sorted(written)
    for split in splits.values():
        assert np.bincount(split.labels).tolist() == [len(split) // 2] * 2  # stratified
        _check_folder_split(split, written, ["cat", "dog"])


def test_image_folder_uses_train_val_test_subfolders(tmp_path: Path) -> None:
    written = {}
    for name, count in (("train", 6), ("val", 3), ("test", 2)):
        written |= _folder(tmp_path / name, count=count)
    splits = load_splits("folder", str(tmp_path), val_fraction=0.5, test_fraction=0.5, seed=0)
    for name, count in (("train", 6), ("val", 3), ("test", 2)):
        assert len(splits[name]) == 2 * count
        assert all(Path(p).parts[-3] == name for p in splits[name].images.paths)
        _check_folder_split(splits[name], written, ["cat", "dog"])


def test_image_folder_without_val_carves_it_from_train(tmp_path: Path) -> None:
    _folder(tmp_path / "train", count=10)
    _folder(tmp_path / "test", count=2)
    splits = load_splits("folder", str(tmp_path), val_fraction=0.2, test_fraction=0.5, seed=0)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [16, 4, 4]


def test_grayscale_images_are_read_as_rgb(tmp_path: Path) -> None:
    gray = _images(4, (5, 5, 1))
    written = write_image_folder(tmp_path, {"a": list(gray[:2]), "b": list(gray[2:])})
    for split in load_splits("folder", str(tmp_path), 0.25, 0.25, 0).values():
        for i in range(len(split)):
            expected = np.repeat(written[Path(split.images.paths[i])], 3, axis=-1)
            assert np.array_equal(split.images[i], expected)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"dataset='folder': data_dir='.*nowhere' is not a folder"
    ):
        inspect_folder(tmp_path / "nowhere")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("no images here")
    for call in (
        lambda: inspect_folder(tmp_path / "empty"),
        lambda: load_splits("folder", str(tmp_path / "empty"), 0.2, 0.2, 0),
    ):
        with pytest.raises(
            FileNotFoundError, match=r"dataset='folder': no images in data_dir='.*empty'"
        ):
            call()
    _folder(tmp_path / "mismatch" / "train", classes=("cat", "dog"))
    _folder(tmp_path / "mismatch" / "val", classes=("cat", "cow"))
    with pytest.raises(
        ValueError, match=r"val has classes \['cat', 'cow'\] but .*train has \['cat', 'dog'\]"
    ):
        load_splits("folder", str(tmp_path / "mismatch"), 0.2, 0.2, 0)


@pytest.mark.parametrize("damage", ["not-an-image", "truncated"])
def test_corrupt_image_file_is_named(tmp_path: Path, damage: str) -> None:
    written = _folder(tmp_path, size=16)
    victim = sorted(written)[3]
    data = victim.read_bytes()
    victim.write_bytes(b"garbage bytes" if damage == "not-an-image" else data[: len(data) // 2])
    with pytest.raises(
        ValueError,
        match=rf"cannot read image file {re.escape(str(victim))} \(.*\): replace or remove it",
    ):
        load_splits("folder", str(tmp_path), 0.2, 0.2, 0)


def test_file_damaged_after_setup_is_named_when_read(tmp_path: Path) -> None:
    _folder(tmp_path)
    split = load_splits("folder", str(tmp_path), 0.2, 0.2, 0)["train"]
    victim = split.images.paths[0]
    Path(victim).write_bytes(b"garbage bytes")
    with pytest.raises(
        ValueError, match=rf"cannot read image file {re.escape(victim)} \(UnidentifiedImageError"
    ):
        split.images[0]
    assert Image.open(split.images.paths[1]).size == (6, 6)  # the others still read
