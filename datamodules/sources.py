"""Dataset sources: uint8 ``H x W x C`` images and int64 labels for the train, val and test splits.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images; no download).
- ``digits-m``: the same digits blended into crops of scikit-learn's two bundled photographs, the
  MNIST-M construction (``invariance_recipes.datamodules.digits_m``; no download).
- ``syndigits``: 29,000 digits rendered from matplotlib's fonts onto photographs and textures,
  SynDigits-style (``invariance_recipes.datamodules.syndigits``; no download): rendered once into
  ``data_dir``, then loaded from there. ``syndigits-patch``: the centre 24 px of the same images
  (the digit with a margin of background), an object small enough for the quadrant placements.
- torchvision sets (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN), read with torchvision's own readers,
  except CIFAR's pickled batches, which are read with a restricted unpickler (``safe_pickle``) so a
  crafted file cannot run code. torchvision checks CIFAR and SVHN files against the md5 sums of the
  official release; reading here only checks that the files exist, so files in the same on-disk
  format with other contents (a subset, a re-export) load too. That is safe because neither reader
  runs code from the file (SVHN's are MATLAB arrays). Downloads still go through torchvision's own
  classes, which verify what they fetch.
- ``folder``: torchvision's ``ImageFolder`` layout, decoded lazily.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, overload

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torchvision.datasets import CIFAR10, CIFAR100, MNIST, SVHN, FashionMNIST, ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, pil_loader
from torchvision.datasets.vision import VisionDataset

from invariance_recipes.common.checks import check_choice
from invariance_recipes.datamodules import digits_m, syndigits
from invariance_recipes.datamodules.safe_pickle import load_data_pickle


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before loading it (the model is built from this).

    Args:
        num_classes: number of classes; ``None`` for a folder (counted from its class folders).
        in_channels: image channels (folders are read as RGB).
        native_size: side of the stored images; ``None`` for a folder (read from its first image).
        mean, std: per-channel statistics of the images in [0, 1], for ``A.Normalize``; a folder
            uses the ImageNet statistics, the usual choice for natural photos.
    """

    num_classes: int | None
    in_channels: int
    native_size: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


#: Dataset name -> what the DataModule needs to know before loading it.
DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "digits": DatasetInfo(10, 1, 8, (0.3053,), (0.3759,)),
        "digits-m": DatasetInfo(
            10, 3, digits_m.CANVAS_SIZE, (0.3451, 0.3947, 0.3641), (0.3541, 0.2826, 0.3047)
        ),
        "syndigits": DatasetInfo(
            10, 3, syndigits.CANVAS_SIZE, (0.4670, 0.4721, 0.4490), (0.3093, 0.2624, 0.2803)
        ),
        "syndigits-patch": DatasetInfo(
            10, 3, syndigits.PATCH_SIZE, (0.4758, 0.4806, 0.4600), (0.2947, 0.2493, 0.2714)
        ),
        "mnist": DatasetInfo(10, 1, 28, (0.1307,), (0.3081,)),
        "fashion-mnist": DatasetInfo(10, 1, 28, (0.2860,), (0.3530,)),
        "cifar10": DatasetInfo(10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "cifar100": DatasetInfo(100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        "svhn": DatasetInfo(10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        "folder": DatasetInfo(None, 3, None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    }
)

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SYNDIGITS = ("syndigits", "syndigits-patch")  # the whole rendered canvas, and its centre


def check_dataset(dataset: str) -> DatasetInfo:
    """The table entry of ``dataset``, or a ``ValueError`` that lists the valid names."""
    check_choice("dataset", dataset, DATASETS)
    return DATASETS[dataset]


class ImageFiles:
    """Image files decoded on access, indexed like an array of images.

    ``files[i]`` is an ``H x W x 3`` uint8 RGB array (torchvision's ``pil_loader``); ``files[idx]``
    with an index array is a subset.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int | np.integer) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: np.ndarray) -> ImageFiles: ...
    def __getitem__(self, index: int | np.integer | np.ndarray) -> np.ndarray | ImageFiles:
        if isinstance(index, np.ndarray):
            return ImageFiles([self.paths[i] for i in index])
        path = self.paths[index]
        try:
            return np.asarray(pil_loader(path))
        except Exception as err:  # PIL reports damage with many exception types
            raise _unreadable(path, err) from err

    def verify(self) -> None:
        """Check every file's image structure (PIL's ``verify``) so damage surfaces before
        training starts instead of in the middle of an epoch."""
        for path in self.paths:
            try:
                with Image.open(path) as image:
                    image.verify()
            except Exception as err:  # PIL reports damage with many exception types
                raise _unreadable(path, err) from err


def _unreadable(path: str | Path, err: Exception) -> ValueError:
    return ValueError(
        f"cannot read image file {path} ({type(err).__name__}: {err}): replace or remove it"
    )


@dataclass(frozen=True)
class Split:
    """The images and labels of one split; ``images[i]`` is ``H x W x C`` uint8."""

    images: np.ndarray | ImageFiles
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Split:
        """The samples at ``indices``, in that order."""
        return Split(self.images[indices], self.labels[indices])


def split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """``(rest, part)`` with ``fraction`` of the samples in ``part``.

    Stratified by class so small splits keep the class balance; plain shuffled when some class is
    too small to appear on both sides (scikit-learn then refuses to stratify).
    """
    indices = np.arange(len(split))
    try:
        rest, part = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=split.labels
        )
    except ValueError:
        rest, part = train_test_split(indices, test_size=fraction, random_state=seed)
    return split.subset(rest), split.subset(part)


def _three_way(
    train: Split,
    val: Split | None,
    test: Split | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, Split]:
    """Carve the missing val/test splits out of ``train``; both fractions are shares of ``train``
    as given (val's share of the remainder is rescaled when test was carved first)."""
    carved = 0.0
    if test is None:
        train, test = split_off(train, test_fraction, seed)
        carved = test_fraction
    if val is None:
        train, val = split_off(train, val_fraction / (1 - carved), seed)
    return {"train": train, "val": val, "test": test}


def _digits() -> Split:
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    return Split(images, digits.target.astype(np.int64))


def _read_cifar(cls: type[CIFAR10], root: str, train: bool) -> Split:
    """CIFAR-10/100 batches through the restricted unpickler (torchvision's reader would run
    whatever a crafted batch file names); the md5 sums are not needed for safety then."""
    folder = Path(root) / cls.base_folder
    images, labels = [], []
    for name, _ in cls.train_list if train else cls.test_list:
        entry = load_data_pickle(folder / name)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    data = np.concatenate(images).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(data), np.asarray(labels, dtype=np.int64))


class _SVHNFiles(SVHN):
    split_list: ClassVar[dict[str, list[Any]]] = {
        split: [url, name, None] for split, (url, name, _) in SVHN.split_list.items()
    }


# name -> (torchvision class that downloads and verifies, class that reads existing files);
# MNIST's own class already only checks that its files exist; CIFAR goes through _read_cifar.
_TORCHVISION: Mapping[str, tuple[type[VisionDataset], type[VisionDataset]]] = MappingProxyType(
    {
        "mnist": (MNIST, MNIST),
        "fashion-mnist": (FashionMNIST, FashionMNIST),
        "cifar10": (CIFAR10, CIFAR10),
        "cifar100": (CIFAR100, CIFAR100),
        "svhn": (SVHN, _SVHNFiles),
    }
)


def _open(cls: type[VisionDataset], root: str, train: bool, download: bool = False) -> Any:
    if issubclass(cls, SVHN):
        return cls(root, split="train" if train else "test", download=download)
    return cls(root, train=train, download=download)


def required_files(dataset: str, data_dir: str) -> list[Path]:
    """The files torchvision reads for the train and test splits of ``dataset``."""
    cls = _TORCHVISION[dataset][1]
    root = Path(data_dir)
    if issubclass(cls, MNIST):
        return [root / cls.__name__ / "raw" / Path(name).stem for name, _ in cls.resources]
    if issubclass(cls, SVHN):
        return [root / cls.split_list[split][1] for split in ("train", "test")]
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [root / cls.base_folder / name for name in names]


def _arrays(dataset: Any) -> Split:
    if isinstance(dataset, MNIST):
        images, labels = dataset.data.numpy()[..., None], dataset.targets.numpy()
    else:  # SVHN
        images, labels = dataset.data.transpose(0, 2, 3, 1), dataset.labels
    return Split(np.ascontiguousarray(images), labels.astype(np.int64))


def _torchvision_splits(dataset: str, data_dir: str) -> tuple[Split, Split]:
    files = required_files(dataset, data_dir)
    folder = files[0].parent
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"dataset={dataset!r}: files missing in {folder} ({', '.join(missing)}): pass "
            f"download=True (--data.download true) and run prepare_data(), or place the files there"
        )
    reader = _TORCHVISION[dataset][1]
    try:
        if issubclass(reader, CIFAR10):
            return _read_cifar(reader, data_dir, True), _read_cifar(reader, data_dir, False)
        return _arrays(_open(reader, data_dir, True)), _arrays(_open(reader, data_dir, False))
    except Exception as err:  # each torchvision reader reports bad files its own way
        raise ValueError(
            f"dataset={dataset!r}: cannot read the files in {folder} ({type(err).__name__}: "
            f"{err}): delete them and pass download=True, or replace them"
        ) from err


#: The environment variable naming the data folder of every run that does not name its own.
DATA_DIR_ENV = "INVARIANCE_RECIPES_DATA"


def default_data_dir() -> str:
    """``$INVARIANCE_RECIPES_DATA`` when set, else ``data`` in the working folder."""
    return os.environ.get(DATA_DIR_ENV) or "data"


def download(dataset: str, data_dir: str) -> None:
    """Fetch the train and test files of a torchvision set into ``data_dir`` (verified by
    torchvision); nothing to do for the embedded sets and ``folder``."""
    check_dataset(dataset)
    if dataset in _TORCHVISION:
        for train in (True, False):
            _open(_TORCHVISION[dataset][0], data_dir, train, download=True)


def render_cache(dataset: str, data_dir: str) -> None:
    """Render ``syndigits`` (and its patches) into its cache under ``data_dir`` unless it is there;
    nothing to do for the other datasets. Run once before the processes that load the data, so
    parallel processes do not each render it."""
    check_dataset(dataset)
    if dataset in _SYNDIGITS:
        syndigits.ensure_cached(data_dir)


def _empty_folder(data_dir: str | Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"dataset='folder': no images in data_dir={str(data_dir)!r}: expected "
        f"data_dir/<class>/<image> or data_dir/train|val|test/<class>/<image> with an image "
        f"extension ({', '.join(IMG_EXTENSIONS)})"
    )


def _tree(data_dir: str | Path) -> Path:
    """The folder whose subfolders are the classes: ``data_dir/train`` if present, else data_dir."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset='folder': data_dir={str(data_dir)!r} is not a folder: pass the root of an "
            f"image folder (data_dir/<class>/<image> or data_dir/train|val|test/<class>/<image>)"
        )
    return root / "train" if (root / "train").is_dir() else root


def inspect_folder(data_dir: str | Path) -> tuple[list[str], tuple[int, int]]:
    """Class names and ``(height, width)`` of the first image, without decoding any pixels."""
    tree = _tree(data_dir)
    try:
        classes, _ = find_classes(tree)
    except FileNotFoundError as err:
        raise _empty_folder(data_dir) from err
    for name in classes:
        for path in sorted((tree / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS:
                try:
                    with Image.open(path) as image:
                        return classes, (image.height, image.width)
                except Exception as err:  # PIL reports damage with many exception types
                    raise _unreadable(path, err) from err
    raise _empty_folder(data_dir)


def _image_tree(path: Path, data_dir: str | Path) -> tuple[Split, list[str]]:
    try:
        tree = ImageFolder(path)
    except FileNotFoundError as err:
        raise _empty_folder(data_dir) from err
    paths, labels = zip(*tree.samples, strict=True)
    return Split(ImageFiles(paths), np.asarray(labels, dtype=np.int64)), tree.classes


def _folder_splits(
    data_dir: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, Split]:
    root, tree = Path(data_dir), _tree(data_dir)
    if tree == root:
        trees = {"train": tree}
    else:
        trees = {name: root / name for name in SPLITS if (root / name).is_dir()}
    parts: dict[str, Split] = {}
    classes: dict[str, list[str]] = {}
    for name, path in trees.items():
        parts[name], classes[name] = _image_tree(path, data_dir)
        if classes[name] != classes["train"]:
            raise ValueError(
                f"dataset='folder': {path} has classes {classes[name]} but {trees['train']} has "
                f"{classes['train']}: give every split folder the same class subfolders"
            )
        parts[name].images.verify()
    return _three_way(
        parts["train"], parts.get("val"), parts.get("test"), val_fraction, test_fraction, seed
    )


def load_splits(
    dataset: str, data_dir: str, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, Split]:
    """The train, val and test splits of ``dataset``; carved splits are a deterministic function
    of ``seed``.

    Args:
        dataset: a key of ``DATASETS``.
        data_dir: root of the torchvision files, of the image folder, or of the syndigits cache.
        val_fraction: share of the data (digits, digits-m; a folder without val/) or of the official train
            split (torchvision sets, syndigits) held out for validation.
        test_fraction: share of the data held out for testing (digits, digits-m; a folder without test/);
            torchvision sets and syndigits use their official test split.
        seed: seed of the carving (and of the digits-m backgrounds).
    """
    check_dataset(dataset)
    if dataset == "digits":
        return _three_way(_digits(), None, None, val_fraction, test_fraction, seed)
    if dataset == "digits-m":
        splits = _three_way(_digits(), None, None, val_fraction, test_fraction, seed)
        return {
            name: Split(digits_m.blend_split(split.images, name, seed), split.labels)
            for name, split in splits.items()
        }
    if dataset == "folder":
        return _folder_splits(data_dir, val_fraction, test_fraction, seed)
    if dataset in _SYNDIGITS:
        rendered = syndigits.load(data_dir, patch=dataset == "syndigits-patch")
        train, test = Split(*rendered["train"]), Split(*rendered["test"])
    else:
        train, test = _torchvision_splits(dataset, data_dir)
    return _three_way(train, None, test, val_fraction, test_fraction, seed)
