"""``syndigits``: digits rendered from fonts onto photographs and textures, embedded and cached.

After SynDigits (Ganin & Lempitsky, ICML 2015): digits drawn in varied fonts with random
position, orientation, stroke, colours and blur on varied backgrounds. Here the fonts are the
TrueType faces matplotlib ships (``FONTS``), drawn with Pillow, and the backgrounds are crops of
scikit-learn's two bundled photographs or smooth colour textures; no download.

Why it exists: ``digits`` and ``digits-m`` hold 1,797 images from 13 writers, so a test set of
a few hundred images cannot separate the methods. ``syndigits`` has ``SIZES`` images
(24,000 official train, of which the DataModule holds out ``val_fraction`` for validation, and
5,000 test), each one an independent draw of every rendering parameter.

- Geometry, as ``digits-m``: a ``CANVAS_SIZE`` RGB canvas filled by the background, the digit's
  ink about ``DIGIT_SIZE`` px tall (14-18 px) near the centre (jitter of up to ``JITTER`` px),
  so the presets written for ``digits-m`` (48-px canvas, 32-px view moved by up to 8 px) hold
  unchanged: 16 px is the centre region that such a view keeps in sight at every offset. The
  cost of a run is set by the view, not by the digit, so a smaller digit saves nothing, and at
  10-12 px the thin, blurred faces became hard to read (a visual check). With jitter, rotation
  and shear, the ink of most digits reaches 1-2 px beyond the centre 16 px (in 2,000 draws, 16%
  stay inside it, 88% inside the centre 20 px), so at the largest 8-px offsets an edge of them
  leaves the view. The coverage outside the centre ``PATCH_SIZE`` px is zero in over 99% of
  images and a faint anti-aliased edge otherwise (tested), so ``syndigits-patch`` (that centre:
  the digit with a margin of background) is an object that fits a quadrant of a 48-px canvas,
  for the placement experiments.
- One distribution for every split: train and test images are drawn by the same procedure from
  the same fonts and the same backgrounds (whole photographs, both of them, or a texture), so no
  split is brighter or easier than another. Fonts are shared, not held out: a held-out face
  would make the test a font-transfer test whose difficulty depends on which faces were held
  out, which is not the question of a translation comparison. No test image repeats a training
  image: font, digit, stroke, size, aspect, rotation, shear, position, colours, background and
  blur are drawn afresh for every image.
- Determinism: image ``i`` of a split is a function of ``(VERSION, split, i)`` only (its own
  ``numpy.random.default_rng``), so a small build is the prefix of the full one; labels come in
  blocks of 10 that each hold every digit once, so the classes are balanced. Trigonometry uses
  Python's ``math`` (numpy's vectorised functions may round differently on other vector units);
  the rest is elementwise IEEE arithmetic and OpenCV resampling. The same bytes across library
  versions are not promised, which is why those versions are part of the cache key.
- Cache: the splits are rendered once into ``<data_dir>/syndigits/syndigits-<key>.npz``; the
  key covers ``VERSION`` and the versions of every library that draws pixels, so a change of
  the renderer or of those libraries renders again, and a run otherwise only loads.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType

import cv2
import matplotlib
import numpy as np
import PIL
import sklearn
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image, ImageDraw, ImageFont, features
from sklearn.datasets import load_sample_images

#: Change whenever a change of this file changes a pixel: old caches are then ignored.
VERSION = "1"
CANVAS_SIZE = 48  # side of every image; the background fills all of it
DIGIT_SIZE = 16  # nominal height of the digit's ink, in px
JITTER = 2.0  # the digit's centre moves by up to this many px per axis
PATCH_SIZE = 24  # side of the centre patch that holds the digit's ink (``syndigits-patch``)
#: Split -> images rendered (the DataModule carves validation out of ``train``).
SIZES: Mapping[str, int] = MappingProxyType({"train": 24_000, "test": 5_000})
#: The faces matplotlib ships whose ``0``-``9`` are the standard digit glyphs (the symbol,
#: old-style-figure and fallback faces are left out).
FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)
_SPLIT_INDEX = {"train": 0, "test": 1}
_SEED = 20150706  # the renderer's own seed: the data never depend on a run's seed
_GLYPH_PX = 64  # font size of the master glyphs, before the supersampled downscale
_SUPERSAMPLE = 4  # glyphs are warped on a 4x canvas, then area-averaged to CANVAS_SIZE
_STROKES = 4  # Pillow stroke widths 0..3 px at _GLYPH_PX: from hairline to bold
_MIN_CONTRAST = 96  # least luminance difference between the digit and its background
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def font_dir() -> Path:
    """matplotlib's folder of bundled TrueType fonts."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@cache
def _glyph(font: int, digit: int, stroke: int) -> np.ndarray:
    """The digit's ink as a tight ``H x W`` uint8 mask, drawn at ``_GLYPH_PX``."""
    face = ImageFont.truetype(str(font_dir() / FONTS[font]), _GLYPH_PX)
    side = 3 * _GLYPH_PX
    image = Image.new("L", (side, side))
    text = str(digit)
    ImageDraw.Draw(image).text(
        (side // 2, side // 2),
        text,
        font=face,
        fill=255,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    mask = np.asarray(image)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.ascontiguousarray(mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1])


@cache
def _photographs() -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(image) for image in load_sample_images().images)


def _photo_background(rng: np.random.Generator) -> np.ndarray:
    """A square crop of 48-144 px from anywhere in either photograph, maybe mirrored, shrunk to
    the canvas (area averaging)."""
    photo = _photographs()[int(rng.integers(len(_photographs())))]
    side = int(rng.integers(CANVAS_SIZE, 3 * CANVAS_SIZE, endpoint=True))
    top = int(rng.integers(photo.shape[0] - side, endpoint=True))
    left = int(rng.integers(photo.shape[1] - side, endpoint=True))
    crop = photo[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(
        np.ascontiguousarray(crop), (CANVAS_SIZE, CANVAS_SIZE), interpolation=cv2.INTER_AREA
    )


def _texture_background(rng: np.random.Generator) -> np.ndarray:
    """A linear gradient between two random colours at a random angle, with smooth noise (a 4x4
    grid of random offsets upsampled bicubically)."""
    start, end = rng.integers(0, 256, size=(2, 3))
    angle = 2 * math.pi * rng.random()
    coordinates = (np.arange(CANVAS_SIZE) - (CANVAS_SIZE - 1) / 2) / (CANVAS_SIZE - 1)
    ramp = math.cos(angle) * coordinates[None, :] + math.sin(angle) * coordinates[:, None]
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    grid = rng.uniform(-40.0, 40.0, size=(4, 4, 3))
    noise = cv2.resize(grid, (CANVAS_SIZE, CANVAS_SIZE), interpolation=cv2.INTER_CUBIC)
    image = start + ramp[..., None] * (end - start) + noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _ink_colour(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour, moved in brightness if needed to stand ``_MIN_CONTRAST`` luminance
    levels from the background's mean; a channel clipped at 0 or 255 can leave it short (at
    least 57 levels in 3,000 draws, under 77 in 5% of them)."""
    colour = rng.integers(0, 256, size=3).astype(np.float64)
    luma = np.asarray(_LUMA)
    ground = float(background.reshape(-1, 3).mean(axis=0) @ luma)
    if abs(float(colour @ luma) - ground) < _MIN_CONTRAST:
        target = ground - _MIN_CONTRAST if ground >= 128 else ground + _MIN_CONTRAST
        colour = np.clip(colour + (target - float(colour @ luma)), 0, 255)
    return colour


def _digit_alpha(digit: int, rng: np.random.Generator) -> np.ndarray:
    """The digit's coverage on the canvas (float32 in [0, 1]): a glyph of a random face and
    stroke, scaled to 14-18 px of ink height with a random aspect, rotated, sheared and moved,
    warped on a 4x canvas and area-averaged down (anti-aliased edges)."""
    glyph = _glyph(int(rng.integers(len(FONTS))), digit, int(rng.integers(_STROKES)))
    height = DIGIT_SIZE * rng.uniform(0.875, 1.125)
    aspect = rng.uniform(0.8, 1.25)
    rotation = math.radians(rng.uniform(-15.0, 15.0))
    shear = rng.uniform(-0.25, 0.25)
    centre_y, centre_x = (CANVAS_SIZE / 2 + rng.uniform(-JITTER, JITTER, size=2)) * _SUPERSAMPLE
    scale = height * _SUPERSAMPLE / glyph.shape[0]
    sx, sy = scale * aspect, scale
    cos, sin = math.cos(rotation), math.sin(rotation)
    # x' = R (Shear (S (x - c_glyph))) + c_canvas, Shear = [[1, shear], [0, 1]]
    a, b = cos * sx, (cos * shear - sin) * sy
    c, d = sin * sx, (sin * shear + cos) * sy
    gx, gy = (glyph.shape[1] - 1) / 2, (glyph.shape[0] - 1) / 2
    matrix = np.array(
        [[a, b, centre_x - (a * gx + b * gy)], [c, d, centre_y - (c * gx + d * gy)]], np.float64
    )
    side = CANVAS_SIZE * _SUPERSAMPLE
    warped = cv2.warpAffine(glyph, matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = cv2.resize(warped, (CANVAS_SIZE, CANVAS_SIZE), interpolation=cv2.INTER_AREA)
    return alpha.astype(np.float32) / np.float32(255)


def draw_layers(digit: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``(background, ink, coverage)`` of one image: the ``H x W x 3`` uint8 background (half
    photographs, half textures), the float32 RGB ink colour and the digit's ``H x W`` float32
    coverage in [0, 1], drawn from ``rng`` in that order."""
    background = _photo_background(rng) if rng.random() < 0.5 else _texture_background(rng)
    ink = _ink_colour(background, rng).astype(np.float32)
    return background, ink, _digit_alpha(digit, rng)


def render_image(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One ``CANVAS_SIZE x CANVAS_SIZE x 3`` uint8 image of ``digit``: its layers
    (``draw_layers``) blended by the coverage, then blurred by a random amount."""
    background, ink, alpha = draw_layers(digit, rng)
    image = background.astype(np.float32) * (1 - alpha[..., None]) + ink * alpha[..., None]
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    sigma = rng.uniform(0.0, 1.0)
    if sigma > 0.3:  # below that the 3x3 kernel barely differs from the identity
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    return image


def centre_patch(images: np.ndarray) -> np.ndarray:
    """The centre ``PATCH_SIZE`` px of ``N x CANVAS_SIZE x CANVAS_SIZE x C`` images (a copy)."""
    start = (CANVAS_SIZE - PATCH_SIZE) // 2
    return np.ascontiguousarray(images[:, start : start + PATCH_SIZE, start : start + PATCH_SIZE])


def image_rng(split: str, index: int) -> np.random.Generator:
    """The generator that draws every parameter of image ``index`` of ``split``."""
    return np.random.default_rng([_SEED, _SPLIT_INDEX[split], 0, index])


def split_labels(split: str, count: int) -> np.ndarray:
    """``count`` int64 labels: block ``k`` of 10 is a permutation of the digits drawn from
    ``(split, k)``, so every prefix of a multiple of 10 is exactly balanced."""
    blocks = -(-count // 10)
    labels = [
        np.random.default_rng([_SEED, _SPLIT_INDEX[split], 1, block]).permutation(10)
        for block in range(blocks)
    ]
    return np.concatenate(labels)[:count].astype(np.int64) if labels else np.zeros(0, np.int64)


def render_split(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of the first ``count`` images of ``split`` (``train`` or
    ``test``): ``count x CANVAS_SIZE x CANVAS_SIZE x 3`` uint8 and int64."""
    labels = split_labels(split, count)
    images = np.empty((count, CANVAS_SIZE, CANVAS_SIZE, 3), np.uint8)
    for index, digit in enumerate(labels):
        images[index] = render_image(int(digit), image_rng(split, index))
    return images, labels


def cache_key() -> dict[str, str]:
    """Everything the rendered bytes depend on: the renderer's version and sizes and the
    versions of the libraries that draw or resample pixels or ship the fonts and photographs."""
    return {
        "version": VERSION,
        "sizes": json.dumps(dict(SIZES)),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "freetype": str(features.version("freetype2")),
        "matplotlib": matplotlib.__version__,
        "scikit-learn": sklearn.__version__,
    }


def cache_path(data_dir: str | Path) -> Path:
    """Where the rendered splits are cached under ``data_dir``, named by the cache key."""
    digest = hashlib.sha256(json.dumps(cache_key(), sort_keys=True).encode()).hexdigest()
    return Path(data_dir) / "syndigits" / f"syndigits-v{VERSION}-{digest[:12]}.npz"


def render_all() -> dict[str, np.ndarray]:
    """Every split at its size in ``SIZES``, as the arrays the cache stores."""
    arrays = {}
    for split, count in SIZES.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = render_split(split, count)
    return arrays


def ensure_cached(data_dir: str | Path) -> Path:
    """The cache file under ``data_dir``, rendered first if it is absent.

    The file is written under a temporary name and renamed into place, so a run never reads a
    half-written file, and runs that render at the same time leave the same bytes.
    """
    path = cache_path(data_dir)
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"dataset='syndigits': cannot create the cache folder {path.parent} ({err}): pass a "
            f"writable data_dir (--data.data_dir)"
        ) from err
    started = time.perf_counter()
    arrays = render_all()
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as file:
        np.savez(file, **arrays)  # uncompressed: zlib saves only ~15% of these images
    os.replace(file.name, path)
    rank_zero_info(f"syndigits: rendered in {time.perf_counter() - started:.0f} s into {path}")
    return path


def load(data_dir: str | Path, patch: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split -> ``(images, labels)`` from the cache under ``data_dir`` (rendered if absent);
    ``patch``: the centre ``PATCH_SIZE`` px of every image instead of the whole canvas."""
    with np.load(ensure_cached(data_dir)) as cached:
        splits = {split: (cached[f"{split}_images"], cached[f"{split}_labels"]) for split in SIZES}
    if patch:
        splits = {
            split: (centre_patch(images), labels) for split, (images, labels) in splits.items()
        }
    return splits
