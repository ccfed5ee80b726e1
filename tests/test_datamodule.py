"""TranslationDataModule: pixel-exact placement and shifts, reproducibility, Lightning and DDP."""

from __future__ import annotations

import inspect
import multiprocessing
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import nn
from torch.utils.data import SequentialSampler

from formats import write_cifar10, write_image_folder
from invariance_recipes.common.borders import SHIFT_MODES
from invariance_recipes.datamodules import (
    DATASETS,
    PLACEMENTS,
    POLICIES,
    CanvasTransform,
    Translation,
    TranslationDataModule,
)
from invariance_recipes.datamodules.translation import EpochShuffle, sample_seed

REPO = Path(__file__).resolve().parents[1]


def quick(**options) -> TranslationDataModule:
    """A DataModule on the embedded digits, loading in the main process."""
    return TranslationDataModule(**{"num_workers": 0, **options})


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A [0, 1] float image back to exact uint8 pixel values."""
    return np.round(image.numpy() * 255).astype(np.uint8)


def shift_reference(image: np.ndarray, dy: int, dx: int, mode: str) -> np.ndarray:
    """Shift a ``C x H x W`` image down by dy and right by dx, built with NumPy only."""
    if mode == "circular":
        return np.roll(image, (dy, dx), axis=(1, 2))
    _, height, width = image.shape
    if mode == "reflect":  # reflect without repeating the edge pixel (dcb|abcd|cba)
        padded = np.pad(image, ((0, 0), (abs(dy),) * 2, (abs(dx),) * 2), mode="reflect")
        top, left = abs(dy) - dy, abs(dx) - dx
        return padded[:, top : top + height, left : left + width]
    out = np.zeros_like(image)
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = image[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def matching_shifts(base: np.ndarray, out: np.ndarray, limit: int, mode: str) -> list:
    """Every (dy, dx) within +-limit that turns ``base`` into ``out``."""
    offsets = range(-limit, limit + 1)
    return [
        (dy, dx)
        for dy in offsets
        for dx in offsets
        if np.array_equal(shift_reference(base, dy, dx, mode), out)
    ]


def noise_folder(root: Path, classes: int = 3, count: int = 8, size: int = 8) -> dict:
    """An image folder of RGB noise images with no zero pixel, so the object is visible exactly."""
    rng = np.random.default_rng(7)
    images = {
        f"class{c}": list(rng.integers(1, 256, (count, size, size, 3), dtype=np.uint8))
        for c in range(classes)
    }
    return write_image_folder(root, images)


# ---------------------------------------------------------------------------------------------
# What is known before loading


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("digits", (10, 1, 32)),
        ("syndigits", (10, 3, 48)),
        ("syndigits-patch", (10, 3, 24)),
        ("mnist", (10, 1, 28)),
        ("fashion-mnist", (10, 1, 28)),
        ("cifar10", (10, 3, 32)),
        ("cifar100", (100, 3, 32)),
        ("svhn", (10, 3, 32)),
    ],
)
def test_shape_facts_are_known_before_loading(tmp_path: Path, dataset: str, expected) -> None:
    dm = quick(dataset=dataset, data_dir=str(tmp_path / "absent"))
    assert (dm.num_classes, dm.in_channels, dm.image_size) == expected
    assert dm.fill_value == [0.0] * expected[1]
    assert set(DATASETS) == {
        "digits",
        "digits-m",
        "syndigits",
        "syndigits-patch",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "cifar100",
        "svhn",
        "folder",
    }


def test_folder_facts_come_from_its_class_folders_and_first_image(tmp_path: Path) -> None:
    noise_folder(tmp_path, classes=4, size=12)
    dm = quick(dataset="folder", data_dir=str(tmp_path))
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.object_size) == (4, 3, 12, 12)
    normalized = quick(dataset="folder", data_dir=str(tmp_path), normalize=True, canvas_size=20)
    assert normalized.image_size == 20
    assert normalized.fill_value == pytest.approx([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])


def test_hparams_record_every_constructor_argument() -> None:
    dm = quick(policy="heavy", seed=3)
    parameters = inspect.signature(TranslationDataModule.__init__).parameters
    assert set(dm.hparams) == set(parameters) - {"self"}
    assert dm.hparams.policy == "heavy" and dm.hparams.seed == 3 and dm.hparams.num_workers == 0


@pytest.mark.slow
def test_package_imports_without_the_model_side() -> None:
    code = (
        "import sys, invariance_recipes.datamodules; "
        "print(sorted(m for m in sys.modules if m.startswith('invariance_recipes.lightning_modules')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Batches, placement, normalization


def test_batches_are_float_canvases_with_the_object_on_zero_background() -> None:
    dm = quick(object_size=8, canvas_size=16, policy="none", batch_size=50)
    dm.setup("fit")
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (50, 1, 16, 16) and x.dtype == torch.float32
    assert y.shape == (50,) and y.dtype == torch.int64
    split = dm.datasets["val"].split
    for i in range(50):
        canvas = np.zeros((1, 16, 16), np.uint8)
        canvas[0, 4:12, 4:12] = split.images[i][..., 0]  # native 8x8, centred
        assert np.array_equal(to_uint8(x[i]), canvas)
        assert np.allclose(x[i].numpy(), canvas / 255, atol=1e-7)
        assert y[i] == split.labels[i]


REGIONS = {  # canvas 24, object 8: rows and columns [start, end) that must hold the whole object
    "center": ((8, 16), (8, 16)),
    "uniform": ((0, 24), (0, 24)),
    "top-left": ((0, 12), (0, 12)),
    "top-right": ((0, 12), (12, 24)),
    "bottom-left": ((12, 24), (0, 12)),
    "bottom-right": ((12, 24), (12, 24)),
}


def _corners(dm: TranslationDataModule, split: str, written: dict) -> list[tuple[int, int]]:
    """Each sample's object corner, checking that the canvas holds exactly the object there."""
    dataset = dm.datasets[split]
    corners = []
    for i in range(len(dataset)):
        x, _ = dataset[i]
        rows, cols = np.nonzero(to_uint8(x).any(axis=0))
        top, left = int(rows.min()), int(cols.min())
        expected = np.zeros((3, 24, 24), np.uint8)
        expected[:, top : top + 8, left : left + 8] = written[
            Path(dataset.split.images.paths[i])
        ].transpose(2, 0, 1)
        assert np.array_equal(to_uint8(x), expected)
        corners.append((top, left))
    return corners


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_every_sample_lands_inside_its_placement_region(tmp_path: Path, placement: str) -> None:
    written = noise_folder(tmp_path)
    dm = quick(
        dataset="folder", data_dir=str(tmp_path), canvas_size=24, placement=placement, policy="none"
    )
    dm.setup()
    (row_start, row_end), (col_start, col_end) = REGIONS[placement]
    for split in ("train", "val", "test"):
        corners = _corners(dm, split, written)
        for top, left in corners:
            assert row_start <= top and top + 8 <= row_end
            assert col_start <= left and left + 8 <= col_end
        if placement != "center":
            assert len(set(corners)) > 1  # positions vary within the region
    again = quick(
        dataset="folder", data_dir=str(tmp_path), canvas_size=24, placement=placement, policy="none"
    )
    again.setup()
    assert _corners(again, "test", written) == _corners(dm, "test", written)  # fixed per sample


def test_test_placement_moves_only_the_test_split(tmp_path: Path) -> None:
    written = noise_folder(tmp_path)
    dm = quick(
        dataset="folder",
        data_dir=str(tmp_path),
        canvas_size=24,
        placement="top-left",
        test_placement="bottom-right",
        policy="none",
    )
    dm.setup()
    assert all(
        t + 8 <= 12 and c + 8 <= 12 for s in ("train", "val") for t, c in _corners(dm, s, written)
    )
    assert all(t >= 12 and c >= 12 for t, c in _corners(dm, "test", written))


def test_normalize_shifts_background_to_fill_value() -> None:
    plain = quick(policy="none", max_samples=40)
    normalized = quick(policy="none", max_samples=40, normalize=True)
    plain.setup()
    normalized.setup()
    mean, std = 0.3053, 0.3759
    assert normalized.fill_value == pytest.approx([-mean / std])
    x_plain, _ = next(iter(plain.val_dataloader()))
    x_norm, _ = next(iter(normalized.val_dataloader()))
    assert torch.allclose(x_norm, (x_plain - mean) / std, atol=1e-5)
    background = x_plain == 0
    assert torch.allclose(x_norm[background], torch.tensor(normalized.fill_value[0]), atol=1e-5)


def test_max_samples_caps_every_split_deterministically() -> None:
    first, second = quick(max_samples=30), quick(max_samples=30)
    first.setup()
    second.setup()
    for split in ("train", "val", "test"):
        assert len(first.datasets[split]) == 30
        assert np.array_equal(
            first.datasets[split].split.images, second.datasets[split].split.images
        )


# ---------------------------------------------------------------------------------------------
# Translation augmentation


def test_policies_resolve_to_whole_pixels_of_the_canvas() -> None:
    assert set(POLICIES) == {"none", "light", "heavy"}
    assert quick(policy="light").translation == Translation(2, "zero", 0.5)
    assert quick(policy="heavy").translation == Translation(8, "zero", 1.0)
    assert quick(policy="none").translation.p == 0
    overridden = quick(policy="light", max_shift=0.25, shift_mode="circular", shift_prob=1)
    assert overridden.translation == Translation(8, "circular", 1.0)
    assert quick(max_shift=3.0, canvas_size=40).translation.max_shift == 3


def test_fractional_shifts_are_shares_of_the_view_the_network_sees() -> None:
    # heavy is a quarter of the side: 8 px of a 32-px view cut from the 48-px digits-m canvas,
    # which is exactly the margin the view leaves, where a quarter of the canvas (12) would not fit
    cropped = quick(dataset="digits-m", policy="heavy", view_size=32)
    assert cropped.translation == Translation(8, "zero", 1.0)
    assert quick(dataset="digits-m", policy="heavy").translation.max_shift == 12


@pytest.mark.parametrize("mode", SHIFT_MODES)
def test_canvas_transform_shift_is_pixel_exact(mode: str) -> None:
    image = np.random.default_rng(0).integers(1, 256, (12, 12, 3), dtype=np.uint8)
    base = to_uint8(CanvasTransform(12, 16)(image, 2, 2, None))
    shifted = CanvasTransform(12, 16, Translation(max_shift=5, mode=mode, p=1.0))
    seen = set()
    for seed in range(40):
        out = to_uint8(shifted(image, 2, 2, seed))
        matches = matching_shifts(base, out, 5, mode)
        assert len(matches) == 1, (seed, matches)
        seen.add(matches[0])
        assert np.array_equal(to_uint8(shifted(image, 2, 2, seed)), out)  # the seed decides
    dys, dxs = {dy for dy, _ in seen}, {dx for _, dx in seen}
    assert min(dys) < 0 < max(dys) and min(dxs) < 0 < max(dxs)


def test_place_embeds_the_image_at_its_corner_on_a_zero_canvas() -> None:
    from invariance_recipes.datamodules.placement import place

    rng = np.random.default_rng(2)
    image = rng.integers(1, 256, (5, 7, 3), dtype=np.uint8)
    for top, left in [(0, 0), (6, 4), (3, 1)]:
        pads = ((top, 11 - top - 5), (left, 11 - left - 7), (0, 0))
        assert np.array_equal(place(image, top, left, 11), np.pad(image, pads))
    with pytest.raises(ValueError, match="does not fit a 11-px canvas"):
        place(image, 7, 0, 11)
    with pytest.raises(ValueError, match="does not fit"):
        place(image, 0, -1, 11)


@pytest.mark.parametrize("mode", SHIFT_MODES)
def test_seeding_the_shift_alone_gives_the_whole_pipelines_pixels(mode: str) -> None:
    """The transform seeds only its random step; albumentations' own seeding of the whole
    pipeline (every step seeded alike) draws the same shift and probability for a seed."""
    from invariance_recipes.datamodules.placement import place

    images = np.random.default_rng(1).integers(0, 256, (60, 12, 12, 3), dtype=np.uint8)
    transform = CanvasTransform(12, 24, Translation(max_shift=4, mode=mode, p=0.7), view_size=16)
    for seed, image in enumerate(images):
        transform.pipeline.set_random_seed(seed)
        reference = transform.pipeline(image=place(image, 6, 6, 24))["image"]
        assert torch.equal(transform(image, 6, 6, seed), reference), seed


def test_training_images_are_shifted_copies_of_the_fixed_canvas() -> None:
    plain = quick(policy="none", max_samples=120)
    heavy = quick(policy="heavy", max_samples=120, shift_prob=0.5)
    plain.setup()
    heavy.setup()
    unshifted = 0
    for i in range(120):
        base, label = plain.datasets["train"][i]
        out, same_label = heavy.datasets["train"][i]
        (shift,) = matching_shifts(to_uint8(base), to_uint8(out), 8, "zero")
        unshifted += shift == (0, 0)
        assert label == same_label
    assert 0.3 < unshifted / 120 < 0.75  # p = 0.5 plus the rare draw of (0, 0)
    for split in ("val", "test"):  # evaluation images are never shifted
        assert torch.equal(plain.datasets[split][5][0], heavy.datasets[split][5][0])


# ---------------------------------------------------------------------------------------------
# Reproducibility


def _epochs(dm: TranslationDataModule, torch_seed: int, epochs: int = 2) -> list:
    seed_everything(torch_seed, verbose=False)
    loader = dm.train_dataloader()
    return [batch for _ in range(epochs) for batch in loader]


def _same(a: list, b: list) -> bool:
    return all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )


def test_same_seeds_give_identical_train_batches_and_others_differ() -> None:
    def run(seed: int, torch_seed: int) -> list:
        return _epochs(quick(policy="heavy", max_samples=60, batch_size=20, seed=seed), torch_seed)

    reference = run(0, 0)
    assert _same(reference, run(0, 0))
    assert not _same(reference, run(1, 0))  # another data seed: split and positions
    other_torch = run(0, 1)  # another run seed: the same images, in another order and shifts

    def epoch_labels(batches: list) -> list[int]:  # the first epoch's labels, sorted
        return sorted(torch.cat([y for _, y in batches[:3]]).tolist())

    assert epoch_labels(reference) == epoch_labels(other_torch)
    assert not all(
        torch.equal(ya, yb) for (_, ya), (_, yb) in zip(reference, other_torch, strict=True)
    )
    assert not torch.equal(reference[0][1], reference[3][1])  # each epoch a new order


def test_workers_reproduce_batches_from_the_torch_seed() -> None:
    dm = quick(policy="heavy", max_samples=60, batch_size=20, num_workers=2)
    assert dm.persistent_workers and dm.train_dataloader().persistent_workers
    assert _same(_epochs(dm, 5), _epochs(dm, 5))


def test_restoring_torch_rng_state_reproduces_the_augmentation() -> None:
    dm = quick(policy="heavy", max_samples=40)
    dm.setup()
    train = dm.datasets["train"]
    state = torch.get_rng_state()
    first = [train[i][0] for i in range(20)]
    torch.set_rng_state(state)
    assert all(torch.equal(a, train[i][0]) for i, a in enumerate(first))
    assert not all(torch.equal(a, train[i][0]) for i, a in enumerate(first))


def test_epoch_shuffle_order_is_a_function_of_seed_and_epoch() -> None:
    sampler = EpochShuffle(range(50), seed=3)
    sampler.set_epoch(2)
    keyed = list(sampler)
    order = [index for index, _ in keyed]
    assert sorted(order) == list(range(50))
    assert order == torch.randperm(50, generator=torch.Generator().manual_seed(5)).tolist()
    # each index with its augmentation seed, a function of (seed, epoch, index) only
    assert all(seed == sample_seed(3, 2, index) for index, seed in keyed)
    assert len({seed for _, seed in keyed}) == 50
    sampler.set_epoch(1)
    assert list(sampler) != keyed
    sampler.set_epoch(2)
    assert list(sampler) == keyed
    again = list(sampler)  # a pass without set_epoch is the next epoch, as in a plain loop
    assert [i for i, _ in again] == torch.randperm(
        50, generator=torch.Generator().manual_seed(6)
    ).tolist()


def test_epoch_shuffle_resumes_mid_epoch_on_the_same_samples_and_seeds() -> None:
    """A sampler made at (epoch 2, 20 samples taken) yields the rest of epoch 2 exactly, even
    when its pass starts before Lightning's set_epoch (as loader workers start it)."""
    whole = EpochShuffle(range(50), seed=3)
    whole.set_epoch(2)
    expected = list(whole)[20:]
    resumed = EpochShuffle(range(50), seed=3, epoch=2, skip=20)
    passes = iter(resumed)
    first = next(passes)  # workers start the pass as the loader's iterator is made
    resumed.set_epoch(2)  # then Lightning's call for the epoch already under way
    assert [first, *passes] == expected
    resumed.set_epoch(3)  # the next epoch is whole again
    whole.set_epoch(3)
    assert list(resumed) == list(whole)


def test_evaluation_batches_do_not_depend_on_the_torch_seed() -> None:
    dm = quick(policy="heavy", max_samples=50, batch_size=25)
    torch.manual_seed(0)
    first = list(dm.val_dataloader()) + list(dm.test_dataloader())
    torch.manual_seed(1)
    assert _same(first, list(dm.val_dataloader()) + list(dm.test_dataloader()))
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)


# ---------------------------------------------------------------------------------------------
# Lightning and DDP


class TinyNet(LightningModule):
    """Records what each stage sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 10),
        )
        self.labels: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 32, 32) and y.dtype == torch.int64
        self.labels[stage].append(y)
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log(f"{stage}/loss", loss)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fits_and_tests_in_a_lightning_trainer() -> None:
    dm = quick(max_samples=64, batch_size=16, seed=4)
    model = TinyNet()
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert trainer.state.finished
    labels = dm.datasets["train"].split.labels
    train = torch.cat(model.labels["train"]).numpy()
    # Lightning sets the epoch: the order is a function of (the run's shuffle seed, epoch)
    for epoch in range(2):
        generator = torch.Generator().manual_seed(dm.state_dict()["shuffle_seed"] + epoch)
        order = torch.randperm(64, generator=generator).numpy()
        assert np.array_equal(train[64 * epoch : 64 * (epoch + 1)], labels[order])
    val = torch.cat(model.labels["val"]).numpy()
    assert np.array_equal(val, np.tile(dm.datasets["val"].split.labels, 2))
    assert np.array_equal(torch.cat(model.labels["test"]).numpy(), dm.datasets["test"].split.labels)
    assert np.isfinite(trainer.callback_metrics["test/loss"].item())


def _ddp_rank(rank: int, world_size: int, init_file: str, queue) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    dm = quick(max_samples=7, batch_size=2)
    samplers = {"val": dm.val_dataloader().sampler, "test": dm.test_dataloader().sampler}
    queue.put(
        (
            rank,
            {name: list(s) for name, s in samplers.items()},
            all(isinstance(s, UnrepeatedDistributedSampler) for s in samplers.values()),
            isinstance(dm.train_dataloader().sampler, EpochShuffle),
        )
    )
    dist.destroy_process_group()


def test_ddp_evaluation_sees_every_sample_exactly_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    ranks = [
        context.Process(target=_ddp_rank, args=(r, 2, str(tmp_path / "store"), queue))
        for r in range(2)
    ]
    for process in ranks:
        process.start()
    results = sorted(queue.get(timeout=60) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
        assert process.exitcode == 0
    for split in ("val", "test"):
        indices = [i for _, seen, _, _ in results for i in seen[split]]
        assert sorted(indices) == list(range(7))  # no padding duplicates, nothing missing
        assert [len(seen[split]) for _, seen, _, _ in results] == [4, 3]
    assert all(unrepeated and shuffled for _, _, unrepeated, shuffled in results)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"dataset": "imagenet"},
            "unknown dataset 'imagenet': choose one of digits, digits-m, syndigits, syndigits-patch",
        ),
        (
            {"placement": "middle"},
            "unknown placement 'middle': choose one of center, uniform",
        ),
        ({"test_placement": "corner"}, "unknown test_placement 'corner': choose one of"),
        (
            {"policy": "extreme"},
            "unknown policy 'extreme': choose one of none, light, heavy",
        ),
        (
            {"shift_mode": "mirror"},
            "unknown shift_mode 'mirror': choose one of zero, reflect, circular",
        ),
        (
            {"max_shift": -3},
            "max_shift=-3 is negative: pass 0, a whole number of pixels in [1, 31]",
        ),
        ({"max_shift": 40}, "max_shift=40 px does not fit the 32-px image"),
        ({"max_shift": 32.0}, "max_shift=32.0 px does not fit the 32-px image"),
        ({"max_shift": 2.5}, "max_shift=2.5 is neither whole pixels nor a fraction"),
        ({"shift_prob": 1.5}, "shift_prob=1.5 is not a probability: pass a value in [0, 1]"),
        ({"object_size": 0}, "object_size=0 is not a size"),
        (
            {"object_size": 40},
            "canvas_size=32 is smaller than object_size=40: pass canvas_size >= 40",
        ),
        ({"object_size": 16, "canvas_size": 12}, "canvas_size=12 is smaller than object_size=16"),
        (
            {"placement": "top-left", "object_size": 20, "canvas_size": 36},
            "placement='top-left' needs the object inside one quadrant, but object_size=20 is larger "
            "than the 18-px quadrant of canvas_size=36: use canvas_size >= 40 or object_size <= 18",
        ),
        (
            {"test_placement": "bottom-right", "object_size": 17},
            "test_placement='bottom-right' needs the object",
        ),
        ({"val_fraction": 0.0}, "val_fraction=0.0 is not a fraction: pass a value in (0, 1)"),
        ({"test_fraction": 1.2}, "test_fraction=1.2 is not a fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "leave no training data"),
        ({"max_samples": 0}, "max_samples=0 keeps nothing"),
        ({"batch_size": 0}, "batch_size=0 is not a batch size"),
        ({"num_workers": -1}, "num_workers=-1 is negative"),
        (
            {"persistent_workers": True},
            "persistent_workers=True needs worker processes, but num_workers=0",
        ),
        ({"seed": -1}, "seed=-1 is out of range"),
    ],
)
def test_bad_options_fail_at_construction(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        quick(**options)
    assert message in str(info.value)


def test_bad_files_fail_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"dataset='folder': data_dir='.*absent' is not a folder"
    ):
        quick(dataset="folder", data_dir=str(tmp_path / "absent"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="dataset='folder': no images in data_dir="):
        quick(dataset="folder", data_dir=str(tmp_path / "empty"))
    write_image_folder(tmp_path / "wide", {"a": [np.ones((4, 6, 3), np.uint8)] * 3})
    with pytest.raises(ValueError, match="first image is 4x6, not square: pass object_size"):
        quick(dataset="folder", data_dir=str(tmp_path / "wide"))
    written = noise_folder(tmp_path / "corrupt")
    victim = sorted(written)[-1]
    victim.write_bytes(b"not a png")
    dm = quick(dataset="folder", data_dir=str(tmp_path / "corrupt"))
    with pytest.raises(ValueError, match=f"cannot read image file {re.escape(str(victim))}"):
        dm.setup("fit")
    missing = quick(dataset="cifar10", data_dir=str(tmp_path / "nothing"))
    missing.prepare_data()  # download=False: nothing to fetch, nothing fetched
    with pytest.raises(
        FileNotFoundError,
        match=r"dataset='cifar10': files missing in .*nothing/cifar-10-batches-py",
    ):
        missing.setup("fit")


def test_torchvision_files_feed_the_datamodule(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), np.arange(20) % 10
    test = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.arange(6) % 10
    write_cifar10(tmp_path, train, test)
    dm = quick(dataset="cifar10", data_dir=str(tmp_path), policy="none", batch_size=6)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (6, 3, 32, 32) and dm.image_size == 32
    assert np.array_equal(to_uint8(x), test[0].transpose(0, 3, 1, 2))
    assert y.tolist() == test[1].tolist()
