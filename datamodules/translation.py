"""TranslationDataModule: objects placed on a canvas, with controlled translation augmentation.

Every sample is an object image (a digit, an MNIST/CIFAR/SVHN image, a folder image) resized to
``object_size`` and embedded in an empty ``canvas_size`` canvas at a placement-dependent position.
Training images are then randomly shifted by the augmentation policy; validation and test images
never are, so the shift metrics measure what the network learned, not what the loader did.
"""

from __future__ import annotations

from collections.abc import Sized
from itertools import islice

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from invariance_recipes.datamodules.augment import (
    CanvasTransform,
    check_view_margin,
    resolve_translation,
)
from invariance_recipes.datamodules.placement import check_placement, sample_positions
from invariance_recipes.datamodules.sources import (
    DATASETS,
    SPLITS,
    Split,
    check_dataset,
    default_data_dir,
    download,
    inspect_folder,
    load_splits,
    render_cache,
)

# sklearn's 8x8 digits are too small for two stride-2 stages plus a free margin: upsampled to 16
# on a 32-px canvas they leave 8 px on every side to shift into.
DIGITS_OBJECT_SIZE, DIGITS_CANVAS_SIZE = 16, 32


class CanvasDataset(Dataset[tuple[torch.Tensor, int]]):
    """One split: image ``i`` placed with its corner at ``positions[i]``, then transformed.

    A random transform is driven by one seed per sample. The training sampler
    (:class:`EpochShuffle`) passes it with the index, as ``(index, seed)``, drawn from
    ``(seed, epoch, index)``: the shifts then depend neither on the loader workers nor on the
    samples drawn before, so a run resumed mid-epoch or with workers repeats them exactly. A
    bare index (a loader of the user's own) draws the seed from torch's RNG, the process's or
    the worker's.
    """

    def __init__(self, split: Split, positions: np.ndarray, transform: CanvasTransform) -> None:
        self.split = split
        self.positions = positions
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        if seed is None and self.transform.random:
            seed = int(torch.randint(2**32, ()))
        top, left = self.positions[index]
        image = self.transform(self.split.images[index], int(top), int(left), seed)
        return image, int(self.split.labels[index])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class EpochShuffle(DistributedSampler):
    """The training order and every sample's augmentation seed, functions of
    ``(seed, epoch)`` alone, so a resumed run continues exactly where it stopped.

    - Order: ``DistributedSampler``'s (a permutation seeded with ``seed + epoch``, split over
      the processes under DDP, where Lightning keeps it because it is one); Lightning calls
      ``set_epoch`` before every epoch. A plain loop that never calls it gets a new epoch per
      pass.
    - Augmentation: each index comes with its seed, :func:`sample_seed`, as ``(index, seed)``.
    - Resume: a sampler made with ``epoch`` and ``skip`` starts its first pass ``skip``
      samples into that epoch (the samples the interrupted run had trained on), whenever that
      pass begins (loader workers start it before Lightning's ``set_epoch``).
    """

    def __init__(self, data_source: Sized, seed: int, epoch: int = 0, skip: int = 0) -> None:
        distributed = _distributed()
        super().__init__(
            data_source,  # type: ignore[arg-type]
            num_replicas=None if distributed else 1,
            rank=None if distributed else 0,
            shuffle=True,
            seed=seed,
        )
        self.epoch, self.skip, self._epoch_given = epoch, skip, True

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        super().set_epoch(epoch)
        self._epoch_given = True

    def __iter__(self):  # type: ignore[override]
        if not self._epoch_given:  # a pass without set_epoch: the next epoch
            self.epoch += 1
        self._epoch_given = False
        epoch, skip, self.skip = self.epoch, self.skip, 0
        for index in islice(super().__iter__(), skip, None):
            yield index, sample_seed(self.seed, epoch, index)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class TranslationDataModule(LightningDataModule):
    """Objects on a canvas with a chosen placement and translation augmentation.

    ``num_classes``, ``in_channels``, ``image_size`` (the side the network sees) and
    ``fill_value`` (per-channel value of an empty canvas pixel after the transforms) are known
    right after construction, so the model can be built from them before any data is loaded.

    Args:
        dataset: ``digits`` (embedded), ``digits-m``, ``syndigits`` (embedded, rendered into
            ``data_dir`` once), ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``,
            ``svhn`` or ``folder`` (an ``ImageFolder`` tree; folder images are read as RGB).
        data_dir: root of the torchvision files, of the image folder, or of the syndigits cache;
            ``None``: the ``INVARIANCE_RECIPES_DATA`` environment variable, else ``data``
            (so runs in many folders, or the jobs of a cluster, can share one rendered cache).
        download: let ``prepare_data`` fetch a torchvision set.
        object_size: side the object image is resized to; ``None``: 16 for digits, else native.
        canvas_size: side of the square canvas; ``None``: 32 for digits, else ``object_size``.
        view_size: crop mode: the network sees a ``view_size`` window of the canvas
            (``image_size`` becomes the view). Training shifts the canvas under the centre
            window, which moves the window (the translation augmentation, within the margin);
            validation sees the centre window; test batches hold the whole canvas so the shift
            metrics can move the window themselves (the model cuts the centre window for its
            clean prediction). ``None``: the network sees the whole canvas.
        placement: where objects sit in train and val images (a name in ``PLACEMENTS``);
            positions are fixed per sample, drawn from ``(seed, split)``.
        test_placement: the same for test images; ``None``: as ``placement``.
        policy: named translation augmentation of training images (a key of ``POLICIES``).
        max_shift: overrides the policy: whole pixels (>= 1), a fraction (0 < x < 1) of the
            side the network sees (``view_size`` if set, else the canvas), or 0 for no shift.
        shift_mode: overrides the policy: ``zero``, ``reflect`` or ``circular``.
        shift_prob: overrides the policy: probability that a training image is shifted.
        normalize: normalize with the dataset's mean and std (``A.Normalize``) instead of [0, 1].
        val_fraction: share held out for validation (of all data for digits and a folder without
            val/, of the official train split for torchvision sets).
        test_fraction: share held out for testing (digits; a folder without test/).
        max_samples: keep at most this many samples per split (quick runs, tests).
        batch_size: samples per batch.
        num_workers: loader processes; 0 loads in the main process. Measured on 2 CPU cores
            (digits, heavy policy, batch 128): the main process prepares ~4,300 images/s, twice
            the ~2,100 images/s of the small CNN's training step, while workers compete with the
            step's threads for the cores (4 epochs in Lightning: 4.2-4.6 s with 0 workers,
            5.0-5.2 s with 1 or 2). On machines with more cores or a GPU, raise it.
        pin_memory: ``None``: pin when CUDA is available.
        persistent_workers: ``None``: keep workers alive across epochs when there are any.
        seed: seed of the split, the subsets and the positions: the same test images for
            every run. The training order and augmentation follow torch's seed instead
            (``seed_everything``), drawn once per DataModule and kept in its checkpoints.
    """

    def __init__(
        self,
        dataset: str = "digits",
        data_dir: str | None = None,
        download: bool = False,
        object_size: int | None = None,
        canvas_size: int | None = None,
        view_size: int | None = None,
        placement: str = "center",
        test_placement: str | None = None,
        policy: str = "light",
        max_shift: float | None = None,
        shift_mode: str | None = None,
        shift_prob: float | None = None,
        normalize: bool = False,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        max_samples: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        data_dir = default_data_dir() if data_dir is None else data_dir  # recorded resolved
        self.save_hyperparameters()
        info = check_dataset(dataset)
        _check_options(
            val_fraction, test_fraction, max_samples, batch_size, num_workers, persistent_workers
        )
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed={seed} is out of range: pass an integer in [0, 2**32)")
        num_classes, object_size, canvas_size = _geometry(
            dataset, data_dir, object_size, canvas_size
        )
        check_placement(placement, canvas_size, object_size, "placement")
        if test_placement is not None:
            check_placement(test_placement, canvas_size, object_size, "test_placement")
        # a fractional max_shift is a share of the side the network sees: the view when cropping
        self.translation = resolve_translation(
            policy,
            canvas_size if view_size is None else view_size,
            max_shift,
            shift_mode,
            shift_prob,
        )
        self.object_size = object_size
        self.num_classes: int = num_classes
        self.in_channels: int = info.in_channels
        if view_size is not None:
            check_view_margin(view_size, canvas_size, int(self.translation.max_shift))
        self.canvas_size: int = canvas_size
        self.view_size = view_size
        self.image_size: int = canvas_size if view_size is None else view_size
        self.mean, self.std = (info.mean, info.std) if normalize else (None, None)
        self.fill_value: list[float] = (
            [-m / s for m, s in zip(info.mean, info.std, strict=True)]
            if normalize
            else [0.0] * info.in_channels
        )
        self.placements = {
            "train": placement,
            "val": placement,
            "test": test_placement or placement,
        }
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = (
            num_workers > 0 if persistent_workers is None else persistent_workers
        )
        self.datasets: dict[str, CanvasDataset] = {}
        self._resume_at = (0, 0)  # (epoch, samples to skip) of a restored checkpoint
        # the seed of the training order and augmentation: drawn from torch's RNG at the first
        # training loader (so seed_everything varies it), kept in checkpoints
        self._shuffle_seed: int | None = None

    def prepare_data(self) -> None:
        """Download a torchvision set when ``download=True``, render syndigits if it is not
        cached (Lightning runs this on one process per node)."""
        if self.hparams.download:
            download(self.hparams.dataset, self.hparams.data_dir)
        render_cache(self.hparams.dataset, self.hparams.data_dir)

    def setup(self, stage: str | None = None) -> None:
        """Load and split the data once; every stage then uses the same three splits."""
        if self.datasets:
            return
        hp = self.hparams
        splits = load_splits(hp.dataset, hp.data_dir, hp.val_fraction, hp.test_fraction, hp.seed)
        for index, name in enumerate(SPLITS):
            rng = np.random.default_rng([hp.seed, index])
            split = splits[name]
            if hp.max_samples is not None and len(split) > hp.max_samples:
                split = split.subset(rng.permutation(len(split))[: hp.max_samples])
            positions = sample_positions(
                self.placements[name], len(split), self.canvas_size, self.object_size, rng
            )
            transform = CanvasTransform(
                self.object_size,
                self.canvas_size,
                self.translation if name == "train" else None,
                self.mean,
                self.std,
                view_size=None if name == "test" else self.view_size,
            )
            self.datasets[name] = CanvasDataset(split, positions, transform)

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        if self._shuffle_seed is None:  # a run's own: torch's seed varies it, not the split's
            self._shuffle_seed = int(torch.randint(2**31, ()))
        epoch, skip = self._resume_at
        self._resume_at = (0, 0)  # once: a loader built again later starts its epoch anew
        return self._loader(dataset, EpochShuffle(dataset, self._shuffle_seed, epoch, skip))

    def state_dict(self) -> dict[str, int]:
        """Where training stands, saved in every checkpoint: the epoch in progress and the
        samples (per process) its finished batches took, or the next epoch once they are all
        taken. Restored by :meth:`load_state_dict`, it makes the resumed loader continue there
        (:class:`EpochShuffle`), whatever the loader workers."""
        trainer = self.trainer
        if trainer is None or self.datasets.get("train") is None:
            return {}
        loop = trainer.fit_loop
        epoch = max(0, loop.epoch_progress.current.started - 1)
        taken = loop.epoch_loop.batch_progress.current.processed * self.hparams.batch_size
        if taken >= -(-len(self.datasets["train"]) // trainer.world_size):
            epoch, taken = epoch + 1, 0
        return {"epoch": epoch, "skip": taken, "shuffle_seed": self._shuffle_seed or 0}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Take the position :meth:`state_dict` saved (Lightning calls it before it builds
        the training loader of a resumed fit)."""
        self._resume_at = (int(state_dict.get("epoch", 0)), int(state_dict.get("skip", 0)))
        if "shuffle_seed" in state_dict:
            self._shuffle_seed = int(state_dict["shuffle_seed"])

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def _dataset(self, split: str) -> CanvasDataset:
        self.setup()
        return self.datasets[split]

    def _evaluation_loader(self, split: str) -> DataLoader:
        # DistributedSampler pads ranks with repeated samples, which biases metrics; this sampler
        # gives every sample to exactly one rank (Lightning keeps it: it is a DistributedSampler).
        dataset = self._dataset(split)
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False) if _distributed() else None
        return self._loader(dataset, sampler)

    def _loader(self, dataset: CanvasDataset, sampler: Sampler | None) -> DataLoader:
        # The loader's own generator seeds its workers, so starting an iterator never draws
        # from the global RNG: Lightning may start the first one before a resumed run has
        # restored its RNG state, and the augmentation would then drift by one draw.
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            generator=torch.Generator().manual_seed(self.hparams.seed + 1),
        )


def _geometry(
    dataset: str, data_dir: str, object_size: int | None, canvas_size: int | None
) -> tuple[int, int, int]:
    """``(num_classes, object_size, canvas_size)`` with the defaults filled in and checked."""
    info = DATASETS[dataset]
    num_classes, native_size = info.num_classes, info.native_size
    if dataset == "folder":
        classes, (height, width) = inspect_folder(data_dir)
        num_classes, native_size = len(classes), height
        if object_size is None and height != width:
            raise ValueError(
                f"object_size=None takes the folder's image size, but its first image is "
                f"{height}x{width}, not square: pass object_size"
            )
    digits = dataset == "digits"
    if object_size is None:
        object_size = DIGITS_OBJECT_SIZE if digits else native_size
    if object_size < 1:
        raise ValueError(f"object_size={object_size} is not a size: pass a positive integer")
    if canvas_size is None:
        canvas_size = DIGITS_CANVAS_SIZE if digits else object_size
    if canvas_size < object_size:
        raise ValueError(
            f"canvas_size={canvas_size} is smaller than object_size={object_size}: pass "
            f"canvas_size >= {object_size} or a smaller object_size"
        )
    return num_classes, object_size, canvas_size


def _check_options(
    val_fraction: float,
    test_fraction: float,
    max_samples: int | None,
    batch_size: int,
    num_workers: int,
    persistent_workers: bool | None,
) -> None:
    for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"{option}={value} is not a fraction: pass a value in (0, 1)")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction={val_fraction} + test_fraction={test_fraction} leave no training data: "
            f"make their sum smaller than 1"
        )
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples={max_samples} keeps nothing: pass an integer >= 1 or None")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is not a batch size: pass an integer >= 1")
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} is negative: pass 0 (main process) or more")
    if persistent_workers and num_workers == 0:
        raise ValueError(
            "persistent_workers=True needs worker processes, but num_workers=0: pass "
            "num_workers >= 1 or persistent_workers=None"
        )
