"""Write small datasets in the real on-disk formats, written from the published format descriptions
rather than with torchvision, so reading them back tests torchvision's readers and our wiring."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file (LeCun's MNIST format): two zero bytes, type 0x08 (unsigned byte), the number of
    dimensions, each dimension as a big-endian uint32, then the data in row-major order."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(
    root: Path,
    folder: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> Path:
    """MNIST-style ``root/<folder>/raw`` with the four uncompressed IDX files; images ``N x 28 x 28``."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """One row per image: the 1024 red values, then green, then blue, each plane row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)


def write_cifar10(
    root: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> Path:
    """``root/cifar-10-batches-py``: five training batches, a test batch and ``batches.meta``,
    each a pickled dict (protocol 2, like the original Python 2 files); images ``N x 32 x 32 x 3``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = train
    parts = np.array_split(np.arange(len(labels)), 5)
    batches = [(f"data_batch_{i + 1}", images[p], labels[p]) for i, p in enumerate(parts)]
    for name, batch_images, batch_labels in [*batches, ("test_batch", *test)]:
        entry = {
            "batch_label": name,
            "labels": [int(label) for label in batch_labels],
            "data": _cifar_rows(batch_images),
            "filenames": [f"{name}_{i}.png" for i in range(len(batch_labels))],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 10000}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_cifar100(
    root: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> Path:
    """``root/cifar-100-python`` with ``train``, ``test`` and ``meta`` pickles (fine and coarse
    labels); images ``N x 32 x 32 x 3``."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, (images, labels) in (("train", train), ("test", test)):
        entry = {
            "batch_label": f"{name} batch",
            "fine_labels": [int(label) for label in labels],
            "coarse_labels": [int(label) // 5 for label in labels],
            "data": _cifar_rows(images),
            "filenames": [f"{name}_{i}.png" for i in range(len(labels))],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"coarse{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_svhn(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> Path:
    """``root/<split>_32x32.mat`` (SVHN format 2): ``X`` is ``32 x 32 x 3 x N`` uint8, ``y`` is
    ``N x 1`` with the digit 0 stored as label 10."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{split}_32x32.mat"
    y = np.where(labels == 0, 10, labels).reshape(-1, 1).astype(np.uint8)
    scipy.io.savemat(path, {"X": images.transpose(1, 2, 3, 0), "y": y})
    return path


def write_image_folder(root: Path, images: dict[str, list[np.ndarray]]) -> dict[Path, np.ndarray]:
    """``root/<class>/<i>.png`` for each class; returns path -> image as written."""
    written = {}
    for name, class_images in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(class_images):
            path = root / name / f"{i:03d}.png"
            Image.fromarray(image.squeeze()).save(path)
            written[path] = image
    return written
