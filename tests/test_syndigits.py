"""syndigits: determinism per (split, index), class balance, learnable labels, one background
distribution for every split, the cache (rendered once, keyed by version), and loading through
the DataModule."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fontTools.ttLib import TTFont
from sklearn.neighbors import NearestCentroid

from invariance_recipes.datamodules import TranslationDataModule, syndigits
from invariance_recipes.datamodules.sources import DATASETS, load_splits

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FRAME = 6  # px along each edge that the digit never reaches: background only (up to blur)
SMALL = {"train": 200, "test": 60}  # a small instance for the cache and DataModule tests


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def frame_means(images: np.ndarray) -> np.ndarray:
    """``N x 3`` mean RGB of each image's outer frame (the background)."""
    mask = np.ones(images.shape[1:3], bool)
    mask[FRAME:-FRAME, FRAME:-FRAME] = False
    return images[:, mask].astype(np.float64).mean(axis=1)


def assert_same_background_distribution(splits: dict[str, np.ndarray], levels: float) -> None:
    """Mean background RGB agrees between every two splits: within 4 standard errors of the
    difference (the noise of the draw), and within ``levels`` grey levels."""
    frames = {name: frame_means(images) for name, images in splits.items()}
    names = list(frames)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            difference = frames[a].mean(axis=0) - frames[b].mean(axis=0)
            error = np.sqrt(
                frames[a].var(axis=0) / len(frames[a]) + frames[b].var(axis=0) / len(frames[b])
            )
            assert (np.abs(difference) < 4 * error).all(), (a, b, difference, error)
            assert (np.abs(difference) < levels).all(), (a, b, difference)


@pytest.fixture(scope="module")
def test_prefix() -> tuple[np.ndarray, np.ndarray]:
    return syndigits.render_split("test", 600)


def test_images_are_a_function_of_split_and_index(test_prefix) -> None:
    images, labels = test_prefix
    assert images.shape == (600, syndigits.CANVAS_SIZE, syndigits.CANVAS_SIZE, 3)
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    again, again_labels = syndigits.render_split("test", 30)  # computed twice: the same bytes
    assert np.array_equal(again, images[:30]) and np.array_equal(again_labels, labels[:30])
    train, _ = syndigits.render_split("train", 30)
    assert all(not np.array_equal(a, b) for a, b in zip(train, images[:30], strict=True))
    # no two images alike: every parameter is drawn afresh for every image
    assert len({image.tobytes() for image in images}) == len(images)


def test_pixels_blend_the_ink_colour_over_the_background(test_prefix) -> None:
    """Unblurred images are ``background * (1 - coverage) + ink * coverage`` (recomputed here in
    float64); the ink contrasts with the background; blurred ones keep the blend's mean."""
    images, labels = test_prefix
    unblurred, contrast = 0, []
    for index in range(100):
        rng = syndigits.image_rng("test", index)
        background, ink, coverage = syndigits.draw_layers(int(labels[index]), rng)
        assert coverage.max() > 0.9 and coverage.sum() > 20
        luma = np.array([0.299, 0.587, 0.114])
        contrast.append(abs(ink @ luma - background.reshape(-1, 3).mean(axis=0) @ luma))
        blend = (
            background * (1 - coverage[..., None].astype(np.float64)) + ink * coverage[..., None]
        )
        error = np.abs(images[index] - blend)
        if rng.uniform(0.0, 1.0) <= 0.3:  # the blur's draw, the last one: no blur
            unblurred += 1
            assert error.max() <= 0.5 + 1e-3
            assert np.array_equal(images[index][coverage == 0], background[coverage == 0])
        else:
            assert abs(images[index].mean() - blend.mean()) < 0.5
    assert 15 < unblurred < 50  # 30% expected
    assert min(contrast) > 50 and np.median(contrast) > 95  # clipping can cut it below 96


def test_the_centre_patch_holds_the_digit() -> None:
    """Outside the centre ``PATCH_SIZE`` px the coverage is zero in at least 99% of images and
    never more than a faint anti-aliased edge."""
    outside = np.ones((syndigits.CANVAS_SIZE,) * 2, bool)
    start = (syndigits.CANVAS_SIZE - syndigits.PATCH_SIZE) // 2
    outside[start : start + syndigits.PATCH_SIZE, start : start + syndigits.PATCH_SIZE] = False
    labels = syndigits.split_labels("train", 1000)
    spill = np.array(
        [
            syndigits.draw_layers(int(digit), syndigits.image_rng("train", i))[2][outside].max()
            for i, digit in enumerate(labels)
        ]
    )
    assert (spill > 0).mean() <= 0.01 and spill.max() < 0.25


def test_labels_come_in_blocks_that_hold_every_digit_once() -> None:
    for split, count in syndigits.SIZES.items():
        labels = syndigits.split_labels(split, count)
        assert len(labels) == count
        assert (np.sort(labels.reshape(-1, 10), axis=1) == np.arange(10)).all()
    train, test = syndigits.split_labels("train", 200), syndigits.split_labels("test", 200)
    assert not np.array_equal(train, test)
    assert np.array_equal(syndigits.split_labels("test", 37), test[:37])


def test_every_face_draws_the_ten_standard_digit_glyphs() -> None:
    for name in syndigits.FONTS:
        path = syndigits.font_dir() / name
        cmap = TTFont(path, lazy=True).getBestCmap()
        assert tuple(cmap[ord(str(d))] for d in range(10)) == DIGIT_NAMES, name
    masks = {
        syndigits._glyph(f, d, 0).tobytes() for f in range(len(syndigits.FONTS)) for d in (1, 7)
    }
    assert len(masks) > len(syndigits.FONTS)  # the faces draw different shapes


def test_labels_are_learnable_from_the_pixels(test_prefix) -> None:
    """A nearest-centroid classifier on polarity-free, 16x16 grey levels of the centre, fitted on
    450 images, beats chance (10%) by a wide margin on 150 others: the labels name what is
    drawn. With the labels shuffled it stays near chance, so the margin is the labels' doing."""
    images, labels = test_prefix
    grey = images[:, 8:-8, 8:-8].astype(np.float32).mean(axis=3)
    grey = np.abs(grey - np.median(grey.reshape(len(grey), -1), axis=1)[:, None, None])
    small = np.stack([cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA) for g in grey])
    features = small.reshape(len(small), -1)
    features = (features - features.mean(1, keepdims=True)) / (features.std(1, keepdims=True) + 1)
    fit, held = slice(0, 450), slice(450, 600)
    accuracy = NearestCentroid().fit(features[fit], labels[fit]).score(features[held], labels[held])
    shuffled = np.random.default_rng(0).permutation(labels[fit])
    control = NearestCentroid().fit(features[fit], shuffled).score(features[held], labels[held])
    assert accuracy > 0.3 and control < 0.2, (accuracy, control)


def test_train_and_test_backgrounds_are_equally_bright(test_prefix) -> None:
    train, _ = syndigits.render_split("train", 600)
    assert_same_background_distribution({"train": train, "test": test_prefix[0]}, levels=12)


def test_background_check_catches_the_digits_m_skew() -> None:
    """The check above fails on digits-m, whose test crops come from brighter photo regions."""
    splits = load_splits("digits-m", "unused", 0.15, 0.15, seed=0)
    with pytest.raises(AssertionError):
        assert_same_background_distribution(
            {name: splits[name].images for name in ("train", "test")}, levels=12
        )


def test_cache_is_rendered_once_and_keyed_by_version(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(syndigits, "SIZES", SMALL)
    path = syndigits.ensure_cached(tmp_path)
    assert path.parent == tmp_path / "syndigits" and path.is_file()
    loaded = syndigits.load(tmp_path)
    for split, count in SMALL.items():
        images, labels = syndigits.render_split(split, count)
        assert np.array_equal(loaded[split][0], images)
        assert np.array_equal(loaded[split][1], labels)

    def no_render(split: str, count: int) -> None:
        raise AssertionError("rendered again although the cache exists")

    monkeypatch.setattr(syndigits, "render_split", no_render)
    assert digest(syndigits.load(tmp_path)["test"][0]) == digest(loaded["test"][0])
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    monkeypatch.setattr(syndigits, "VERSION", "renderer-changed")
    assert syndigits.cache_path(tmp_path) != path  # a new renderer never reads the old file
    with pytest.raises(AssertionError, match="rendered again"):
        syndigits.load(tmp_path)


def test_unwritable_cache_folder_is_a_one_line_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(syndigits, "SIZES", SMALL)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"cannot create the cache folder .*--data.data_dir"):
        syndigits.load(blocker)


def test_datamodule_serves_syndigits_with_a_validation_split(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(syndigits, "SIZES", SMALL)
    data = TranslationDataModule(
        dataset="syndigits", data_dir=str(tmp_path), view_size=32, policy="none", batch_size=20
    )
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    assert data.canvas_size == syndigits.CANVAS_SIZE == DATASETS["syndigits"].native_size
    data.prepare_data()
    assert syndigits.cache_path(tmp_path).is_file()
    data.setup()
    sizes = {name: len(dataset) for name, dataset in data.datasets.items()}
    assert sizes == {"train": 170, "val": 30, "test": 60}  # val: 15% of the official train
    rendered, labels = syndigits.render_split("test", SMALL["test"])
    images, batch_labels = next(iter(data.test_dataloader()))  # test batches: the whole canvas
    assert torch.equal(images, torch.from_numpy(rendered[:20]).permute(0, 3, 1, 2).float() / 255)
    assert batch_labels.tolist() == labels[:20].tolist()
    view, _ = next(iter(data.val_dataloader()))
    assert view.shape == (20, 3, 32, 32)
    train = data.datasets["train"].split.images
    val = data.datasets["val"].split.images
    assert not {image.tobytes() for image in train} & {image.tobytes() for image in val}


def test_datamodule_places_syndigits_patches_in_a_quadrant(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(syndigits, "SIZES", SMALL)
    data = TranslationDataModule(
        dataset="syndigits-patch",
        data_dir=str(tmp_path),
        canvas_size=48,
        placement="top-left",
        policy="none",
        batch_size=20,
    )
    assert (data.object_size, data.image_size) == (syndigits.PATCH_SIZE, 48)
    data.setup()
    rendered, _ = syndigits.render_split("test", 20)
    images, _ = next(iter(data.test_dataloader()))
    patches = syndigits.centre_patch(rendered)
    expected = np.zeros((20, 48, 48, 3), np.uint8)
    expected[:, :24, :24] = patches  # the only position a 24-px object has in a 24-px quadrant
    assert torch.equal(images, torch.from_numpy(expected).permute(0, 3, 1, 2).float() / 255)
    assert np.array_equal(patches, rendered[:, 12:36, 12:36])


@pytest.mark.slow
def test_another_process_renders_the_same_bytes(test_prefix) -> None:
    """Another interpreter, with other hash seeds and one OpenCV thread, gives the same bytes."""
    code = (
        "import cv2, hashlib, numpy as np\n"
        "cv2.setNumThreads(1)\n"
        "from invariance_recipes.datamodules import syndigits\n"
        "images, labels = syndigits.render_split('test', 50)\n"
        "print(hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    images, labels = test_prefix
    expected = hashlib.sha256(images[:50].tobytes() + labels[:50].tobytes()).hexdigest()
    assert proc.stdout.strip() == expected


@pytest.mark.slow
def test_full_set_sizes_balance_and_backgrounds(shared_data_dir: Path, test_prefix) -> None:
    """The full build (the session's one render, which the comparison tests use too): split
    sizes, exact class balance, equal backgrounds in all three splits, and the first images
    equal to a fresh render."""
    splits = load_splits("syndigits", str(shared_data_dir), 0.15, 0.15, seed=0)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {"train": 20_400, "val": 3_600, "test": 5_000}
    for split in splits.values():
        assert (np.bincount(split.labels, minlength=10) == len(split) // 10).all()
    assert np.array_equal(splits["test"].images[:600], test_prefix[0])
    # the registry's normalisation statistics are those of the rendered training images
    for name, images in (
        ("syndigits", splits["train"].images),
        ("syndigits-patch", syndigits.centre_patch(splits["train"].images)),
    ):
        levels = np.arange(256) / 255
        counts = [np.bincount(images[..., c].ravel(), minlength=256) for c in range(3)]
        mean = np.array([np.average(levels, weights=n) for n in counts])
        std = np.array(
            [
                np.sqrt(np.average((levels - m) ** 2, weights=n))
                for m, n in zip(mean, counts, strict=True)
            ]
        )
        assert np.allclose(DATASETS[name].mean, mean, atol=2e-3), name
        assert np.allclose(DATASETS[name].std, std, atol=2e-3), name
    assert_same_background_distribution(
        {name: split.images for name, split in splits.items()}, levels=3
    )
